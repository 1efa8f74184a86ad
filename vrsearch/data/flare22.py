"""The FLARE22 challenge release (layout ``flare22``, :mod:`vrsearch.data.layouts`):
``Training/FLARE22_LabeledCase50/{images,labels}``, ``Training/*Unlabeled*`` folders and
``Validation`` (test); a root holding an nnU-Net conversion (``dataset.json``) is read as
``nnunet``."""

from __future__ import annotations

from pathlib import Path

from vrsearch.data.cases import Case, DatasetIndex, case_id, folder_cases
from vrsearch.data.dataset_json import read_nnunet
from vrsearch.errors import DataError

FLARE22_LABELS: dict[int, str] = dict(
    enumerate(
        (
            "background",
            "liver",
            "right_kidney",
            "spleen",
            "pancreas",
            "aorta",
            "inferior_vena_cava",
            "right_adrenal_gland",
            "left_adrenal_gland",
            "gallbladder",
            "esophagus",
            "stomach",
            "duodenum",
            "left_kidney",
        )
    )
)


def _subdirs(parent: Path, *words: str, exclude: str | None = None) -> list[Path]:
    """Sub-folders of ``parent`` whose lower-cased name contains any of ``words``."""
    if not parent.is_dir():
        return []
    return sorted(
        d
        for d in parent.iterdir()
        if d.is_dir() and any(w in d.name.lower() for w in words) and not (exclude and exclude in d.name.lower())
    )


def _flare_test(root: Path) -> list[Case]:
    val = root / "Validation"
    if not val.is_dir():
        return []
    images = val / "images" if (val / "images").is_dir() else val
    label_dirs = [
        d
        for d in (
            *_subdirs(val, "label", "gt"),
            *_subdirs(root, "validationgt", "validation_gt", "validationlabel", "validation_label"),
        )
        if d != images
    ]
    return folder_cases(images, ".nii.gz", label_dirs[0] if label_dirs else None, required=False, pattern="*.nii.gz")


def read_flare22(root: Path) -> DatasetIndex:
    training = root / "Training" if (root / "Training").is_dir() else root
    labeled_dirs = [
        d
        for d in _subdirs(training, "labeledcase", exclude="unlabeled")
        if (d / "images").is_dir() and (d / "labels").is_dir()
    ]
    if not labeled_dirs:
        if (root / "dataset.json").is_file():
            return read_nnunet(root)
        raise DataError(
            f"FLARE22 data not found under {root}: expected "
            "Training/FLARE22_LabeledCase50/{images,labels}/FLARE22_Tr_XXXX[_0000].nii.gz "
            "(and optional Training/FLARE22_UnlabeledCase*/, Validation/), or an nnU-Net dataset.json"
        )
    labeled = folder_cases(
        labeled_dirs[0] / "images", ".nii.gz", labeled_dirs[0] / "labels", required=True, pattern="*.nii.gz"
    )
    if not labeled:
        raise DataError(f"no FLARE22 images (*.nii.gz) in {labeled_dirs[0] / 'images'}")
    unlabeled: list[Case] = []
    for folder in _subdirs(training, "unlabeled"):
        for image in sorted(
            p
            for p in folder.rglob("*.nii.gz")
            if p.is_file() and not p.name.startswith(".") and "__MACOSX" not in p.parts
        ):
            unlabeled.append(Case(case_id(image.name), image, None, {"folder": folder.name}))
    return DatasetIndex(
        root=root,
        name="FLARE22",
        labels=dict(FLARE22_LABELS),
        labeled=tuple(labeled),
        unlabeled=tuple(unlabeled),
        test=tuple(_flare_test(root)),
        modality="CT",
    )
