"""Pseudo-labels, confidence and entropy (METHODS.md, "Pseudo-labels").

``pseudo_labels(p)`` returns ``argmax p`` (ties → lowest class index) and the
confidence ``max p``; ``entropy(p) = −Σ p log p`` is 0 for one-hot ``p`` and
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


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy ``−Σ p log p`` (nats) along ``dim``; ``0·log 0 = 0``."""
    tiny = torch.finfo(probs.dtype).tiny
    return -(probs * torch.log(probs.clamp_min(tiny))).sum(dim)


__all__ = ["entropy", "pseudo_labels", "sigmoid_rampup"]
