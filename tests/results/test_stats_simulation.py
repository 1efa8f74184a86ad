"""Error rates of the headline test, measured by simulating whole ablation studies.

Model: y[arm, seed, case] = μ_arm + u_case + r_(arm, seed) + e_(arm, seed, case); under
the null, arm and baseline share μ and the distributions of r and e. Every setting
simulates N studies at once (numpy over the study axis) and runs the headline test
exactly as :func:`vrsearch.results.stats.headline_tests` does on per-seed values
(:func:`test_frame_path_equals_the_array_path` proves the two paths equal).
A rate is accepted when it lies within 3 Monte-Carlo standard deviations.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vrsearch.results import stats as S

N = 2000
ALPHA = 0.05
CASE_SD, RES_SD, RUN_SD = 0.10, 0.03, 0.02
SETTINGS = [(seeds, cases, run_sd) for run_sd in (0.0, RUN_SD) for seeds in (3, 5) for cases in (5, 20)]


def mc_band(rate: float, n: int = N) -> float:
    """3 Monte-Carlo standard deviations of an estimated rate."""
    return 3 * math.sqrt(rate * (1 - rate) / n)


def simulate(rng, seeds: int, cases: int, run_sd: float, delta: float = 0.0, n: int = N) -> np.ndarray:
    """y[study, arm (0) / baseline (1), seed, case] with a true difference ``delta``."""
    y = (
        0.7
        + rng.normal(0, CASE_SD, (n, 1, 1, cases))
        + rng.normal(0, run_sd, (n, 2, seeds, 1))
        + rng.normal(0, RES_SD, (n, 2, seeds, cases))
    )
    y[:, 0] += delta
    return y


def per_seed_diffs(y: np.ndarray) -> np.ndarray:
    """What headline_tests feeds the test: per seed, arm's trial mean minus baseline's."""
    return y[:, 0].mean(-1) - y[:, 1].mean(-1)


@pytest.mark.parametrize("seeds,cases,run_sd", SETTINGS)
def test_headline_false_positive_rate_is_alpha(seeds, cases, run_sd):
    rng = np.random.default_rng([seeds, cases, int(run_sd * 1000)])
    y = simulate(rng, seeds, cases, run_sd)
    rate = float((S.seed_test(per_seed_diffs(y))["p"] < ALPHA).mean())
    assert rate <= ALPHA + mc_band(ALPHA), rate
    assert rate >= ALPHA - mc_band(ALPHA), rate  # exact, not merely conservative (it keeps its power)
    # the pairing the table used before: Wilcoxon over (seed, case) pairs taken as independent
    old = float((sps.wilcoxon((y[:, 0] - y[:, 1]).reshape(N, -1), axis=-1).pvalue < ALPHA).mean())
    if run_sd > 0:
        assert old > ALPHA + mc_band(ALPHA), old


@pytest.mark.parametrize("seeds,cases", [(3, 5), (3, 20), (5, 20)])
def test_headline_ci_coverage_matches_its_level(seeds, cases):
    rng = np.random.default_rng([seeds, cases, 7])
    delta = 0.03
    d = per_seed_diffs(simulate(rng, seeds, cases, RUN_SD, delta))

    def coverage(level: float) -> float:
        res = S.seed_test(d, level)
        return float(((res["ci_low"] <= delta) & (delta <= res["ci_high"])).mean())

    assert abs(coverage(0.95) - 0.95) <= mc_band(0.95)
    wrong = coverage(0.80)
    assert abs(wrong - 0.95) > mc_band(0.95), "a CI at level 0.80 must fail the 0.95 coverage test"
    assert abs(wrong - 0.80) <= mc_band(0.80)


@pytest.mark.parametrize("seeds", [3, 5])
def test_min_detectable_difference_is_detected_80_percent_of_the_time(seeds):
    rng = np.random.default_rng([seeds, 80])
    cases, n = 20, 10000
    sd_d = math.sqrt(2 * RUN_SD**2 + 2 * RES_SD**2 / cases)  # true sd of a per-seed difference
    mdd = float(S.min_detectable(sd_d, seeds))
    power = float((S.seed_test(per_seed_diffs(simulate(rng, seeds, cases, RUN_SD, mdd, n)))["p"] < ALPHA).mean())
    assert abs(power - 0.80) <= mc_band(0.80, n), power
    half = float((S.seed_test(per_seed_diffs(simulate(rng, seeds, cases, RUN_SD, mdd / 2, n)))["p"] < ALPHA).mean())
    assert half < 0.80 - mc_band(0.80, n)  # half the MDD is detected far less often


def test_case_level_view_is_about_these_models_not_the_method():
    """Without run effects the case-level Wilcoxon holds α; with them it rejects a true null
    about the method far too often, which is why it never gives the verdict."""
    rng = np.random.default_rng(11)
    rates = {}
    for run_sd in (0.0, RUN_SD):
        y = simulate(rng, 3, 20, run_sd)
        rates[run_sd] = float((sps.wilcoxon((y[:, 0] - y[:, 1]).mean(1), axis=-1).pvalue < ALPHA).mean())
    assert rates[0.0] <= ALPHA + mc_band(ALPHA)
    assert rates[RUN_SD] > 4 * ALPHA


def frames(y: np.ndarray, classes: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """trials/cases frames of one simulated study y[arm, seed, case] (each class scores
    the case's value ± a class offset, so the class mean is the case value)."""
    trials, cases = [], []
    for a, group in enumerate(("arm", "baseline")):
        for s in range(y.shape[1]):
            tid = f"{group}-{s}"
            trials.append({"trial_id": tid, "status": "completed", "seed": s, "group": group})
            for c in range(y.shape[2]):
                for k in range(classes):
                    offset = 0.05 * (k - (classes - 1) / 2)
                    cases.append(
                        {
                            "trial_id": tid,
                            "split": "test",
                            "case_id": f"c{c}",
                            "class_index": k + 1,
                            "class_name": f"k{k}",
                            "dice": y[a, s, c] + offset,
                        }
                    )
    return pd.DataFrame(trials), pd.DataFrame(cases)


def test_frame_path_equals_the_array_path():
    rng = np.random.default_rng(5)
    y = simulate(rng, 4, 6, RUN_SD, n=5)
    direct = S.seed_test(per_seed_diffs(y))
    for i in range(len(y)):
        head = S.headline_tests(*frames(y[i])).set_index("group").loc["arm"]
        assert head["n_seeds"] == 4 and head["n_cases"] == 6
        for key in ("mean_diff", "ci_low", "ci_high", "sd", "t", "p"):
            assert head[key] == pytest.approx(direct[key][i], rel=1e-9, abs=1e-12), key
