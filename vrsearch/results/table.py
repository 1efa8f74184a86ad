"""The ablation table of a run: one row per group, baseline first.

:func:`ablation_table` combines the seed-level summary
(:func:`~vrsearch.results.stats.summarize`), the headline test against the
baseline (:func:`~vrsearch.results.stats.headline_tests`: paired t over seeds,
Holm across arms, minimal detectable difference), the case-level view on these
trained models (:func:`~vrsearch.results.stats.case_level_tests`), per-class Dice
and empty-mask counts, and the compute budget into an :class:`AblationTable`.
Its ``frame`` (:mod:`vrsearch.results.table_model`) holds raw numbers (Dice and Jaccard as fractions in [0, 1],
distances in mm) and is what ``to_csv`` writes. The renderers (Markdown,
LaTeX/booktabs and rich in :mod:`vrsearch.results.table_view`, HTML in the report)
show Dice and Jaccard in percent and put the best value of each metric column in
bold (max for Dice/Jaccard, min for distances); only the headline p-value gets stars.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pandas as pd

from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results.stats import (
    METRICS,
    budget,
    case_level_tests,
    empty_counts,
    group_labels,
    headline_tests,
    metric_columns,
    summarize,
    trial_metrics,
)
from vrsearch.results.summary import kernels_by_group
from vrsearch.results.table_cells import group_order, stars
from vrsearch.results.table_model import AblationTable

ALPHA, POWER, LEVEL = 0.05, 0.80, 0.95


def _per_class(trials: pd.DataFrame, cases: pd.DataFrame, split: str, order: list[str]) -> pd.DataFrame:
    """``pred_empty/<c>``, ``label_empty/<c>`` counts and ``rows_per_class`` per group (rows in ``order``)."""
    counts = empty_counts(trials, cases, split)
    out = pd.DataFrame(index=pd.Index(order, name="group"))
    if counts.empty:
        return out.assign(rows_per_class=math.nan)
    classes = list(pd.unique(counts["class"]))
    for flag in ("pred_empty", "label_empty"):
        wide = counts.pivot(index="group", columns="class", values=flag).reindex(index=order, columns=classes)
        out[[f"{flag}/{c}" for c in classes]] = wide.to_numpy(dtype=float)
    out["rows_per_class"] = counts.groupby("group")["rows"].max().reindex(order).to_numpy(dtype=float)
    return out


def _tests(trials: pd.DataFrame, cases: pd.DataFrame, baseline: str, split: str, order: list[str]) -> pd.DataFrame:
    """Headline and case-level columns of the frame, one row per group of ``order``."""
    head = headline_tests(trials, cases, baseline, split, "dice", LEVEL, ALPHA, POWER).set_index("group")
    case = case_level_tests(trials, cases, baseline, split, "dice").set_index("group")
    out = pd.DataFrame(index=pd.Index(order, name="group"))
    for key, source in (
        ("n_seeds", "n_seeds"),
        ("n_cases", "n_cases"),
        ("delta", "mean_diff"),
        ("delta_low", "ci_low"),
        ("delta_high", "ci_high"),
        ("delta_sd", "sd"),
        ("p", "p"),
        ("p_holm", "p_holm"),
        ("mdd", "mdd"),
    ):
        out[key] = head[source].reindex(order).to_numpy(dtype=float)
    out["delta_ci95"] = (out["delta_high"] - out["delta_low"]) / 2
    out["sig"] = [stars(p) for p in out["p_holm"]]
    for key in ("n_seeds", "n_cases", "mean_diff", "p", "p_holm", "rank_biserial"):
        out["case_" + key.replace("mean_diff", "delta")] = case[key].reindex(order).to_numpy(dtype=float)
    return out


def ablation_table(
    results: io.Results, baseline: str | None = None, split: str = "test", *, name: str | None = None
) -> AblationTable:
    """Build the ablation table of ``results`` (``name`` prefixes error messages).

    ``baseline`` defaults to the group "baseline" if present, else the first
    group (in table order) that has trials with metrics of ``split``."""
    prefix = f"{name}: " if name else ""
    trials, cases = results.trials, results.cases
    metrics = trial_metrics(trials, cases, split)
    if metrics.empty or metrics["dice"].notna().sum() == 0:
        raise VrsearchError(f"{prefix}no completed trials with {split} metrics yet")
    groups = list(pd.unique(group_labels(trials)))
    if baseline is None:
        scored = set(metrics.loc[metrics["dice"].notna(), "group"])
        ordered = [g for g in group_order(groups, results.study, None) if g in scored]
        baseline = "baseline" if "baseline" in groups else ordered[0]
    elif baseline not in groups:
        raise VrsearchError(f"{prefix}baseline {baseline!r} is not a group of this run (groups: {', '.join(groups)})")
    order = group_order(groups, results.study, baseline)

    summary = summarize(metrics, baseline)
    stat = {
        k: summary.pivot(index="group", columns="metric", values=k).reindex(order) for k in ("n", "mean", "std", "ci95")
    }
    classes = [c.split("/", 1)[1] for c in metric_columns(metrics) if c.startswith("dice/")]
    frame = pd.DataFrame({"group": order})
    frame["n"] = stat["n"]["dice"].fillna(0).astype(int).to_numpy()
    for key in ("mean", "std", "ci95"):
        frame[f"dice_{key}"] = stat[key]["dice"].to_numpy()
    for m in METRICS[1:]:
        frame[f"{m}_mean"] = stat["mean"][m].to_numpy() if m in stat["mean"] else math.nan
    frame = frame.join(_tests(trials, cases, baseline, split, order), on="group")
    for c in classes:
        frame[f"dice/{c}"] = stat["mean"][f"dice/{c}"].to_numpy()
    frame = frame.join(_per_class(trials, cases, split, order), on="group")
    spent = budget(trials).set_index("group").reindex(order)
    for key, source in (
        ("trials", "trials"),
        ("completed", "completed"),
        ("iterations", "iterations_sum"),
        ("wall_time_h", "wall_time_h"),
        ("device_hours", "device_hours"),
    ):
        frame[key] = spent[source].to_numpy()
    kernels = tuple(sorted(set().union(*kernels_by_group(trials).values())))
    return AblationTable(frame=frame, classes=classes, baseline=baseline, split=split, kernels=kernels)


def axis_slices(results: io.Results) -> list[tuple[str, io.Results]]:
    """One ``(label, results)`` per setting of the study's dataset axes (arms are compared
    with the baseline at the same labeled ratio / split seed); ``[("", results)]`` without axes.
    Within a slice a trial's group is its arm (or its knobs) without the axis values."""
    axes = ((results.study or {}).get("search") or {}).get("axes") or {}
    if not axes:
        return [("", results)]
    trials, out = results.trials, []
    labels = group_labels(trials)
    for combo in itertools.product(*axes.values()):
        parts = [
            f"{k.split('.', 1)[1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.', 1)[1]}={v}"
            for k, v in zip(axes, combo)
        ]
        keep = pd.Series(True, index=trials.index)
        for key, value in zip(axes, combo):
            column = f"config.{key}"
            keep &= trials[column] == value if column in trials else False
        suffix = ", " + ", ".join(parts)
        part = trials[keep].assign(group=[g[: -len(suffix)] if g.endswith(suffix) else g for g in labels[keep]])
        cases = results.cases[results.cases.trial_id.isin(part.trial_id)]
        out.append((", ".join(parts), io.Results(part, results.history, cases, results.study)))
    return out


