"""Descriptive summaries of a run's results: pure functions on the parquet frames.

* :func:`trial_metrics` — one row per completed trial: its overall and
  per-class test (or val) metrics, NaN-aware means over its (case, class) rows;
* :func:`summarize` — per group (a configuration, seeds pooled) the mean, sd and
  95 % Student-t CI *over seeds* of every trial-level metric;
* :func:`case_values` — per (group, seed, case) the mean over the case's classes,
  the unit of the case-level view in :mod:`vrsearch.results.stats`;
* :func:`empty_counts` — per (group, class) how many scored rows had an empty
  prediction or an empty label (missed / absent organs are visible, not averaged away);
* :func:`budget` — compute spent per group; :func:`select_best` — selection on
  validation metrics only (choosing on the test set and reporting its test score
  is biased).

Every mean skips NaN: a class empty in both truth and prediction is NaN (no
score), so it leaves the means instead of entering them as 1. Metric names live
in :data:`METRICS` (the columns of ``cases.parquet``) and nowhere else.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

#: metrics scored per (case, class) in ``cases.parquet``: name -> (label, unit, better).
#: ``assd_mm`` is the symmetric average surface distance, pooled over both surfaces.
METRIC_INFO = {
    "dice": ("Dice", "%", "max"),
    "jaccard": ("Jaccard", "%", "max"),
    "hd95_mm": ("HD95", "mm", "min"),
    "assd_mm": ("ASSD", "mm", "min"),
}
METRICS = tuple(METRIC_INFO)
#: metrics that also get one column per class in :func:`trial_metrics`
CLASS_METRICS = ("dice", "jaccard", "hd95_mm")
#: boolean columns of ``cases.parquet`` counted per class by :func:`empty_counts`
EMPTY_FLAGS = ("pred_empty", "label_empty")
ID_COLUMNS = ("trial_id", "group", "seed")


def _nonempty(series: pd.Series) -> pd.Series:
    """Values that are non-null and not blank; everything else becomes NA."""
    s = series.astype(object)
    ok = s.notna() & (s.astype(str).str.strip() != "")
    return s.where(ok)


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column (NaN where missing or unparsable; all NaN if absent)."""
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _seeds(trials: pd.DataFrame) -> pd.Series:
    """Seeds as int64 when every one is a whole number, else float (NaN = unknown)."""
    seed = _numeric(trials, "seed")
    if seed.notna().all() and bool((seed == seed.round()).all()):
        return seed.astype("int64")
    return seed


def group_labels(trials: pd.DataFrame) -> pd.Series:
    """The configuration each trial belongs to (seeds pooled), named ``group``.

    Per row: ``group`` if set, else ``arm`` if non-empty (older ablation runs),
    else the ``cell`` JSON of overrides, else ``"default"`` (a single-config run).
    """
    out = pd.Series(pd.NA, index=trials.index, dtype=object)
    for column in ("group", "arm", "cell"):
        if column in trials.columns:
            out = out.where(out.notna(), _nonempty(trials[column]))
    return out.where(out.notna(), "default").astype(str).rename("group")


def _completed(trials: pd.DataFrame) -> pd.DataFrame:
    if "status" not in trials.columns:
        return trials.iloc[0:0]
    return trials.loc[trials["status"] == "completed"]


def kernels_by_group(trials: pd.DataFrame) -> dict[str, set[str]]:
    """The numeric kernels (trials.parquet ``kernels``, ``engine.setup.kernels``) the completed
    trials of each group trained on; no entry where none is recorded (runs from before the column)."""
    done = _completed(trials)
    if "kernels" not in done.columns:
        return {}
    known = done["kernels"].notna()
    rows = done.loc[known, "kernels"].astype(str)
    return {str(g): set(k) for g, k in rows.groupby(group_labels(done)[known])}


