"""One replayed search on a finished study's recorded curves (a tabular benchmark).

The real parts decide: an Optuna sampler (:func:`~vrsearch.orchestrate.searchers.make_sampler`,
asked and told in process) proposes configurations; Ray Tune's scheduler objects
(:func:`~vrsearch.orchestrate.schedulers.tune_scheduler`: ASHA, asynchronous Hyperband,
the median rule, FIFO) are handed each recorded report in the order the reports would
arrive, and stop trials. No trial trains: the event loop below plays the part of
Tune's controller on a simulated clock counted in iterations, with ``concurrency``
trials running at once (a freed slot asks the sampler for the next proposal).

What the sampler is told when a trial ends is what Ray's ``OptunaSearch`` is told: the
trial's last report (its value at the rung where a scheduler stopped it). A proposal
maps to a measured configuration as :meth:`CurveTable.nearest` says (the sampler is
told that configuration's value at its own proposal, a nearest-neighbour surrogate);
the search ends after ``samples`` proposals or when every configuration has run.
"""

from __future__ import annotations

import heapq
import importlib.util
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from vrsearch.orchestrate.schedulers import ended_trial, no_live_trials, tune_scheduler
from vrsearch.orchestrate.searchers import _optuna, make_sampler
from vrsearch.orchestrate.tabular import CurveTable
from vrsearch.study.design import optuna_space

SEARCHERS = ("tpe", "random", "cmaes")
SCHEDULERS = ("asha", "hyperband", "median", "none")


@dataclass(frozen=True)
class ReplayConfig:
    """One search to replay (the options of ``vrsearch replay``)."""

    searcher: str = "tpe"
    scheduler: str = "asha"
    #: first rung / median-rule grace, in iterations (None: the table's first report)
    grace: int | None = None
    reduction_factor: int = 2
    brackets: int = 3
    n_startup_trials: int = 10
    multivariate: bool = True
    constant_liar: bool = True
    concurrency: int = 2
    #: proposals per search (None: as many as the table has configurations)
    samples: int | None = None

    def label(self) -> str:
        """E.g. ``tpe (multivariate, liar, 10 start) + asha (grace 50, rf 2)``."""
        s = self.searcher
        if s == "tpe":
            s += f" ({'multivariate' if self.multivariate else 'independent'}"
            s += f"{', liar' if self.constant_liar else ''}, {self.n_startup_trials} start)"
        elif s == "cmaes":
            s += f" ({self.n_startup_trials} start)"
        if self.scheduler == "none":
            return f"{s} + none"
        extra = f", {self.brackets} brackets" if self.scheduler == "hyperband" else ""
        rf = f", rf {self.reduction_factor}" if self.scheduler != "median" else ""
        return f"{s} + {self.scheduler} (grace {self.grace}{rf}{extra})"


