"""Dataset indexes: find the image/label files of a dataset in a public layout.

Three layouts are understood (``LAYOUTS``):

``msd``
    Medical Segmentation Decathlon: a ``dataset.json`` at the root listing
    ``training`` (image/label pairs), ``test`` and, as our extension,
    ``unlabeled`` entries. Paths are relative to the root; when a listed
    ``x.nii.gz`` is missing but the nnU-Net channel file ``x_0000.nii.gz``
    exists, the latter is used.
``nnunet``
    nnU-Net v2 raw data: ``imagesTr/<case>_0000<ending>`` with
    ``labelsTr/<case><ending>``, ``imagesTs``/``labelsTs`` for test and, as
    our extension, ``imagesUnlabeled`` for unlabeled images.
``flare22``
    The FLARE22 challenge release: ``Training/FLARE22_LabeledCase50/{images,
    labels}``, ``Training/*Unlabeled*`` folders and ``Validation`` (test).
    A root holding an nnU-Net conversion (``dataset.json``) is read as
    ``nnunet``.

Only files are located here (existence is checked); their content is
checked by :mod:`vrsearch.data.validate`. Every problem raises
:class:`~vrsearch.errors.DataError` with a one-line message naming the file;
a missing root names its absolute path and what the layout must hold there
(:func:`missing_root_message`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vrsearch.data.acdc import read_acdc
from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.data.dataset_json import read_msd, read_nnunet
from vrsearch.data.flare22 import read_flare22
from vrsearch.errors import DataError

LAYOUTS = ("msd", "nnunet", "flare22", "acdc")


def read_dataset(layout: str, root: Path | str) -> DatasetIndex:
    """Index the dataset at ``root`` stored in ``layout`` (one of ``LAYOUTS``)."""
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(missing_root_message(layout, root))
    reader = {"msd": read_msd, "nnunet": read_nnunet, "flare22": read_flare22, "acdc": read_acdc}[layout]
    index = reader(root)
    _check_unique_ids((*index.labeled, *index.unlabeled, *index.test))
    return index


# (layout name in messages, what the root must hold) for a missing root
ROOT_HINTS: dict[str, tuple[str, str]] = {
    "msd": (
        "MSD",
        "put a Medical Segmentation Decathlon task there (dataset.json listing training/test, "
        "imagesTr/, labelsTr/, optional imagesTs/)",
    ),
    "nnunet": (
        "nnU-Net",
        "put an nnU-Net raw dataset there (dataset.json, imagesTr/<case>_0000.nii.gz, "
        "labelsTr/<case>.nii.gz, optional imagesTs/, imagesUnlabeled/)",
    ),
    "flare22": (
        "FLARE22",
        "put the FLARE22 release there (Training/FLARE22_LabeledCase50/{images,labels}/, "
        "Training/FLARE22_UnlabeledCase*/, optional Validation/)",
    ),
    "acdc": (
        "ACDC",
        "put the ACDC release there (training/patientXXX/{Info.cfg, patientXXX_frameYY[_gt].nii.gz}, "
        "optional testing/)",
    ),
}


def missing_root_message(layout: str, root: Path) -> str:
    """One line for a dataset root that is not a folder: where the data must be, in which layout."""
    name, hint = ROOT_HINTS[layout]
    where = Path(root).expanduser().absolute()
    what = "is not a folder" if where.exists() else "not found"
    return f"{name} dataset {what} at {where}: {hint} or set dataset.root"


def _check_unique_ids(cases: Iterable[Case]) -> None:
    seen: dict[str, Path] = {}
    for case in cases:
        if case.id in seen:
            raise DataError(f"duplicated case id {case.id!r}: {seen[case.id]} and {case.image}")
        seen[case.id] = case.image
