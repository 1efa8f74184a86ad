"""A dataset as the rest of the package sees it, whatever its folder layout: its
:class:`Case` s grouped by role in a :class:`DatasetIndex` (a leaf module:
layouts and their readers build these, everything downstream reads them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
