"""Learning-rate schedules as pure functions of the iteration.

A schedule that is a function of ``it`` (not a stateful scheduler object)
resumes exactly from a checkpoint and is identical on every DDP rank.
METHODS.md, "Schedules": poly ``(1 − it/max)^0.9``, step decay, cosine with
warm-up; plus the sigmoid ramp-up ``exp(−5(1 − t)²)`` used for unsupervised
weights.
"""

from __future__ import annotations

import math

from vrsearch.study.schema import ScheduleConfig


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


def sigmoid_rampup(it: int, length: int) -> float:
    """``exp(−5 (1 − t)²)`` with ``t = it/length`` clipped to [0, 1] (Laine & Aila)."""
    if length <= 0:
        return 1.0
    t = min(max(it / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
