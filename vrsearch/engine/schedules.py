"""Learning-rate schedules as pure functions of the iteration.

A schedule that is a function of ``it`` (not a stateful scheduler object)
resumes exactly from a checkpoint and is identical on every DDP rank.
METHODS.md, "Schedules": poly ``(1 − it/max)^0.9``, step decay, cosine with
warm-up. The sigmoid ramp-up ``exp(−5(1 − t)²)`` for unsupervised weights
lives in :mod:`vrsearch.components.schedules` and is re-exported here.
"""

from __future__ import annotations

import math

from vrsearch.components.schedules import sigmoid_rampup
from vrsearch.core.config import ScheduleConfig

__all__ = ["lr_at", "sigmoid_rampup"]


def lr_at(it: int, base_lr: float, total: int, cfg: ScheduleConfig) -> float:
    """Learning rate for iteration ``it`` (0-based) of ``total``."""
    if cfg.warmup and it < cfg.warmup:
        return base_lr * (it + 1) / cfg.warmup
    t = min(max(it - cfg.warmup, 0), max(total - cfg.warmup, 1))
    span = max(total - cfg.warmup, 1)
    if cfg.name == "poly":
        lr = base_lr * (1.0 - t / span) ** cfg.power
    elif cfg.name == "step":
        lr = base_lr * cfg.gamma ** (t // cfg.step_size)
    elif cfg.name == "cosine":
        lr = cfg.min_lr + 0.5 * (base_lr - cfg.min_lr) * (1.0 + math.cos(math.pi * t / span))
    else:
        lr = base_lr
    return max(lr, cfg.min_lr)
