"""SeedRepeater: every configuration once per seed, the searcher told the aggregate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray.tune.search import Searcher

from vrsearch.orchestrate.seeds import SeedRepeater, aggregate


class Recording(Searcher):
    """A deterministic inner searcher: proposes x = 0, 1, 2, ... and records what it is told."""

    def __init__(self):
        super().__init__(metric="val_dice", mode="max")
        self.proposed, self.told, self.n = {}, [], 0

    def suggest(self, trial_id):
        self.proposed[trial_id] = {"x": self.n}
        self.n += 1
        return dict(self.proposed[trial_id])

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append((trial_id, None if result is None else result["val_dice"], error))

    def save(self, path):
        import pickle

        with open(path, "wb") as f:
            pickle.dump((self.proposed, self.told, self.n), f)

    def restore(self, path):
        import pickle

        with open(path, "rb") as f:
            self.proposed, self.told, self.n = pickle.load(f)


def test_aggregate_mean_and_pessimistic_bound():
    x = [0.5, 0.7, 0.9]
    se = np.std(x, ddof=1) / math.sqrt(3)
    assert aggregate(x, "mean", "max") == pytest.approx(0.7)
    assert aggregate(x, "lcb", "max") == pytest.approx(0.7 - se)
    assert aggregate(x, "lcb", "min") == pytest.approx(0.7 + se)
    assert aggregate([0.4, float("nan"), None], "lcb", "max") == pytest.approx(0.4)
    assert math.isnan(aggregate([float("nan")], "mean", "max"))


@pytest.mark.parametrize("how", ["mean", "lcb"])
def test_each_config_runs_every_seed_and_the_searcher_hears_once(how):
    inner = Recording()
    rep = SeedRepeater(inner, seeds=[0, 1, 2], how=how)
    configs = {f"t{i}": rep.suggest(f"t{i}") for i in range(6)}
    assert [c["x"] for c in configs.values()] == [0, 0, 0, 1, 1, 1]
    assert [c["train.seed"] for c in configs.values()] == [0, 1, 2, 0, 1, 2]
    assert inner.n == 2  # asked twice, not six times
    scores = {"t0": 0.2, "t1": 0.4, "t2": 0.9, "t3": 0.5, "t4": 0.5, "t5": 0.8}
    for tid in ["t0", "t3", "t1", "t4"]:
        rep.on_trial_complete(tid, {"val_dice": scores[tid]})
    assert inner.told == []  # no configuration has all of its seeds yet
    rep.on_trial_complete("t2", {"val_dice": scores["t2"]})
    rep.on_trial_complete("t5", {"val_dice": scores["t5"]})
    assert [t[0] for t in inner.told] == ["t0", "t3"]  # under the id the inner searcher proposed
    for (first, told, _), group in zip(inner.told, [["t0", "t1", "t2"], ["t3", "t4", "t5"]]):
        assert told == pytest.approx(aggregate([scores[t] for t in group], how, "max"))


def test_a_config_without_any_score_is_an_error_for_the_searcher():
    inner = Recording()
    rep = SeedRepeater(inner, seeds=[0, 1])
    rep.suggest("a"), rep.suggest("b")
    rep.on_trial_complete("a", None, error=True)
    rep.on_trial_complete("b", {"val_dice": float("nan")})
    assert inner.told == [("a", None, True)]


def test_save_and_restore_keep_half_done_groups(tmp_path):
    inner = Recording()
    rep = SeedRepeater(inner, seeds=[0, 1])
    rep.suggest("a"), rep.suggest("b"), rep.suggest("c")
    rep.on_trial_complete("a", {"val_dice": 0.3})
    rep.save(str(tmp_path / "s.pkl"))
    again = SeedRepeater(Recording(), seeds=[0, 1])
    again.restore(str(tmp_path / "s.pkl"))
    assert again.searcher.n == 3 - 1  # the inner searcher's own state came back (2 proposals)
    assert again.suggest("d") == {"x": 1, "train.seed": 1}  # c's configuration, second seed
    again.on_trial_complete("b", {"val_dice": 0.5})
    assert again.searcher.told == [("a", pytest.approx(0.4), False)]
