"""StudySearcher: every proposal once per seed, Optuna told the aggregate; interrupted
proposals continued first (only their missing seeds), then at most ``new`` ones asked."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.search import Searcher

from vrsearch.orchestrate.proposals import Proposal, StudySearcher, aggregate


class Recording(Searcher):
    """A deterministic inner searcher: proposes x = 0, 1, 2, ... (Optuna numbers 100, 101,
    ...) and records what it is told."""

    def __init__(self):
        super().__init__(metric="val_dice", mode="max")
        self.told, self.n, self._ot_trials = [], 0, {}

    def suggest(self, trial_id):
        self._ot_trials[trial_id] = SimpleNamespace(number=100 + self.n)
        self.n += 1
        return {"x": self.n - 1}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, None if result is None else result["val_dice"], error))


def searcher(inner, seeds, how="mean", interrupted=(), new=10):
    told = []
    algo = StudySearcher(
        inner,
        seeds,
        how,
        tell=lambda number, value: told.append((number, value)),
        interrupted=list(interrupted),
        new=new,
    )
    return algo, told


def test_aggregate_mean_and_pessimistic_bound():
    x = [0.5, 0.7, 0.9]
    se = np.std(x, ddof=1) / math.sqrt(3)
    assert aggregate(x, "mean", "max") == pytest.approx(0.7)
    assert aggregate(x, "lcb", "max") == pytest.approx(0.7 - se)
    assert aggregate(x, "lcb", "min") == pytest.approx(0.7 + se)
    assert aggregate([0.4, float("nan"), None], "lcb", "max") == pytest.approx(0.4)
    assert math.isnan(aggregate([float("nan")], "mean", "max"))


@pytest.mark.parametrize("how", ["mean", "lcb"])
def test_each_proposal_runs_every_seed_and_optuna_hears_once(how):
    inner = Recording()
    algo, _ = searcher(inner, [0, 1, 2], how)
    configs = {f"t{i}": algo.suggest(f"t{i}") for i in range(6)}
    assert [c["x"] for c in configs.values()] == [0, 0, 0, 1, 1, 1]
    assert [c["train.seed"] for c in configs.values()] == [0, 1, 2, 0, 1, 2]
    assert [c["optuna_trial"] for c in configs.values()] == [100, 100, 100, 101, 101, 101]
    assert inner.n == 2  # asked twice, not six times
    scores = {"t0": 0.2, "t1": 0.4, "t2": 0.9, "t3": 0.5, "t4": 0.5, "t5": 0.8}
    for tid in ("t0", "t3", "t1", "t4"):
        algo.on_trial_complete(tid, {"val_dice": scores[tid]})
    assert inner.told == []  # no configuration has all its seeds yet
    algo.on_trial_complete("t2", {"val_dice": scores["t2"]})
    algo.on_trial_complete("t5", {"val_dice": scores["t5"]})
    assert [t[0] for t in inner.told] == ["t0", "t3"]  # under the id each was proposed with
    assert inner.told[0][1] == pytest.approx(aggregate([0.2, 0.4, 0.9], how, "max"))
    assert inner.told[1][1] == pytest.approx(aggregate([0.5, 0.5, 0.8], how, "max"))


def test_a_proposal_without_any_score_is_an_error_for_optuna():
    inner = Recording()
    algo, _ = searcher(inner, [0, 1])
    algo.suggest("a"), algo.suggest("b")
    algo.on_trial_complete("a", error=True)
    algo.on_trial_complete("b", {"val_dice": float("nan")})
    assert inner.told == [("a", None, True)]


def test_interrupted_proposals_continue_first_with_their_missing_seeds_only():
    inner = Recording()
    old = Proposal(7, {"x": 42}, todo=[1, 2], scores={0: 0.6})
    algo, told = searcher(inner, [0, 1, 2], interrupted=[old], new=1)
    first = [algo.suggest(f"c{i}") for i in range(2)]
    assert first == [{"x": 42, "train.seed": 1, "optuna_trial": 7}, {"x": 42, "train.seed": 2, "optuna_trial": 7}]
    assert inner.n == 0  # nothing asked while an interrupted proposal has seeds to run
    fresh = [algo.suggest(f"n{i}") for i in range(3)]
    assert [c["x"] for c in fresh] == [0, 0, 0] and inner.n == 1
    assert algo.suggest("more") == Searcher.FINISHED  # new=1: nothing else to ask
    algo.on_trial_complete("c0", {"val_dice": 0.7})
    algo.on_trial_complete("c1", {"val_dice": 0.8})
    assert told == [(7, pytest.approx(0.7))] and inner.told == []  # told under its own number
    for i, v in enumerate((0.1, 0.2, 0.3)):
        algo.on_trial_complete(f"n{i}", {"val_dice": v})
    assert inner.told == [("n0", pytest.approx(0.2), False)]
