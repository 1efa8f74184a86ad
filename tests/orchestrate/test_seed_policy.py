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


def test_the_table_estimates_feed_the_simulation(sp):
    """With identical seeds the noise is 0, nothing is shrunk, and one seed finds the best."""
    mu = np.random.default_rng(1).normal(0.05, 0.02, 40)
    sim = sp.simulate(mu, mu, target=0.0, sims=200)
    assert sim["shrink"] == 1.0 and sim["1 seed x N"]["regret_mean"] == 0.0


def test_the_shipped_table_has_two_seeds_and_the_script_runs_on_it(sp, tmp_path, capsys, monkeypatch):
    out = tmp_path / "seed.json"
    monkeypatch.setattr("sys.argv", ["seed_policy", "--sims", "200", "--json", str(out)])
    sp.main()
    assert "equal compute" in capsys.readouterr().out
    import json

    res = json.loads(out.read_text())
    assert res["configurations"] >= 16 and res["sigma"] > 0
