"""The synthetic CT phantom written in the FLARE22 release layout.

Same subjects, voxels, dtypes (int16 image, uint8 label) and RAS affines as
:func:`vrsearch.data.phantom.write_phantom`, but stored the way the FLARE22
challenge ships its data, so the ``flare22`` reader of
:mod:`vrsearch.data.layouts` (and any FLARE22 tooling) can be tried without
the real release::

    OUT/Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz
    OUT/Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0001.nii.gz
    OUT/Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz
    OUT/Validation/FLARETs_0001_0000.nii.gz          (config.test cases)
    OUT/Validation/labels/FLARETs_0001.nii.gz
    OUT/phantom.json                                  (the config, written last)

Subjects are numbered as in ``write_phantom`` (labeled, then unlabeled, then
test), so ``FLARE22_Tr_0001`` holds the same volume as ``phantom_000``. Case
numbers inside each group start at 1, like the release. Label values follow
the FLARE22 order (``vrsearch.data.flare22.FLARE22_LABELS``; 1 liver ... 13 left kidney).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from vrsearch.data.phantom import PhantomConfig, _save, _stamp, begin, generate_case, phantom_affine, publish

__all__ = ["write_phantom_flare22", "flare22_paths", "LABELED_DIR", "UNLABELED_BLOCK"]

LABELED_DIR = "FLARE22_LabeledCase50"
UNLABELED_BLOCK = 1000  # the release splits its unlabeled cases into folders of 1000


def _flare_stamp(config: PhantomConfig) -> dict:
    return {**_stamp(config), "generator": "vrsearch.data.phantom_flare", "layout": "flare22"}


def flare22_paths(group: str, number: int) -> tuple[str, str | None]:
    """(image, label or None) paths relative to the root for case ``number`` (1-based) of a group.

    ``group`` is ``labeled``, ``unlabeled`` or ``test``.
    """
    if group == "labeled":
        case = f"FLARE22_Tr_{number:04d}"
        return (f"Training/{LABELED_DIR}/images/{case}_0000.nii.gz", f"Training/{LABELED_DIR}/labels/{case}.nii.gz")
    if group == "unlabeled":
        lo = (number - 1) // UNLABELED_BLOCK * UNLABELED_BLOCK + 1
        folder = f"FLARE22_UnlabeledCase{lo}-{lo + UNLABELED_BLOCK - 1}"
        return f"Training/{folder}/Case_{number:05d}_0000.nii.gz", None
    if group == "test":
        case = f"FLARETs_{number:04d}"
        return f"Validation/{case}_0000.nii.gz", f"Validation/labels/{case}.nii.gz"
    raise ValueError(f"unknown group {group!r}; expected labeled, unlabeled or test")


def write_phantom_flare22(
    out: Path | str, config: PhantomConfig = PhantomConfig(), *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Write the phantom under ``out`` in the FLARE22 layout (module doc) and return ``out``.

    Behaves like ``write_phantom``: idempotent (the same phantom at ``out`` is
    returned as is; a phantom with another config, in another layout, or any
    other non-empty content raises FileExistsError), and atomic (files go to
    a temporary sibling folder renamed into place at the end, so an
    interrupted run leaves nothing at ``out``). ``progress(done, total)`` is
    called after each case.
    """
    out = Path(out)
    stamp = _flare_stamp(config)
    tmp = begin(out, stamp)
    if tmp is None:
        return out
    try:
        affine = phantom_affine(config)
        groups = (("labeled", config.cases), ("unlabeled", config.unlabeled), ("test", config.test))
        total, index = config.cases + config.unlabeled + config.test, 0
        for group, count in groups:
            for number in range(1, count + 1):
                image, label, _aff = generate_case(index, config)
                image_rel, label_rel = flare22_paths(group, number)
                (tmp / image_rel).parent.mkdir(parents=True, exist_ok=True)
                _save(image, affine, tmp / image_rel)
                if label_rel is not None:
                    (tmp / label_rel).parent.mkdir(parents=True, exist_ok=True)
                    _save(label, affine, tmp / label_rel)
                index += 1
                if progress is not None:
                    progress(index, total)
        publish(tmp, out, stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
