"""Verdicts: does an arm differ from the baseline, and how sure is that?

**Model.** An ablation trains every group once per seed and scores every trained
model on the same test cases. A value (e.g. a case's Dice) is

    y[arm, seed, case] = μ_arm + u_case + r_(arm, seed) + e_(arm, seed, case)

with ``u_case`` the case's difficulty (shared by every model), ``r`` the run
effect of one training run (initialisation, data order: shared by every case
that model scores) and ``e`` a residual. A verdict about the *method* must hold
for new training runs *and* new cases, so its replication unit is the seed.

**Headline** (:func:`headline_tests`, what the table stars and bolds): a paired
t-test over the seeds both groups share. For each shared seed ``s`` the arm's and
the baseline's trial value (NaN-aware mean of the metric over the (case, class)
rows of the cases both trials scored: the trial's test Dice) give
``d_s = arm − baseline``. ``u_case`` cancels exactly (same cases), and
``d_s = Δ + (r_arm,s − r_base,s) + mean residual difference`` are independent
across seeds: one-sample t on ``d_s`` with ``n_seeds − 1`` degrees of freedom
(:func:`scipy.stats.ttest_1samp`), CI ``mean ± t_{(1+level)/2, n−1}·sd/√n``,
Holm across arms (:func:`holm`). Pairing by seed also removes whatever two runs
of one seed share (same initialisation and patch stream for the same network).

Why this test — measured, not assumed (``benchmarks/stats_error_rates.py``:
20000 simulated null studies per setting, 2000 for the bootstrap; α = 0.05,
Monte-Carlo sd 0.0015 / 0.005; case sd 0.10, residual sd 0.03, run-effect sd
r = 0.02 or 0). False-positive rates:

=================  ========  ============  ============  ==============  ============
seeds×cases, r     paired t  2-sample t    hierarchical  old (seed,      case-level
                   (chosen)  (seed means)  bootstrap     case) Wilcoxon  Wilcoxon
=================  ========  ============  ============  ==============  ============
3×5,  r = 0        0.050     0.052         0.041         0.051           0.000
3×20, r = 0        0.048     0.046         0.024         0.047           0.047
5×20, r = 0        0.050     0.049         0.015         0.049           0.046
3×5,  r = 0.02     0.049     0.051         0.132         0.192           0.000
3×20, r = 0.02     0.048     0.049         0.199         0.467           0.510
5×5,  r = 0.02     0.049     0.049         0.086         0.183           0.000
5×20, r = 0.02     0.049     0.049         0.102         0.460           0.507
=================  ========  ============  ============  ==============  ============

The old pairing on (seed, case) counts the same case once per seed as if it were
new evidence and ignores run effects: 18–47 % false positives. A hierarchical
bootstrap (resampling seeds, then cases within each) cannot represent the
seed-to-seed spread with 3–5 seeds (10–126 distinct seed resamples): 9–20 % false
positives with run effects, over-conservative without. The paired and the
two-sample t-test over per-seed means both hold α (95 % CI coverage 0.953 /
0.949 at 3×20, r = 0.02) and differ in power (Δ = 0.04, r = 0.02, 20 cases):
when the two runs of a seed share nothing, the two-sample test is stronger
(3 seeds: 0.43 vs 0.27; 5 seeds: 0.75 vs 0.61); when they share a component of
sd 0.02 / 0.04 (the usual case: same initialisation and data order for the same
network) it falls to 0.24 / 0.11 (5 seeds: 0.49 / 0.17) while the paired test
keeps 0.27 (0.62). The paired test is exact either way and never collapses, so
it is the headline. No mixed model: its variance components are not estimable
from 3 seeds.

**Power statement.** With ``n`` seeds and a seed-to-seed sd ``s_d`` of the
difference, :func:`min_detectable` gives the true difference the headline test
detects with 80 % probability at α (two-sided, before Holm): ``k·s_d/√n`` with
``k`` from the noncentral t (``k`` = 16.3 for 2 seeds, 5.65 for 3, 3.76 for 5, 3.15 for 10).
The table reports it from the observed ``s_d`` (an estimate), so a 3-seed study
says plainly how small a difference it cannot see.

**Case-level view** (:func:`case_level_tests`), named for what it is: *on these
trained models*. Per case, the values averaged over the seeds both groups share;
Wilcoxon signed-rank over cases (n = cases), Holm across arms. It asks whether
these particular trained models differ on these cases, not whether the method
does: under run effects its false-positive rate about the method is ~51 % with
20 cases (the table above), and with 5 cases it can never reach p < 0.05 (the smallest exact
two-sided p is 0.0625). It never stars or bolds anything.

To compare runs of different directories, concatenate their ``trials`` and
``cases`` frames after giving each run's trials a distinct ``group``.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import optimize
from scipy import stats as sps

from vrsearch.results.summary import (  # the public API of results statistics
    CLASS_METRICS,
    EMPTY_FLAGS,
    ID_COLUMNS,
    METRIC_INFO,
    METRICS,
    budget,
    case_values,
    empty_counts,
    group_labels,
    metric_columns,
    select_best,
    summarize,
    trial_metrics,
)

__all__ = [
    "CASE_LEVEL_COLUMNS",
    "CLASS_METRICS",
    "EMPTY_FLAGS",
    "HEADLINE_COLUMNS",
    "ID_COLUMNS",
    "METRICS",
    "METRIC_INFO",
    "budget",
    "case_differences",
    "case_level_tests",
    "case_values",
    "empty_counts",
    "group_labels",
    "headline_tests",
    "holm",
    "metric_columns",
    "min_detectable",
    "rank_biserial",
    "seed_differences",
    "seed_test",
    "select_best",
    "summarize",
    "trial_metrics",
]

HEADLINE_COLUMNS = ["group", "n_seeds", "n_cases", "mean_diff", "ci_low", "ci_high", "sd", "t", "p", "p_holm", "mdd"]
CASE_LEVEL_COLUMNS = ["group", "n_seeds", "n_cases", "mean_diff", "wilcoxon", "p", "p_holm", "rank_biserial"]


def holm(p: ArrayLike) -> np.ndarray:
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


def seed_test(diffs: ArrayLike, level: float = 0.95) -> dict[str, np.ndarray]:
    """The headline test on per-seed differences ``diffs[..., seed]`` (arm − baseline),
    vectorised over any leading axes: one-sample t-test of mean 0 with n − 1 df.

    Returns ``n_seeds``, ``mean_diff``, the ``level`` t-interval ``ci_low``/``ci_high``
    (mean ± t_{(1+level)/2, n−1}·sd/√n), ``sd`` (ddof 1), ``t`` and two-sided ``p``;
    NaN where fewer than 2 seeds."""
    d = np.asarray(diffs, dtype=float)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        res = sps.ttest_1samp(d, 0.0, axis=-1)
        ci = res.confidence_interval(level)
        return {
            "n_seeds": d.shape[-1],
            "mean_diff": d.mean(axis=-1),
            "ci_low": ci.low,
            "ci_high": ci.high,
            "sd": d.std(axis=-1, ddof=1),
            "t": res.statistic,
            "p": res.pvalue,
        }


@functools.lru_cache(maxsize=256)
def _power_multiplier(n: int, alpha: float, power: float) -> float:
    """k with P(|T| > t_{1−α/2, n−1}) = power for T ~ noncentral t(n − 1, k)."""
    df = n - 1
    crit = sps.t.ppf(1 - alpha / 2, df)

    def excess(k: float) -> float:  # the far tail is ~0 (and NaN in scipy for some df=1 arguments)
        return sps.nct.sf(crit, df, k) + np.nan_to_num(sps.nct.cdf(-crit, df, k)) - power

    high = 2.0 * crit
    while excess(high) < 0:
        high *= 2
    return float(optimize.brentq(excess, 0.0, high, xtol=1e-10))


def min_detectable(sd: ArrayLike, n_seeds: float, alpha: float = 0.05, power: float = 0.80) -> float | np.ndarray:
    """Minimal detectable difference of :func:`seed_test`: the true mean difference it
    rejects with probability ``power`` at two-sided level ``alpha`` when the per-seed
    differences have standard deviation ``sd`` (``k·sd/√n``, ``k`` from the noncentral
    t distribution). NaN with fewer than 2 seeds."""
    sd = np.asarray(sd, dtype=float)
    if n_seeds < 2:
        return np.full(sd.shape, np.nan)[()]
    return (_power_multiplier(int(n_seeds), float(alpha), float(power)) * sd / math.sqrt(n_seeds))[()]


def _paired_cells(values: pd.DataFrame, group: str, baseline: str) -> pd.DataFrame:
    """(seed, case_id) rows scored by both groups: the arm's and baseline's case values
    (``*_arm``/``*_base``), seeds unknown (NaN) left out."""
    keep = values["seed"].notna() & values["count"].gt(0)
    arm = values.loc[keep & (values["group"] == group)].drop(columns="group")
    base = values.loc[keep & (values["group"] == baseline)].drop(columns="group")
    return arm.merge(base, on=["seed", "case_id"], suffixes=("_arm", "_base"))


def seed_differences(values: pd.DataFrame, group: str, baseline: str) -> tuple[pd.Series, int]:
    """Per shared seed ``d_s`` = the arm's minus the baseline's trial value over the cases
    both scored (Σ sum / Σ count of :func:`case_values` with ``counts=True``), and the
    number of distinct cases used."""
    cells = _paired_cells(values, group, baseline)
    by_seed = cells.groupby("seed")[["sum_arm", "count_arm", "sum_base", "count_base"]].sum()
    diffs = by_seed["sum_arm"] / by_seed["count_arm"] - by_seed["sum_base"] / by_seed["count_base"]
    return diffs, int(cells["case_id"].nunique())


def headline_tests(
    trials: pd.DataFrame,
    cases: pd.DataFrame,
    baseline: str = "baseline",
    split: str = "test",
    metric: str = "dice",
    level: float = 0.95,
    alpha: float = 0.05,
    power: float = 0.80,
) -> pd.DataFrame:
    """Each non-baseline group against the baseline: :func:`seed_test` on the per-seed
    differences of :func:`seed_differences` (columns :data:`HEADLINE_COLUMNS`): shared
    ``n_seeds``, ``n_cases``, ``mean_diff`` with its ``level`` CI, ``sd`` of the
    differences, ``t``, ``p``, ``p_holm`` (Holm across arms) and ``mdd``
    (:func:`min_detectable` at ``alpha``, ``power`` from the observed ``sd``)."""
    values = case_values(trials, cases, split, metric, counts=True)
    rows = []
    for group in pd.unique(values["group"]):
        if group == baseline:
            continue
        diffs, n_cases = seed_differences(values, group, baseline)
        res = seed_test(diffs.to_numpy(), level)
        rows.append(
            {
                "group": group,
                "n_cases": n_cases,
                **res,
                "mdd": float(min_detectable(res["sd"], float(res["n_seeds"]), alpha, power)),
            }
        )
    out = pd.DataFrame(rows, columns=[c for c in HEADLINE_COLUMNS if c != "p_holm"])
    out.insert(HEADLINE_COLUMNS.index("p_holm"), "p_holm", holm(out["p"].to_numpy(dtype=float)))
    return out.astype({"n_seeds": int, "n_cases": int})


def rank_biserial(diffs: ArrayLike) -> float:
    """Matched-pairs rank-biserial correlation (W+ − W−)/(W+ + W−) over the
    non-zero differences ranked by magnitude: +1 = the arm wins every pair,
    −1 = it loses every pair (the effect size that goes with Wilcoxon)."""
    d = np.asarray(diffs, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return float("nan")
    ranks = sps.rankdata(np.abs(d))
    return float((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())


def case_differences(values: pd.DataFrame, group: str, baseline: str, metric: str) -> tuple[pd.Series, int]:
    """Per case: the arm's minus the baseline's value, each averaged over the seeds both
    groups share (NaN values skipped, cases without both dropped); and the shared seeds."""
    cells = _paired_cells(values, group, baseline)
    means = cells.groupby("case_id")[[f"{metric}_arm", f"{metric}_base"]].mean().dropna()
    return means[f"{metric}_arm"] - means[f"{metric}_base"], int(cells["seed"].nunique())


def case_level_tests(
    trials: pd.DataFrame, cases: pd.DataFrame, baseline: str = "baseline", split: str = "test", metric: str = "dice"
) -> pd.DataFrame:
    """The case-level view *on these trained models* (columns :data:`CASE_LEVEL_COLUMNS`):
    two-sided Wilcoxon signed-rank (``scipy.stats.wilcoxon``) over the per-case
    differences of :func:`case_differences` (``n_cases``; NaN with < 2 non-zero
    differences), ``mean_diff``, ``p_holm`` (Holm across arms) and ``rank_biserial``."""
    values = case_values(trials, cases, split, metric, counts=True)
    rows = []
    for group in pd.unique(values["group"]):
        if group == baseline:
            continue
        diffs, n_seeds = case_differences(values, group, baseline, metric)
        d = diffs.to_numpy(dtype=float)
        stat = p = float("nan")
        if np.count_nonzero(d) >= 2:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = sps.wilcoxon(d)
            stat, p = float(res.statistic), float(res.pvalue)
        rows.append(
            {
                "group": group,
                "n_seeds": n_seeds,
                "n_cases": d.size,
                "mean_diff": float(d.mean()) if d.size else float("nan"),
                "wilcoxon": stat,
                "p": p,
                "rank_biserial": rank_biserial(d),
            }
        )
    out = pd.DataFrame(rows, columns=[c for c in CASE_LEVEL_COLUMNS if c != "p_holm"])
    out.insert(CASE_LEVEL_COLUMNS.index("p_holm"), "p_holm", holm(out["p"].to_numpy(dtype=float)))
    return out.astype({"n_seeds": int, "n_cases": int})
