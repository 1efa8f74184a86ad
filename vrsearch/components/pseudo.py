"""Pseudo-labels, confidence and entropy (METHODS.md, "Pseudo-labels").

``pseudo_labels(p)`` returns ``argmax p`` (ties → lowest class index) and the
confidence ``max p``; ``class_argmax(x, dim)`` is the arg-max alone, with the
same ties; ``entropy(p) = −Σ p log p`` is 0 for one-hot ``p`` and
stays finite, in value and gradient, where some ``p = 0``. Both are pure
tensor functions; callers pass probabilities (softmax of a teacher, a peer
network or a frozen snapshot) and detach as their method requires.
"""

from __future__ import annotations

import torch

from vrsearch.components.schedules import sigmoid_rampup


def pseudo_labels(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs [B, C, ...]`` → ``(labels [B, ...] int64, confidence [B, ...])``."""
    if probs.dim() < 2:
        raise ValueError(f"probs must be [B, C, ...], got {tuple(probs.shape)}")
    confidence, labels = probs.max(dim=1)
    return labels, confidence


def class_argmax(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``argmax`` along ``dim`` (the first maximal index on ties, as ``torch.argmax``).

    Taken from ``max(dim)``: on CPU ``argmax`` over a dimension that is not the
    innermost one is ~6× slower (46 ms against 7 ms for a ``[4, 14, 48, 48, 32]``
    map on two threads), and it runs once or twice per step on every voxel."""
    return x.max(dim=dim).indices


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy ``−Σ p log p`` (nats) along ``dim``; ``0·log 0 = 0``."""
    tiny = torch.finfo(probs.dtype).tiny
    return -(probs * torch.log(probs.clamp_min(tiny))).sum(dim)


__all__ = ["class_argmax", "entropy", "pseudo_labels", "sigmoid_rampup"]
