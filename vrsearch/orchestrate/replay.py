"""Replaying searches on a finished study's recorded curves (``vrsearch replay``): many
searcher seeds of one setting (each search is :func:`~vrsearch.orchestrate.replay_search.search`),
the compute each took to come within a target of the best, the compute-vs-best curve, the
fidelity check, and the parquet files written to ``<run>/replay/``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrsearch.orchestrate.replay_search import SCHEDULERS, SEARCHERS, ReplayConfig, check, cost_to_target, search
from vrsearch.orchestrate.tabular import CurveTable

__all__ = ["SCHEDULERS", "SEARCHERS", "ReplayConfig", "check", "cost_to_target", "search"]
__all__ += ["Replayed", "best_at", "curve", "repeat", "replay", "summarize", "write"]


def repeat(
    table: CurveTable,
    cfg: ReplayConfig,
    repeats: int,
    target: float,
    first_seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``repeats`` searches (searcher seeds ``first_seed`` ...): their traces (with a
    ``searcher_seed`` column) and one row per search — compute to target and its
    fraction of the exhaustive compute, the best found, the compute spent."""
    exhaustive = float(table.cost().sum())
    traces, rows = [], []
    for seed in range(first_seed, first_seed + repeats):
        trace = search(table, cfg, seed).assign(searcher_seed=seed)
        cost = cost_to_target(trace, table, target)
        rows.append(
            {
                "searcher_seed": seed,
                "best": float(trace.best.iloc[-1]),
                "compute_to_target": cost,
                "fraction": cost / exhaustive,
                "compute_total": float(trace.compute.iloc[-1]),
                "configurations": int(trace.trial.nunique()),
                "stopped": int(trace.stopped.sum()),
            }
        )
        traces.append(trace)
    return pd.concat(traces, ignore_index=True), pd.DataFrame(rows)


def _quantile(values: np.ndarray, p: float) -> float:
    """numpy's default (linear) quantile, where a search that never reached the target
    (inf) ranks above every finite one: between a finite and an infinite value the
    quantile is infinite unless it falls on the finite one."""
    s = np.sort(values)
    pos = p * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or s[lo] == s[hi]:
        return float(s[lo])
    return math.inf if math.isinf(s[hi]) else float(s[lo] + (s[hi] - s[lo]) * (pos - lo))


def summarize(cfg: ReplayConfig, runs: pd.DataFrame, table: CurveTable, target: float) -> dict:
    """Median and spread (quartiles, min-max) of the fraction of exhaustive compute to
    come within ``target``; the share of searches that got there at all."""
    f = runs.fraction.to_numpy()
    reached = np.isfinite(f)
    q = [_quantile(f, p) for p in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {
        "search": cfg.label(),
        **asdict(cfg),
        "repeats": len(f),
        "target": target,
        "table_best": table.best(),
        "exhaustive_compute": float(table.cost().sum()),
        "fraction_median": float(q[2]),
        "fraction_q1": float(q[1]),
        "fraction_q3": float(q[3]),
        "fraction_min": float(q[0]),
        "fraction_max": float(q[4]),
        "reached": float(reached.mean()),
        "best_median": float(np.median(runs.best)),
    }


#: where ``vrsearch replay`` writes, inside the run directory
REPLAY_DIR = "replay"
#: compute fractions at which the printed compute-vs-best curve is read
CURVE_POINTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass
class Replayed:
    """What ``vrsearch replay`` shows and writes."""

    table: CurveTable
    cfg: ReplayConfig
    traces: pd.DataFrame
    runs: pd.DataFrame
    summary: dict[str, Any]
    fidelity: pd.DataFrame
    grace: int | None
    min_rho: float
    curve: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.curve = curve(self)


def best_at(traces: pd.DataFrame, compute: float) -> pd.Series:
    """Per searcher seed, the best report within ``compute`` iterations (NaN before the first)."""
    seen = traces[traces.compute <= compute]
    return seen.groupby("searcher_seed").best.last().reindex(traces.searcher_seed.unique())


def curve(replayed: Replayed) -> pd.DataFrame:
    """Compute (as a fraction of the exhaustive compute) vs the best found: median and
    quartiles over the searcher seeds, at :data:`CURVE_POINTS`."""
    exhaustive = float(replayed.table.cost().sum())
    rows = []
    for f in CURVE_POINTS:
        b = best_at(replayed.traces, f * exhaustive)
        rows.append(
            {
                "fraction": f,
                "best_median": float(b.median()),
                "best_q1": float(b.quantile(0.25)),
                "best_q3": float(b.quantile(0.75)),
                "searches_started": int(b.notna().sum()),
            }
        )
    return pd.DataFrame(rows)


def replay(table: CurveTable, cfg: ReplayConfig, repeats: int, target: float, min_rho: float = 0.8) -> Replayed:
    """``repeats`` replayed searches of ``cfg`` on ``table`` with the fidelity check."""
    from vrsearch.orchestrate.tabular import fidelity, recommended_grace

    cfg = check(cfg, table)
    traces, runs = repeat(table, cfg, repeats, target)
    fid = fidelity(table, target)
    return Replayed(
        table, cfg, traces, runs, summarize(cfg, runs, table, target), fid, recommended_grace(fid, min_rho), min_rho
    )


def write(replayed: Replayed, run_dir: Path | str) -> list[Path]:
    """``replay/`` in the run directory: ``traces.parquet`` (every report of every
    replayed search), ``runs.parquet`` (one row per search), ``curve.parquet``,
    ``fidelity.parquet`` and ``summary.parquet`` (one row per replayed search setting;
    a replay of the same setting replaces its row)."""
    from vrsearch.results.io import write_frame

    out = Path(run_dir) / REPLAY_DIR
    out.mkdir(exist_ok=True)
    label = replayed.summary["search"]
    summary = pd.DataFrame([{**replayed.summary, "recommended_grace": replayed.grace}])
    paths = []
    for name, frame in (
        ("traces", replayed.traces),
        ("runs", replayed.runs),
        ("curve", replayed.curve),
        ("summary", summary),
    ):
        path = out / f"{name}.parquet"
        frame = frame.assign(search=label, table_seed=replayed.table.seed)
        if path.exists():  # a replay of the same setting on the same seed's curves replaces the last one
            old = pd.read_parquet(path)
            same = (old.search == label) & (old.get("table_seed", -1) == replayed.table.seed)
            frame = pd.concat([old[~same], frame], ignore_index=True)
        write_frame(path, frame)
        paths.append(path)
    write_frame(out / "fidelity.parquet", replayed.fidelity)
    return [*paths, out / "fidelity.parquet"]
