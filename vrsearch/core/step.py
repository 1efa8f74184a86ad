"""What flows between the data pipeline, the engine and a method in one training
step: the :class:`Batch` the pipeline makes, the :class:`StepOutput` a method
returns, and the :class:`BuildContext` a method is built with."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vrsearch.core.config import ModelConfig

if TYPE_CHECKING:  # annotations only: a study's driver reads DataNeeds without importing torch
    import torch


@dataclass
class Batch:
    """One training step's data: labeled patches and (maybe) unlabeled ones.

    image ``[B, 1, X, Y, Z]`` float; label ``[B, 1, X, Y, Z]`` int64;
    unlabeled ``[U, 1, X, Y, Z]`` or None when the method needs none.
    Meta-labels: ``cases`` / ``unlabeled_cases`` are case (patient) ids;
    ``positions`` / ``unlabeled_positions`` ``[B]`` the patch centre along the
    axial axis as a fraction of its volume (SPCL's slice-position partition)."""

    image: torch.Tensor
    label: torch.Tensor
    unlabeled: torch.Tensor | None = None
    cases: list[str] = field(default_factory=list)
    unlabeled_cases: list[str] = field(default_factory=list)
    positions: torch.Tensor | None = None
    unlabeled_positions: torch.Tensor | None = None
    #: per-sample case meta from the dataset layout (e.g. ACDC ``{"patient", "phase"}``)
    case_meta: list[dict] = field(default_factory=list)
    unlabeled_meta: list[dict] = field(default_factory=list)

    def map_tensors(self, f: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        """A copy with ``f`` applied to every tensor field (an absent one stays None)."""

        def maybe(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else f(t)

        return dataclasses.replace(
            self,
            image=f(self.image),
            label=f(self.label),
            unlabeled=maybe(self.unlabeled),
            positions=maybe(self.positions),
            unlabeled_positions=maybe(self.unlabeled_positions),
        )

    def to(self, device: torch.device | str) -> Batch:
        return self.map_tensors(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """Page-locked copies of the tensors, so ``to(cuda)`` copies asynchronously
        (DataLoader's ``pin_memory=True`` calls this on every batch)."""
        return self.map_tensors(lambda t: t.pin_memory())


@dataclass
class StepOutput:
    """``loss`` is minimised; ``terms`` (scalar tensors) are logged as ``term_<name>``."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildContext:
    """What a method's builder may depend on besides its Params."""

    model: ModelConfig
    num_classes: int
    iterations: int
    seed: int = 0
    class_names: tuple[str, ...] = ()
    #: the engine logs the mean of the terms over each window of ``log_every`` iterations
    log_every: int = 1


@dataclass(frozen=True)
class DataNeeds:
    """What a method's step reads besides labeled patches, as its Params set it:
    ``unlabeled`` images, ``all_labels`` (every training case labeled: the fully
    supervised upper bound) and ``meta`` — per-case meta-labels every training case
    must carry (e.g. ACDC's ``phase``)."""

    unlabeled: bool = False
    all_labels: bool = False
    meta: tuple[str, ...] = ()