def load_tables(run_dir: Path | str, baseline: str | None = None, split: str = "test") -> list[AblationTable]:
    """The run's ablation tables: one, or one per dataset-axis setting with results."""
    results, tables = io.load(run_dir), []
    for label, part in axis_slices(results):
        try:
            table = ablation_table(part, baseline=baseline, split=split, name=str(run_dir))
        except VrsearchError:
            if label:  # a setting whose trials have not finished yet
                continue
            raise
        table.slice = label
        tables.append(table)
    if not tables:
        raise VrsearchError(f"{run_dir}: no completed trials with {split} metrics yet")
    return tables


def load_table(run_dir: Path | str, baseline: str | None = None, split: str = "test") -> AblationTable:
    """Load a run directory and build its (first) ablation table (errors name the run dir)."""
    return load_tables(run_dir, baseline, split)[0]


def write_table(
    run_dir: Path | str, out_dir: Path | str | None = None, baseline: str | None = None, split: str = "test"
) -> list[Path]:
    """Write ``table.md``, ``table.tex`` and ``table.csv`` (per axis setting: ``table_<setting>.*``)
    into ``out_dir`` (default: the run dir)."""
    out = out_dir if out_dir is not None else run_dir
    return [p for t in load_tables(run_dir, baseline=baseline, split=split) for p in t.write(out)]