def _split_rows(trials: pd.DataFrame, cases: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(completed trials with trial_id/group/seed, their case rows of ``split``)."""
    done = _completed(trials)
    ids = pd.DataFrame(
        {
            "trial_id": done["trial_id"].astype(str).to_numpy(),
            "group": group_labels(done).to_numpy(),
            "seed": _seeds(done).to_numpy(),
        }
    )
    if cases.empty or "split" not in cases.columns:
        rows = pd.DataFrame(columns=["trial_id", "class", "class_index", *METRICS])
    else:
        rows = cases.loc[(cases["split"] == split) & cases["trial_id"].astype(str).isin(ids["trial_id"])].copy()
        rows["trial_id"] = rows["trial_id"].astype(str)
        index = _numeric(rows, "class_index")
        names = _nonempty(rows["class_name"]) if "class_name" in rows.columns else pd.Series(pd.NA, index=rows.index)
        rows["class"] = names.where(names.notna(), "class" + index.astype("Int64").astype(str)).astype(str)
        rows["class_index"] = index
    for m in METRICS:
        rows[m] = _numeric(rows, m)
    return ids, rows


def trial_metrics(trials: pd.DataFrame, cases: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """One row per completed trial: ``trial_id, group, seed``, the overall
    :data:`METRICS` (NaN-mean over all of the trial's
    (case, class) rows of ``split`` — the definition of ``test_dice``) and per
    class ``dice/<class>``, ``jaccard/<class>``, ``hd95_mm/<class>`` (mean over
    cases, NaN ignored), classes in ``class_index`` order. A completed trial
    without rows of ``split`` keeps NaN metrics."""
    ids, rows = _split_rows(trials, cases, split)
    out = ids.merge(rows.groupby("trial_id")[list(METRICS)].mean(), left_on="trial_id", right_index=True, how="left")
    if rows.empty:
        return out.reset_index(drop=True)
    classes = rows.groupby("class")["class_index"].min().sort_values(kind="stable").index.tolist()
    per_class = rows.groupby(["trial_id", "class"])[list(CLASS_METRICS)].mean()
    for m in CLASS_METRICS:
        wide = per_class[m].unstack("class").reindex(columns=classes)
        wide.columns = [f"{m}/{c}" for c in classes]
        out = out.merge(wide, left_on="trial_id", right_index=True, how="left")
    return out.reset_index(drop=True)


def metric_columns(metrics: pd.DataFrame) -> list[str]:
    """The value columns of a :func:`trial_metrics` frame (everything but the ids)."""
    return [c for c in metrics.columns if c not in ID_COLUMNS]


def summarize(metrics: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """Seed-level summary in long (tidy) layout: one row per (group, metric).

    Columns: ``group, metric, n, mean, std, ci95, delta`` where ``n`` counts the
    trials (seeds) with a non-NaN value, ``std`` is the sample standard
    deviation (ddof=1), ``ci95`` the half-width of the 95 % Student-t
    confidence interval of the mean, ``t.ppf(0.975, n-1)·std/√n`` (NaN when
    n < 2: one seed says nothing about seed noise), and ``delta`` the mean
    minus the baseline group's mean of the same metric (NaN without a
    baseline). Rows: groups in order of first appearance, metrics in column
    order of ``metrics``.
    """
    columns = metric_columns(metrics)
    if metrics.empty or not columns:
        return pd.DataFrame(columns=["group", "metric", "n", "mean", "std", "ci95", "delta"])
    groups = list(pd.unique(metrics["group"]))
    long = metrics.melt(id_vars=["group"], value_vars=columns, var_name="metric", value_name="value")
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    agg = long.groupby(["group", "metric"])["value"].agg(n="count", mean="mean", std="std").reset_index()
    agg["n"] = agg["n"].astype(int)
    n = agg["n"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        half = sps.t.ppf(0.975, np.maximum(n - 1, 1)) * agg["std"].to_numpy() / np.sqrt(n)
    agg["ci95"] = np.where(n >= 2, half, np.nan)
    base = agg.loc[agg["group"] == baseline].set_index("metric")["mean"]
    agg["delta"] = agg["mean"] - agg["metric"].map(base).astype(float)
    order = {g: i for i, g in enumerate(groups)}
    mpos = {m: i for i, m in enumerate(columns)}
    agg = agg.assign(_g=agg["group"].map(order), _m=agg["metric"].map(mpos)).sort_values(["_g", "_m"])
    return agg.drop(columns=["_g", "_m"]).reset_index(drop=True)


def case_values(
    trials: pd.DataFrame, cases: pd.DataFrame, split: str = "test", metric: str = "dice", counts: bool = False
) -> pd.DataFrame:
    """Per (group, seed, case_id) of completed trials: the NaN-mean of
    ``metric`` over the case's classes (column named ``metric``; NaN when every
    class of the case is NaN) — the unit of the case-level view
    (:func:`vrsearch.results.stats.case_level_tests`). ``counts=True`` adds
    ``sum`` and ``count`` (the non-NaN class values), from which a trial's mean
    over any subset of its cases is Σ sum / Σ count."""
    ids, rows = _split_rows(trials, cases, split)
    if metric not in rows.columns:
        rows[metric] = _numeric(rows, metric)
    rows = rows.merge(ids, on="trial_id")
    keys = ["group", "seed", "case_id"]
    if rows.empty:
        return pd.DataFrame(columns=keys + [metric] + (["sum", "count"] if counts else []))
    out = rows.groupby(keys, sort=False)[metric].agg(["sum", "count"]).reset_index()
    out[metric] = (out["sum"] / out["count"]).where(out["count"] > 0)
    return out[keys + [metric] + (["sum", "count"] if counts else [])]


def empty_counts(trials: pd.DataFrame, cases: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per (group, class) of completed trials: ``rows`` scored on ``split`` (seeds ×
    cases) and how many of them had ``pred_empty`` / ``label_empty`` set (NaN when
    the column is absent). Groups in order of first appearance, classes in
    ``class_index`` order. A missed organ is ``pred_empty`` without
    ``label_empty``; a class absent from the case is ``label_empty``."""
    ids, rows = _split_rows(trials, cases, split)
    rows = rows.merge(ids[["trial_id", "group"]], on="trial_id")
    if rows.empty:
        return pd.DataFrame(columns=["group", "class", "rows", *EMPTY_FLAGS])
    rows = rows.assign(**{f: _numeric(rows, f) for f in EMPTY_FLAGS})
    rows["class_order"] = rows.groupby("class")["class_index"].transform("min")
    rows = rows.sort_values("class_order", kind="stable")
    g = rows.groupby(["group", "class"], sort=False)
    out = g.size().rename("rows").to_frame()
    for f in EMPTY_FLAGS:
        out[f] = g[f].sum(min_count=1)
    groups = {name: i for i, name in enumerate(pd.unique(ids["group"]))}
    out = out.reset_index()
    out["_g"] = out["group"].map(groups)
    return out.sort_values("_g", kind="stable").drop(columns="_g").reset_index(drop=True)


