"""StudySearcher: every proposal once per seed, Optuna told the aggregate; interrupted
proposals continued first (only their missing seeds), then at most ``new`` ones asked."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.search import Searcher

from vrsearch.orchestrate.proposals import Proposal, StudySearcher, aggregate
from vrsearch.orchestrate.searchers import _RecordEnd
from vrsearch.results import fragments
from vrsearch.results.fragments import read_json
from vrsearch.results.rundir import RunDir


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


def test_a_trials_end_is_on_disk_before_optuna_hears_of_it(tmp_path):
    """Tune calls the searcher before the callbacks that record how a trial ended: a driver
    killed in between left a proposal closed in Optuna whose last trial (stopped by ASHA, or
    failed) had no end on disk, and a resume deleted that trial as unfinished and never ran
    it again. The end (status.json, unless result.json is there) is now written first."""
    run = RunDir(tmp_path / "run")
    seen = {}

    class Checking(Recording):
        def on_trial_complete(self, trial_id, result=None, error=False):
            seen[trial_id] = {d.name: (fragments.ended(d) or {}).get("status") for d in run.fragments.glob("*/")}
            super().on_trial_complete(trial_id, result, error)

    inner = Checking()
    algo = StudySearcher(inner, [0, 1], "mean", tell=lambda n, v: None, new=3, record_end=_RecordEnd(run, "val_dice"))
    ids = [f"{p}{s}" for p in "abc" for s in (0, 1)]
    for tid in ids:
        algo.suggest(tid)
        fragments.write_json(run.fragment(tid) / "meta.json", {"seed": int(tid[1])})
    for tid in ("a0", "c0", "c1"):  # these trials trained to the end: result.json before they return
        fragments.write_json(run.fragment(tid) / "result.json", {"status": "completed"})
    algo.on_trial_complete("a0", {"val_dice": 0.5})
    assert seen == {} and fragments.ended(run.fragment("a1")) is None  # nothing told, nothing written
    algo.on_trial_complete("a1", {"val_dice": 0.3})  # stopped by ASHA at a rung: no result.json
    assert seen["a0"]["a1"] == "stopped_early"  # Optuna heard of proposal a (as a0) after a1's end was written
    algo.on_trial_complete("b0", error=True)
    algo.on_trial_complete("b1", error=True)
    assert seen["b0"]["b1"] == "failed" and read_json(run.fragment("b1") / "status.json")["error"]
    algo.on_trial_complete("c0", {"val_dice": 0.6})
    algo.on_trial_complete("c1", {"val_dice": 0.7})
    assert seen["c0"]["c1"] == "completed" and not (run.fragment("c1") / "status.json").exists()
    assert [t[0] for t in inner.told] == ["a0", "b0", "c0"]


def test_every_seeds_counted_score_is_on_disk_before_optuna_hears_of_its_proposal(tmp_path):
    """A resume counts, for a seed that ended before the interruption, the score the searcher
    counted (score.json), not its history's last row: a DDP trial's rank 0 can log a report
    past the one on which ASHA stopped it."""
    run = RunDir(tmp_path / "run")
    seen = []

    class Checking(Recording):
        def on_trial_complete(self, trial_id, result=None, error=False):
            seen.append({d.name: read_json(d / "score.json") for d in run.fragments.glob("*/")})
            super().on_trial_complete(trial_id, result, error)

    algo = StudySearcher(
        Checking(), [0, 1, 2], "mean", tell=lambda n, v: None, new=1, record_end=_RecordEnd(run, "val_dice")
    )
    for tid in ("s0", "s1", "s2"):
        algo.suggest(tid)
    algo.on_trial_complete("s0", {"val_dice": 0.25})
    assert read_json(run.fragment("s0") / "score.json") == {"metric": "val_dice", "score": 0.25}
    algo.on_trial_complete("s1", error=True)
    assert read_json(run.fragment("s1") / "score.json") == {"metric": "val_dice", "score": None}
    assert seen == []  # Optuna not told yet: one seed runs
    algo.on_trial_complete("s2", {"val_dice": 0.75})
    assert seen[0]["s2"] == {"metric": "val_dice", "score": 0.75}  # on disk before Optuna heard
