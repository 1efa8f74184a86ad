"""What ``vrsearch replay`` prints (rich): the table replayed, the fidelity check of
early stopping per rung, the compute-vs-best curve and the fraction of the
exhaustive compute a search needed to come within the target of the table's best."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.table import Table


def _fraction(x: float) -> str:
    return "never" if math.isinf(x) else f"{100 * x:.0f} %"


def fidelity_table(fid: pd.DataFrame, grace: int | None, min_rho: float) -> Table:
    t = Table(title="Fidelity: does a rung rank configurations as the end does?", box=box.SIMPLE_HEAD)
    for col in ("rung (iteration)", "configurations", "Spearman", "Kendall", "regret of rung's best"):
        t.add_column(col, justify="right")
    for r in fid.itertuples():
        mark = " ←" if grace is not None and r.rung == grace else ""
        t.add_row(f"{r.rung}{mark}", str(r.configurations), f"{r.spearman:.2f}", f"{r.kendall:.2f}", f"{r.regret:.4f}")
    t.caption = (
        f"recommended grace period: {grace} iterations (every later rung has Spearman ≥ {min_rho})"
        if grace is not None
        else f"no rung reaches Spearman ≥ {min_rho} for good: early stopping would misrank; use --scheduler none"
    )
    return t


def curve_table(curve: pd.DataFrame, best: float) -> Table:
    t = Table(title="Compute vs best found (median and quartiles over searcher seeds)", box=box.SIMPLE_HEAD)
    for col in ("compute (of exhaustive)", "best median", "q1", "q3", "distance to table best"):
        t.add_column(col, justify="right")
    for r in curve.itertuples():
        t.add_row(
            f"{100 * r.fraction:.0f} %",
            f"{r.best_median:.4f}",
            f"{r.best_q1:.4f}",
            f"{r.best_q3:.4f}",
            f"{abs(best - r.best_median):.4f}",
        )
    return t


def print_replay(result: Any, console: Console | None = None) -> None:
    """Print a :class:`~vrsearch.orchestrate.replay.Replayed` (typed loosely: report/ sits below
    orchestrate/ and imports nothing from it)."""
    console = console or Console(highlight=False)
    tab, s = result.table, result.summary
    console.print(
        f"table: {len(tab)} configurations with full curves of {tab.metric} (seed {tab.seed}"
        + (f"; {tab.left_out} without a full curve left out" if tab.left_out else "")
        + f"), best {s['table_best']:.4f}, exhaustive compute {s['exhaustive_compute']:.0f} iterations"
    )
    console.print(fidelity_table(result.fidelity, result.grace, result.min_rho))
    console.print(curve_table(result.curve, s["table_best"]))
    console.print(
        f"{s['search']}, {s['concurrency']} at a time, {s['repeats']} searcher seeds: fraction of the "
        f"exhaustive compute to come within {s['target']} of the best: median "
        f"{_fraction(s['fraction_median'])} (quartiles {_fraction(s['fraction_q1'])}-"
        f"{_fraction(s['fraction_q3'])}, range {_fraction(s['fraction_min'])}-"
        f"{_fraction(s['fraction_max'])}); {100 * s['reached']:.0f} % of searches got there"
    )


def report_section(run_dir: Path | str) -> list[Any]:
    """The report's "Replayed searches" section, from what ``vrsearch replay`` wrote in
    ``RUN_DIR/replay/`` (nothing when it has not been run)."""

    import plotly.graph_objects as go

    from vrsearch.report import blocks as B

    where = Path(run_dir) / "replay"
    if not (where / "summary.parquet").is_file():
        return []
    summary, curves = pd.read_parquet(where / "summary.parquet"), pd.read_parquet(where / "curve.parquet")
    fid = pd.read_parquet(where / "fidelity.parquet")
    fig = go.Figure()
    for (label, seed), c in curves.groupby(["search", "table_seed"], sort=False):
        fig.add_scatter(x=100 * c.fraction, y=c.best_median, mode="lines+markers", name=f"{label} (seed {seed})")
    best = float(summary.table_best.iloc[-1])
    fig.add_hline(y=best - float(summary.target.iloc[-1]), line_dash="dot", annotation_text="table best − target")
    fig.update_layout(xaxis_title="compute, % of the exhaustive run", yaxis_title="best found (median over seeds)")
    rows = [
        (
            r.search,
            f"median {_fraction(r.fraction_median)} of the exhaustive compute (quartiles "
            f"{_fraction(r.fraction_q1)}-{_fraction(r.fraction_q3)}); {100 * r.reached:.0f} % of {r.repeats} "
            "searches reached the target",
        )
        for r in summary.itertuples()
    ]
    ranks = [
        (f"rung {r.rung}", f"Spearman {r.spearman:.2f}, Kendall {r.kendall:.2f}, regret of its best {r.regret:.4f}")
        for r in fid.itertuples()
    ]
    return [
        B.Section(
            "replay",
            "Replayed searches",
            [
                B.note(
                    "Searches replayed on this run's recorded curves by 'vrsearch replay' (Optuna samplers, Ray Tune "
                    "schedulers, no training): compute to come within the target of the best configuration."
                ),
                B.figure(fig),
                B.kv(rows),
                B.heading("Fidelity of early rungs (rank correlation with the final metric)"),
                B.kv(ranks),
            ],
        )
    ]