def budget(trials: pd.DataFrame) -> pd.DataFrame:
    """Compute spent per group (every trial counts, whatever its status):
    ``group, trials, completed, iterations_sum, iterations_mean, wall_time_h``
    (sum of wall_time_s / 3600) and ``device_hours`` (sum; NaN values are
    skipped, NaN when no trial of the group reports any)."""
    status = trials["status"] if "status" in trials.columns else pd.Series("", index=trials.index)
    df = pd.DataFrame(
        {
            "group": group_labels(trials),
            "completed": (status == "completed").astype(int),
            "iterations": _numeric(trials, "iterations"),
            "wall_time_s": _numeric(trials, "wall_time_s"),
            "device_hours": _numeric(trials, "device_hours"),
        }
    )
    g = df.groupby("group", sort=False)
    return (
        pd.DataFrame(
            {
                "trials": g.size(),
                "completed": g["completed"].sum(),
                "iterations_sum": g["iterations"].sum(min_count=1),
                "iterations_mean": g["iterations"].mean(),
                "wall_time_h": g["wall_time_s"].sum(min_count=1) / 3600.0,
                "device_hours": g["device_hours"].sum(min_count=1),
            }
        )
        .rename_axis("group")
        .reset_index()
    )


def select_best(trials: pd.DataFrame, metric: str = "best_val_dice", mode: str = "max") -> pd.Series:
    """The completed trial with the best ``metric`` (a validation metric).

    Protocol guard: a metric starting with ``test`` is refused — picking the
    configuration on the test set and reporting its test score is optimistic
    (the test set would have been used for model selection)."""
    if str(metric).lower().startswith("test"):
        raise ValueError(
            f"selection uses validation metrics only: {metric!r} is a test-set metric; "
            "select on e.g. 'best_val_dice' and report test metrics of the selected trial"
        )
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    if metric not in trials.columns:
        raise ValueError(f"no column {metric!r} in trials")
    done = _completed(trials)
    values = _numeric(done, metric).dropna()
    if values.empty:
        raise ValueError(f"no completed trial has a value for {metric!r}")
    return done.loc[values.idxmax() if mode == "max" else values.idxmin()]
