"""Seeded synthetic abdominal CT phantom with the 13 FLARE22 organs.

Stands in for FLARE22 where real data cannot be had.  The point is the
long-tailed class distribution (liver ~1500 mL against ~4 mL adrenals) with
small low-contrast organs.  Anatomy lives in millimetres
(:mod:`vrsearch.data.phantom_anatomy`); a subject is drawn from
``(seed, index)`` alone and then sampled on the requested grid, so ``size``
and ``spacing`` change the resolution and field of view, never the anatomy.

Two populations (``PhantomConfig.population``). ``cohort``, the default,
varies subjects and scans like a multi-centre cohort -- habitus, organ
shape/position, lesions, absent organs, scanner calibration, contrast phase,
slice thickness, noise texture, bias field -- see
:mod:`vrsearch.data.phantom_cohort`. ``classic`` is the original
population (generator version 1), byte for byte.

The rendering (classic draws, posing, organ fitting, painting, HU) is in
:mod:`vrsearch.data.phantom_render`; the classic population has a log-normal
volume factor per organ, small shifts and rotations, a 3 mm elastic warp,
the gallbladder absent in ~8 % of subjects (:func:`gallbladder_absent`) and
portal-venous HU with 10-25 HU noise on one scanner.

The dataset is written by :func:`write_phantom` in the nnU-Net / MSD layout,
with ``phantom.json`` recording every setting and the population's generator
version (:data:`PHANTOM_VERSION`): a folder is reused only when both match.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from vrsearch.data.phantom_anatomy import LABEL_NAMES, ORGANS, OrganSpec
from vrsearch.data.phantom_config import PHANTOM_VERSION, POPULATIONS, PhantomConfig
from vrsearch.data.phantom_render import _render, gallbladder_absent

__all__ = [
    "ORGANS",
    "LABEL_NAMES",
    "OrganSpec",
    "PhantomConfig",
    "generate_case",
    "write_phantom",
    "gallbladder_absent",
    "phantom_affine",
    "PHANTOM_VERSION",
    "POPULATIONS",
]


def phantom_affine(config: PhantomConfig) -> np.ndarray:
    """RAS affine: diag(spacing), field of view centred on the world origin."""
    aff = np.diag([*config.spacing, 1.0])
    aff[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(config.size, config.spacing)]
    return aff


def generate_case(index: int, config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image int16, label uint8, affine 4x4 float64) for subject ``index``.

    Arrays are indexed (x, y, z) = (right-to-left, posterior-to-anterior,
    inferior-to-superior) with a RAS affine; the result depends only on
    ``(config.seed, config.population, index, config.size, config.spacing)``.
    """
    image, label, _ = _render(int(index), config)
    return image, label, phantom_affine(config)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _stamp(config: PhantomConfig) -> dict:
    """What ``phantom.json`` records: generator, its version for the population, every setting.
    A classic stamp is the one version 1 wrote (no population key), so its data stay valid."""
    cfg = json.loads(json.dumps(asdict(config)))
    if config.population == "classic":
        del cfg["population"]
    return {"generator": "vrsearch.data.phantom", "version": PHANTOM_VERSION[config.population], "config": cfg}


_DESCRIPTION = {
    "classic": "Synthetic portal-venous abdominal CT with the 13 FLARE22 organs (vrsearch phantom, seed {seed}). "
    "'unlabeled' is a vrsearch extension listing images without labels.",
    "cohort": "Synthetic multi-phase, multi-scanner abdominal CT with the 13 FLARE22 organs (vrsearch phantom, "
    "cohort population, seed {seed}). 'unlabeled' is a vrsearch extension listing images without labels.",
}


def _dataset_json(config: PhantomConfig, entries: dict[str, list[dict]]) -> dict:
    return {
        "name": "vrsearch-phantom",
        "description": _DESCRIPTION[config.population].format(seed=config.seed),
        "reference": "vrsearch.data.phantom",
        "licence": "CC0",
        "release": str(PHANTOM_VERSION[config.population]),
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "channel_names": {"0": "CT"},
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "numTraining": config.cases,
        "numTest": config.test,
        "numUnlabeled": config.unlabeled,
        "file_ending": ".nii.gz",
        **entries,
    }


