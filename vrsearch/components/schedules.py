"""Weight schedules for unsupervised loss terms (METHODS.md, "Schedules").

Pure functions of the iteration, so they resume exactly and agree on every
rank. Learning-rate schedules live in :mod:`vrsearch.engine.schedules`, which
re-exports :func:`sigmoid_rampup` for backward compatibility.
"""

from __future__ import annotations

import math


def sigmoid_rampup(it: int, length: int) -> float:
    """``exp(−5 (1 − t)²)`` with ``t = it/length`` clipped to [0, 1] (Laine & Aila
    2017, used by Mean Teacher); a non-positive ``length`` means no ramp-up (1)."""
    if length <= 0:
        return 1.0
    t = min(max(it / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def fraction_of(fraction: float, iterations: int) -> int:
    """``round(fraction · iterations)`` iterations (knobs given as a fraction of training)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    return int(round(fraction * iterations))
