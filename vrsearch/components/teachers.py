"""Teachers (METHODS.md, "Teachers"): frozen copies, EMA teachers, CPS twins.

* :class:`FrozenCopy`: a deep copy of a network whose parameters never
  require grad; ``copy_from(net)`` overwrites it (self-training snapshots).
* :class:`EMATeacher`: the Mean Teacher (Tarvainen & Valpola, "Mean teachers
  are better role models", NeurIPS 2017): ``ξ ← t·ξ + (1−t)·θ`` with
  ``t = min(1 − 1/(step+1), decay)`` during warm-up (their reference code),
  else ``t = decay``. Buffers (BatchNorm running statistics) are *copied*
  from the student, not averaged.
* :func:`twin_networks`: CPS twins (Chen et al., "Semi-supervised semantic
  segmentation with cross pseudo supervision", CVPR 2021): the same
  architecture built twice with different, deterministic initialisations;
  :func:`twin_predictor` picks the evaluated one (or their mean, :class:`MeanOfTwins`).

Mode: a teacher's ``forward`` runs under ``torch.no_grad`` in whatever mode
its owner is in (``method.train()`` during training, as in the reference
Mean Teacher / UA-MT code, which keep the EMA model in train mode; the
evaluator switches the predictor to eval mode itself). With the default
InstanceNorm both modes compute the same thing; with BatchNorm a train-mode
teacher normalises with its batch statistics, and the running statistics it
accumulates are overwritten from the student at the next update.
Everything is parameters or buffers, so the owner's ``state_dict`` holds it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn


class FrozenCopy(nn.Module):
    """A gradient-free deep copy of ``source`` (``self.module``)."""

    def __init__(self, source: nn.Module):
        super().__init__()
        self.module = copy.deepcopy(source)
        for p in self.module.parameters():
            p.requires_grad_(False)
            p.grad = None

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def _pairs(self, source: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        mine, theirs = list(self.module.parameters()), list(source.parameters())
        if len(mine) != len(theirs):
            raise ValueError("source does not have the teacher's architecture")
        return mine, theirs

    @torch.no_grad()
    def _copy_buffers(self, source: nn.Module) -> None:
        for b, s in zip(self.module.buffers(), source.buffers(), strict=True):
            b.copy_(s)

    @torch.no_grad()
    def copy_from(self, source: nn.Module) -> None:
        """Overwrite every parameter and buffer with ``source``'s (a snapshot)."""
        for p, q in zip(*self._pairs(source), strict=True):
            p.copy_(q)
        self._copy_buffers(source)


class EMATeacher(FrozenCopy):
    """Exponential-moving-average teacher of ``student`` (Tarvainen & Valpola 2017).

    ``update(student, step)`` with ``step`` the number of optimiser steps
    taken so far (1 after the first step, as the reference code increments
    its ``global_step`` before updating): with ``warmup`` the decay is
    ``min(1 − 1/(step+1), decay)``, so the early teacher is not dominated by
    the random initialisation."""

    def __init__(self, student: nn.Module, decay: float, warmup: bool = True):
        super().__init__(student)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay, self.warmup = float(decay), bool(warmup)

    def momentum(self, step: int) -> float:
        """The ``t`` of ``ξ ← t·ξ + (1−t)·θ`` at ``step``."""
        if not self.warmup:
            return self.decay
        return min(1.0 - 1.0 / (step + 1), self.decay)

    @torch.no_grad()
    def update(self, student: nn.Module, step: int) -> None:
        t = self.momentum(step)
        teacher, source = self._pairs(student)
        for p, q in zip(teacher, source, strict=True):
            p.mul_(t).add_(q.detach(), alpha=1.0 - t)
        self._copy_buffers(student)

    def extra_repr(self) -> str:
        return f"decay={self.decay}, warmup={self.warmup}"


def twin_networks(build: Callable[[], nn.Module], seed: int) -> tuple[nn.Module, nn.Module]:
    """Two networks from ``build()`` initialised under seeds ``seed`` and ``seed+1``.

    The global CPU RNG state is saved and restored, so building twins does
    not shift any later random draw (build on the CPU, then move)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        a = build()
        torch.manual_seed(seed + 1)
        b = build()
    return a, b


class MeanOfTwins(nn.Module):
    """Ensemble predictor: ``log((softmax(A(x)) + softmax(B(x))) / 2)``."""

    def __init__(self, a: nn.Module, b: nn.Module):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = 0.5 * (torch.softmax(self.a(x), 1) + torch.softmax(self.b(x), 1))
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))


def twin_predictor(evaluate: str, a: nn.Module, b: nn.Module) -> nn.Module:
    """The evaluated network of a twin method: ``a``, ``b`` or ``mean`` (the ensemble,
    built on demand: not a submodule, so no duplicate state in checkpoints)."""
    if evaluate == "a":
        return a
    if evaluate == "b":
        return b
    return MeanOfTwins(a, b)
