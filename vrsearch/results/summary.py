"""Statistics of a run's results: pure functions on the parquet frames.

Two levels of replication exist in an ablation study:

* **seeds** — each configuration ("group") is trained once per seed; the
  spread of a trial-level metric over seeds (:func:`summarize`) shows how much
  of a difference training noise alone can produce;
* **cases** — every trial is scored on the same test cases. Pairing an arm's
  per-case values with the baseline's on the *same* (seed, case)
  (:func:`paired_tests`) removes the between-case variance (some cases are
  simply hard for every model), so a real effect stands out from a far
  smaller noise floor than a comparison of seed means.

With several arms each tested against the baseline, the chance that *some*
test is falsely significant grows with the number of arms; :func:`holm`
adjusts the p-values so that the family-wise error rate stays ≤ α.

Selection must never look at test metrics (:func:`select_best`): choosing
the best trial on the test set and then reporting its test score is biased.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

#: metrics scored per (case, class) in ``cases.parquet``
METRICS = ("dice", "jaccard", "hd95_mm", "asd_mm")
#: metrics that also get one column per class in :func:`trial_metrics`
CLASS_METRICS = ("dice", "jaccard", "hd95_mm")
ID_COLUMNS = ("trial_id", "group", "seed")
#: bootstrap indices drawn at once (bounds memory for many pairs)
_BOOT_CHUNK = 2_000_000


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


def _split_rows(trials: pd.DataFrame, cases: pd.DataFrame, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(completed trials with trial_id/group/seed, their case rows of ``split``)."""
    done = _completed(trials)
    ids = pd.DataFrame({
        "trial_id": done["trial_id"].astype(str).to_numpy(),
        "group": group_labels(done).to_numpy(),
        "seed": _seeds(done).to_numpy(),
    })
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
    ``dice, jaccard, hd95_mm, asd_mm`` (NaN-mean over all of the trial's
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


def case_values(trials: pd.DataFrame, cases: pd.DataFrame, split: str = "test", metric: str = "dice") -> pd.DataFrame:
    """Per (group, seed, case_id) of completed trials: the NaN-mean of
    ``metric`` over the case's classes (column named ``metric``) — the unit
    that :func:`paired_tests` pairs across groups."""
    ids, rows = _split_rows(trials, cases, split)
    if metric not in rows.columns:
        rows[metric] = _numeric(rows, metric)
    rows = rows.merge(ids, on="trial_id")
    if rows.empty:
        return pd.DataFrame(columns=["group", "seed", "case_id", metric])
    out = rows.groupby(["group", "seed", "case_id"], sort=False)[metric].mean().reset_index()
    return out


def holm(p) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (controls the family-wise
    error rate across all tests, without assuming they are independent).

    The i-th smallest of m p-values is multiplied by (m − i + 1), a running
    maximum keeps the adjusted values monotone in the raw ones, and they are
    capped at 1. NaN entries pass through and do not count towards m.
    """
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    values = p[ok]
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out[ok] = adjusted
    return out


def bootstrap_ci(diffs, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``diffs``: resample the pairs
    with replacement ``n_boot`` times (seeded, vectorised in blocks), take the
    (1−level)/2 and (1+level)/2 quantiles of the resampled means."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0 or n_boot < 1:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, _BOOT_CHUNK // n)
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        means[start:stop] = d[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def rank_biserial(diffs) -> float:
    """Matched-pairs rank-biserial correlation (W+ − W−)/(W+ + W−) over the
    non-zero differences ranked by magnitude: +1 = the arm wins every pair,
    −1 = it loses every pair (the effect size that goes with Wilcoxon)."""
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    ranks = sps.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def _paired(arm: np.ndarray, base: np.ndarray, n_boot: int, seed: int) -> dict:
    d = arm - base
    n = d.size
    low, high = bootstrap_ci(d, n_boot, seed)
    stat = p = float("nan")
    if np.count_nonzero(d) >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.wilcoxon(arm, base)
        stat, p = float(res.statistic), float(res.pvalue)
    sd = float(d.std(ddof=1)) if n >= 2 else float("nan")
    return {
        "n_pairs": n,
        "mean_diff": float(d.mean()) if n else float("nan"),
        "boot_low": low,
        "boot_high": high,
        "wilcoxon": stat,
        "p": p,
        "rank_biserial": rank_biserial(d),
        "cohen_dz": float(d.mean() / sd) if n >= 2 and sd > 0 else float("nan"),
    }


PAIRED_COLUMNS = ["group", "n_pairs", "mean_diff", "boot_low", "boot_high", "wilcoxon", "p", "p_holm",
                  "rank_biserial", "cohen_dz"]


def paired_tests(trials: pd.DataFrame, cases: pd.DataFrame, baseline: str = "baseline", split: str = "test",
                 metric: str = "dice", n_boot: int = 10000, seed: int = 0) -> pd.DataFrame:
    """Each non-baseline group against the baseline on per-case values.

    Pairs are (seed, case_id) present in both groups (case values from
    :func:`case_values`, NaN pairs dropped); differences are arm − baseline.
    Columns (:data:`PAIRED_COLUMNS`): ``n_pairs``, ``mean_diff``, the 95 %
    percentile-bootstrap CI ``boot_low``/``boot_high`` of the mean difference
    (a fresh ``default_rng(seed)`` per arm, so an arm's CI does not depend on
    the others), the two-sided Wilcoxon signed-rank ``wilcoxon`` statistic and
    ``p`` (``scipy.stats.wilcoxon(arm, base)``; NaN with < 2 non-zero
    differences), ``p_holm`` (Holm across the arms), ``rank_biserial`` and
    Cohen's ``cohen_dz`` = mean difference / sd of the differences.
    """
    values = case_values(trials, cases, split, metric)
    base = values.loc[values["group"] == baseline, ["seed", "case_id", metric]]
    rows = []
    for group in pd.unique(values["group"]):
        if group == baseline:
            continue
        arm = values.loc[values["group"] == group, ["seed", "case_id", metric]]
        pairs = arm.merge(base, on=["seed", "case_id"], suffixes=("_arm", "_base")).dropna()
        a = pairs[f"{metric}_arm"].to_numpy(dtype=float)
        b = pairs[f"{metric}_base"].to_numpy(dtype=float)
        rows.append({"group": group, **_paired(a, b, n_boot, seed)})
    out = pd.DataFrame(rows, columns=[c for c in PAIRED_COLUMNS if c != "p_holm"])
    out.insert(PAIRED_COLUMNS.index("p_holm"), "p_holm", holm(out["p"].to_numpy(dtype=float)))
    return out


def budget(trials: pd.DataFrame) -> pd.DataFrame:
    """Compute spent per group (every trial counts, whatever its status):
    ``group, trials, completed, iterations_sum, iterations_mean, wall_time_h``
    (sum of wall_time_s / 3600) and ``device_hours`` (sum; NaN values are
    skipped, NaN when no trial of the group reports any)."""
    status = trials["status"] if "status" in trials.columns else pd.Series("", index=trials.index)
    df = pd.DataFrame({
        "group": group_labels(trials),
        "completed": (status == "completed").astype(int),
        "iterations": _numeric(trials, "iterations"),
        "wall_time_s": _numeric(trials, "wall_time_s"),
        "device_hours": _numeric(trials, "device_hours"),
    })
    g = df.groupby("group", sort=False)
    return pd.DataFrame({
        "trials": g.size(),
        "completed": g["completed"].sum(),
        "iterations_sum": g["iterations"].sum(min_count=1),
        "iterations_mean": g["iterations"].mean(),
        "wall_time_h": g["wall_time_s"].sum(min_count=1) / 3600.0,
        "device_hours": g["device_hours"].sum(min_count=1),
    }).rename_axis("group").reset_index()


def select_best(trials: pd.DataFrame, metric: str = "best_val_dice", mode: str = "max") -> pd.Series:
    """The completed trial with the best ``metric`` (a validation metric).

    Protocol guard: a metric starting with ``test`` is refused — picking the
    configuration on the test set and reporting its test score is optimistic
    (the test set would have been used for model selection)."""
    if str(metric).lower().startswith("test"):
        raise ValueError(f"selection uses validation metrics only: {metric!r} is a test-set metric; "
                         "select on e.g. 'best_val_dice' and report test metrics of the selected trial")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    if metric not in trials.columns:
        raise ValueError(f"no column {metric!r} in trials")
    done = _completed(trials)
    values = _numeric(done, metric).dropna()
    if values.empty:
        raise ValueError(f"no completed trial has a value for {metric!r}")
    return done.loc[values.idxmax() if mode == "max" else values.idxmin()]
