"""What one :meth:`~vrsearch.engine.trainer.Trainer.fit` carries and returns: the loop's
state (where it started, the best model so far, the history rows, the clock, the loss
monitor), its result, and the validation summary that selects the best model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vrsearch.engine.metrics import METRIC_COLUMNS, mean_foreground
from vrsearch.engine.monitor import LossMonitor

#: what the loop hands every evaluation's row to (Tune's ``report``, a console line)
Reporter = Callable[[dict[str, Any]], None]


@dataclass
class FitResult:
    status: str  # "completed" | "failed"
    error: str
    iterations: int
    best_iteration: int
    best_val: dict[str, float]
    final_val: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    cases: list[dict[str, Any]] = field(default_factory=list)
    wall_time_s: float = 0.0
    #: the iteration of the checkpoint training continued from (0: from the start)
    resumed_from: int = 0


@dataclass
class RunState:
    """The state of one :meth:`Trainer.fit`: where it started, the best model so far,
    the history rows (one per logged/evaluated iteration), the clock and the monitor."""

    start: int
    best: dict[str, Any]
    history: list[dict[str, Any]]
    t0: float
    monitor: LossMonitor
    report: Reporter | None
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rows = {r["iteration"]: r for r in self.history}

    def row(self, i: int) -> dict[str, Any]:
        if i not in self.rows:
            self.rows[i] = {"iteration": i}
            self.history.append(self.rows[i])
        return self.rows[i]

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the (case, class) rows; a class empty in truth and prediction
    is NaN and left out (``train.eval.both_empty``), a missed organ counts as Dice 0 and the
    worst-case distance, so a checkpoint cannot win selection by predicting nothing."""
    return {m: mean_foreground(rows, m) for m in METRIC_COLUMNS}
