"""What the engine needs from a method.

A method is an ``nn.Module`` (so its networks, teachers and banks are saved
and restored together, and DDP can wrap it) whose ``forward(batch, it)``
returns the loss to minimise plus named terms that are all logged. The
engine owns the loop, the optimiser and evaluation; a method owns only the
maths of one step.
"""

from __future__ import annotations

from torch import nn

from vrsearch.core.knobs import SupervisedLossKnob  # re-exported: older method sources read it here
from vrsearch.core.step import Batch, BuildContext, StepOutput

__all__ = ["Batch", "BuildContext", "Method", "StepOutput", "SupervisedLossKnob"]


class Method(nn.Module):
    """Base class: subclasses implement :meth:`forward` and :meth:`predictor`."""

    def forward(self, batch: Batch, iteration: int) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def after_step(self, iteration: int) -> None:
        """Called after each optimiser step (EMA teachers, banks, refreshes)."""

    def predictor(self) -> nn.Module:  # pragma: no cover - abstract
        """The network evaluated on val/test: maps ``[B, 1, ...]`` images to logits."""
        raise NotImplementedError

    def trainable_parameters(self):
        return (p for p in self.parameters() if p.requires_grad)