def check(cfg: ReplayConfig, table: CurveTable) -> ReplayConfig:
    """``cfg`` with its grace period filled in; ValueError (one line) for an option out of range."""
    if cfg.searcher not in SEARCHERS:
        raise ValueError(f"--searcher {cfg.searcher!r}: not one of {', '.join(SEARCHERS)}")
    if (
        cfg.searcher == "cmaes"
        and importlib.util.find_spec("cmaes") is None
        and any(d.type != "categorical" for d in table.study.search.space.values())
    ):
        raise ValueError("--searcher cmaes: Optuna's CMA-ES needs the 'cmaes' package (pip install cmaes)")
    if cfg.scheduler not in SCHEDULERS:
        raise ValueError(f"--scheduler {cfg.scheduler!r}: not one of {', '.join(SCHEDULERS)}")
    budget = int(table.cost().max())
    grace = cfg.grace if cfg.grace is not None else int(min(it[0] for it in table.iterations))
    if cfg.scheduler != "none" and not 0 < grace < budget:
        raise ValueError(f"--grace {grace}: must be above 0 and below the budget ({budget} iterations)")
    for name in ("reduction_factor", "brackets", "n_startup_trials", "concurrency"):
        low = 2 if name == "reduction_factor" else 1
        if getattr(cfg, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least {low}")
    if cfg.samples is not None and cfg.samples < 1:
        raise ValueError(f"--samples {cfg.samples}: must be at least 1")
    return ReplayConfig(**{**asdict(cfg), "grace": grace})


def _scheduler_and_study(table: CurveTable, cfg: ReplayConfig, grace: int, seed: int) -> tuple[Any, Any]:
    """Tune's scheduler object and an in-process Optuna study with the searcher's sampler."""
    sched = tune_scheduler(
        cfg.scheduler,
        grace,
        int(table.cost().max()) + 1,
        cfg.reduction_factor,
        cfg.brackets,
        metric=table.metric,
        mode=table.study.search.mode,
    )
    sampler = make_sampler(
        cfg.searcher,
        seed,
        n_startup_trials=cfg.n_startup_trials,
        multivariate=cfg.multivariate,
        constant_liar=cfg.constant_liar,
    )
    direction = "maximize" if table.sign > 0 else "minimize"
    return sched, _optuna().create_study(direction=direction, sampler=sampler)


def search(table: CurveTable, cfg: ReplayConfig, seed: int) -> pd.DataFrame:
    """One replayed search (searcher seed ``seed``): a row per report, in arrival order —
    ``time`` (simulated clock, iterations), ``compute`` (iterations trained by all
    trials so far), ``trial``, ``config``, ``iteration``, ``value``, ``best`` (best report
    so far) and ``stopped`` (the scheduler stopped the trial here)."""
    if cfg.grace is None:
        raise ValueError("search() needs a checked config (check() fills in the grace period)")
    np.random.seed(seed)  # Tune's Hyperband draws each trial's bracket from numpy's global generator
    ties = np.random.default_rng([seed, 1])  # which of equally near configurations a proposal takes
    sched, ost = _scheduler_and_study(table, cfg, cfg.grace, seed)
    suggest, ctrl = optuna_space(table.study), no_live_trials()
    samples = min(cfg.samples or len(table), len(table))
    used: set[int] = set()
    running: dict[int, tuple] = {}
    events: list[tuple[float, int, int, int]] = []  # (time, trial, config, report index)
    rows, compute, best = [], 0.0, -math.inf

    def start(now: float) -> None:
        if len(used) >= samples:
            return
        asked = ost.ask()
        suggest(asked)
        config = table.nearest(asked.params, used, ties)
        used.add(config)
        number = len(used) - 1
        trial = ended_trial(str(number))
        sched.on_trial_add(ctrl, trial)
        running[number] = (asked, trial, now)
        heapq.heappush(events, (now + table.iterations[config][0], number, config, 0))

    for _ in range(cfg.concurrency):
        start(0.0)
    while events:
        now, number, config, j = heapq.heappop(events)
        asked, trial, began = running[number]
        its, vals = table.iterations[config], table.values[config]
        compute += its[j] - (its[j - 1] if j else 0.0)
        value = float(vals[j])
        best = max(best, table.sign * value)
        result = {"iteration": int(its[j]), table.metric: value}
        decision = sched.on_trial_result(ctrl, trial, result)
        last = j == len(its) - 1
        stopped = decision != "CONTINUE" and not last
        rows.append((now, compute, number, config, int(its[j]), value, table.sign * best, stopped))
        if last or stopped:
            sched.on_trial_complete(ctrl, trial, result)
            ost.tell(asked, value)
            del running[number]
            start(now)
        else:
            heapq.heappush(events, (began + its[j + 1], number, config, j + 1))
    return pd.DataFrame(rows, columns=["time", "compute", "trial", "config", "iteration", "value", "best", "stopped"])


def cost_to_target(trace: pd.DataFrame, table: CurveTable, target: float) -> float:
    """Compute (iterations) at the first report within ``target`` of the table's best (inf if never)."""
    hit = trace[table.sign * trace.best >= table.sign * table.best() - target - 1e-12]
    return float(hit.compute.iloc[0]) if len(hit) else math.inf
