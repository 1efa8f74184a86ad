"""benchmarks/seed_policy.py, the noisy-objective check behind the ``seeds``/``aggregate``
defaults: its noise and spread estimates are unbiased by Monte Carlo over tables drawn
with known σ and spread, its equal-compute simulation gets the limiting cases right, and
it runs on the shipped table's two seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "seed_policy.py"


@pytest.fixture(scope="module")
def sp():
    spec = importlib.util.spec_from_file_location("seed_policy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_noise_and_spread_estimates_are_unbiased(sp):
    """48 configurations of true sd 0.02 measured on two seeds of noise sd 0.01, 2000 times:
    the mean of σ² and of the true variance estimates are within 3 % of the truth."""
    rng = np.random.default_rng(0)
    sig2, spr2 = [], []
    for _ in range(2000):
        mu = rng.normal(0.05, 0.02, 48)
        est = sp.noise(mu + rng.normal(0, 0.01, 48), mu + rng.normal(0, 0.01, 48))
        sig2.append(est["sigma"] ** 2)
        spr2.append(est["true_sd"] ** 2)
    assert np.mean(sig2) == pytest.approx(0.01**2, rel=0.03)
    assert np.mean(spr2) == pytest.approx(0.02**2, rel=0.03)


def test_a_lone_best_configuration_is_kept_by_one_seed_and_missed_by_half_the_configurations(sp):
    """One configuration 0.1 above 39 equal ones, little noise: one seed of every
    configuration keeps it; two seeds of a random half keep it only when it is in the half."""
    mu = np.concatenate([[0.1], np.zeros(39)])
    sim = sp.policies(mu, 0.01, target=0.05, sims=2000)
    assert sim["1 seed x N"]["p_within_target"] == 1.0
    assert sim["2 seeds x N/2, mean"]["p_within_target"] == pytest.approx(0.5, abs=0.04)


def test_under_heavy_noise_two_seeds_of_half_the_configurations_beat_one_of_all(sp):
    """Half the configurations good (0.1), half bad (0), noise sd 0.2 = twice the gap: one
    seed keeps a bad one more often than the mean of two seeds does (the half still holds
    good ones); the mean of two beats their lower bound, which penalises disagreement."""
    mu = np.concatenate([np.full(20, 0.1), np.zeros(20)])
    sim = sp.policies(mu, 0.2, target=0.05, sims=4000)
    one, two, lcb = (sim[k]["p_within_target"] for k in ("1 seed x N", "2 seeds x N/2, mean", "2 seeds x N/2, lcb"))
    assert two > one + 0.03 and two > lcb
    assert sim["2 seeds x N/2, mean"]["regret_mean"] < sim["1 seed x N"]["regret_mean"]


def test_lcb_is_the_aggregate_a_seed_aware_search_tells_optuna(sp):
    from vrsearch.orchestrate.proposals import aggregate

    rows = np.random.default_rng(3).normal(0.05, 0.02, (50, 2))
    want = [aggregate(list(r), "lcb", "max") for r in rows]
    assert np.allclose(sp.lower_bound(rows), want, rtol=0, atol=1e-15)


def test_shrunk_true_values_are_closer_to_the_truth_and_matched_ones_have_the_spread(sp):
    """Tables of 48 configurations (true sd 0.015) on two seeds (noise sd 0.013), 500 times:
    the shrunk means are closer to the true values than the raw two-seed means (mean squared
    error), the shrinkage factor averages spread / (spread + σ²/2), and the matched values'
    spread is the estimated one."""
    rng = np.random.default_rng(4)
    mse = {"shrunk": [], "raw": []}
    for _ in range(500):
        mu = rng.normal(0.05, 0.015, 48)
        y0, y1 = mu + rng.normal(0, 0.013, 48), mu + rng.normal(0, 0.013, 48)
        for model in mse:
            mse[model].append(np.mean((sp.true_values(y0, y1, model)[0] - mu) ** 2))
        matched, sigma = sp.true_values(y0, y1, "matched")
        assert np.std(matched, ddof=1) == pytest.approx(sp.noise(y0, y1)["true_sd"], rel=1e-9)
    tau2, half = 0.015**2, 0.013**2 / 2
    assert np.mean(mse["raw"]) == pytest.approx(half, rel=0.05)
    # the shrunk values' error is near the Bayes risk tau2*half/(tau2+half) (a shrinkage with
    # sigma^2 instead of sigma^2/2 is ~18 % above it, no shrinkage ~45 %)
    assert np.mean(mse["shrunk"]) == pytest.approx(tau2 * half / (tau2 + half), rel=0.10)


def test_identical_seeds_mean_no_noise_and_one_seed_finds_the_best(sp):
    mu = np.random.default_rng(1).normal(0.05, 0.02, 40)
    for model in sp.MODELS:
        values, sigma = sp.true_values(mu, mu, model)
        assert sigma == 0.0 and np.allclose(values, mu)
    assert sp.simulate(mu, mu, target=0.0, sims=200)["shrunk"]["1 seed x N"]["regret_mean"] == 0.0


def test_a_run_with_one_seed_is_a_one_line_error(sp, tmp_path):
    import shutil

    import pandas as pd

    run = tmp_path / "one"
    shutil.copytree(sp.TABLE, run)
    trials = pd.read_parquet(run / "trials.parquet")
    trials[trials.seed == 0].to_parquet(run / "trials.parquet")
    with pytest.raises(sp.VrsearchError, match="the check needs two"):
        sp.paired(run)


def test_the_shipped_table_has_two_seeds_and_the_script_runs_on_it(sp, tmp_path, capsys, monkeypatch):
    out = tmp_path / "seed.json"
    monkeypatch.setattr("sys.argv", ["seed_policy", "--sims", "200", "--json", str(out)])
    sp.main()
    assert "equal compute" in capsys.readouterr().out
    import json

    res = json.loads(out.read_text())
    assert res["configurations"] == 48 and set(res["simulation"]) == set(sp.MODELS)
    for name, value in (("seed_policy.json", "final"), ("seed_policy_best.json", "best")):  # RESULTS (e) quotes these
        shipped = json.loads((SCRIPT.parent / "results" / name).read_text())
        est = sp.noise(*sp.paired(sp.TABLE, value)[1:])
        assert est["sigma"] == pytest.approx(shipped["sigma"], rel=1e-9)
        assert est["true_sd"] == pytest.approx(shipped["true_sd"], rel=1e-9)