def _finished(out: Path, stamp: dict, marker: str = "phantom.json") -> bool:
    """True if ``out`` holds the dataset of ``stamp`` (its ``marker`` file says so);
    False if absent or empty; else raise. ``marker`` names the kind of dataset in messages."""
    if not out.exists():
        return False
    what = Path(marker).stem
    stamp_file = out / marker
    if out.is_dir() and stamp_file.is_file():
        try:
            found = json.loads(stamp_file.read_text())
        except (OSError, ValueError):
            found = None
        if found == stamp:
            return True
        raise FileExistsError(
            f"{out} holds a {what} made with other settings ({_difference(found, stamp, marker)}); "
            "remove it or pick another path"
        )
    if not out.is_dir() or any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a {what} dataset; refusing to overwrite it")
    return False


def _difference(found: object, wanted: dict[str, Any], marker: str = "phantom.json") -> str:
    """What differs between two stamps, e.g. ``population classic, wanted cohort``."""
    if not isinstance(found, dict):
        return f"unreadable {marker}"

    def flat(st: dict[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in st.items() if k != "config"}, "population": "classic", **(st.get("config") or {})}

    a, b = flat(found), flat(wanted)
    diff = [f"{k} {a.get(k)}, wanted {b[k]}" for k in b if a.get(k) != b[k]]
    return "; ".join(diff) or "unknown fields " + ", ".join(sorted(set(a) - set(b)))


def begin(out: Path, stamp: dict, marker: str = "phantom.json") -> Path | None:
    """None when ``out`` already holds the dataset of ``stamp``; else a fresh temporary
    sibling folder to write into (see :func:`publish`). Other content raises."""
    if _finished(out, stamp, marker):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))


def publish(tmp: Path, out: Path, stamp: dict, marker: str = "phantom.json") -> None:
    """Stamp the finished dataset in ``tmp`` (its ``marker`` file) and rename it onto
    ``out`` (atomic; it replaces a missing or empty directory). If a twin writer got there
    first with the same stamp, ``tmp`` is dropped; any other existing content is an error."""
    (tmp / marker).write_text(json.dumps(stamp, indent=2) + "\n")
    try:
        os.rename(tmp, out)
    except OSError:
        if not _finished(out, stamp, marker):  # raises unless a twin writer just finished
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def write_phantom(
    out: Path | str, config: PhantomConfig = PhantomConfig(), *, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Write the dataset under ``out`` and return it.

    Layout: ``imagesTr/phantom_XXX_0000.nii.gz`` + ``labelsTr/phantom_XXX.nii.gz``
    (labeled), ``imagesUnlabeled/`` (the next numbers), ``imagesTs/`` +
    ``labelsTs/`` (the numbers after that), ``dataset.json`` (MSD/nnU-Net
    style plus an ``unlabeled`` list) and ``phantom.json`` (the config,
    written last).  Idempotent: an existing phantom with the same config is
    returned as is; anything else non-empty raises FileExistsError.  Files go
    to a temporary sibling directory renamed into place at the end, so an
    interrupted run leaves nothing behind at ``out``.
    """
    out = Path(out)
    stamp = _stamp(config)
    tmp = begin(out, stamp)
    if tmp is None:
        return out
    try:
        groups = [
            ("training", "imagesTr", "labelsTr", config.cases),
            ("unlabeled", "imagesUnlabeled", None, config.unlabeled),
            ("test", "imagesTs", "labelsTs", config.test),
        ]
        entries: dict[str, list[dict]] = {}
        total, index = config.cases + config.unlabeled + config.test, 0
        affine = phantom_affine(config)
        for key, img_dir, lab_dir, count in groups:
            entries[key] = []
            for _ in range(count):
                case = f"phantom_{index:03d}"
                image, label, _aff = generate_case(index, config)
                (tmp / img_dir).mkdir(exist_ok=True)
                _save(image, affine, tmp / img_dir / f"{case}_0000.nii.gz")
                entry = {"image": f"./{img_dir}/{case}_0000.nii.gz"}
                if lab_dir is not None:
                    (tmp / lab_dir).mkdir(exist_ok=True)
                    _save(label, affine, tmp / lab_dir / f"{case}.nii.gz")
                    entry["label"] = f"./{lab_dir}/{case}.nii.gz"
                entries[key].append(entry)
                index += 1
                if progress is not None:
                    progress(index, total)
        (tmp / "dataset.json").write_text(json.dumps(_dataset_json(config, entries), indent=2) + "\n")
        publish(tmp, out, stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
