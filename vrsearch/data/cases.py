"""A dataset as the rest of the package sees it, whatever its folder layout: its
:class:`Case` s grouped by role in a :class:`DatasetIndex`, and how a layout's image
files name their cases (:func:`case_id`, :func:`folder_cases`). A leaf module: the
layouts' readers build these, everything downstream reads them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrsearch.errors import DataError

CHANNEL_SUFFIX = "_0000"
NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Case:
    """One image (and its label map, if any). ``id`` is unique in a dataset."""

    id: str
    image: Path
    label: Path | None
    meta: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class DatasetIndex:
    """All cases of a dataset, grouped by role, with the class names."""

    root: Path
    name: str
    labels: dict[int, str] = field(hash=False)
    labeled: tuple[Case, ...]
    unlabeled: tuple[Case, ...]
    test: tuple[Case, ...]
    #: imaging modality as the dataset declares it (``CT``, ``MRI``, ``T2``, ...; "" unknown):
    #: chooses the intensity defaults (:mod:`vrsearch.data.intensity`)
    modality: str = ""

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return len(self.labels)


def case_id(filename: str, ending: str | None = None) -> str:
    """Case id of an image file name: drop the file ending and ``_0000``."""
    endings = (ending,) if ending else NIFTI_ENDINGS
    for end in endings:
        if filename.endswith(end):
            filename = filename[: -len(end)]
            break
    if filename.endswith(CHANNEL_SUFFIX):
        filename = filename[: -len(CHANNEL_SUFFIX)]
    return filename


def ending_of(name: str) -> str:
    """The file ending of ``name`` (``.nii.gz`` counts as one)."""
    return next((e for e in NIFTI_ENDINGS if name.endswith(e)), Path(name).suffix)


def folder_cases(
    images: Path,
    ending: str,
    labels: Path | None,
    *,
    required: bool,
    pattern: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> list[Case]:
    """Cases from the image files of one folder, labels looked up by id."""
    pattern = pattern or f"*{CHANNEL_SUFFIX}{ending}"
    cases: list[Case] = []
    for image in sorted(p for p in images.glob(pattern) if p.is_file() and not p.name.startswith(".")):
        cid = case_id(image.name, ending)
        label = labels / f"{cid}{ending}" if labels is not None else None
        if label is not None and not label.is_file():
            if required:
                raise DataError(f"label not found for image {image}: expected {label}")
            label = None
        cases.append(Case(cid, image, label, dict(meta or {})))
    return cases
