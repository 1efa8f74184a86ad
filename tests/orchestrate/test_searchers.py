"""Optuna bookkeeping of search designs, and schedulers that remember earlier experiments:
the plan of an interrupted search from Optuna + fragments, orphans closed at the end, ASHA
replaying the curves of trials that ended before."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from tests.conftest import tiny_study_dict
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.experiment import plan
from vrsearch.orchestrate.schedulers import _Ended, _NoLiveTrials, scheduler
from vrsearch.orchestrate.searchers import LOST, close_orphans, plan_search, restore_proposals, sampler_seed
from vrsearch.results import fragments, io
from vrsearch.results.rundir import RunDir
from vrsearch.study.load import build_study

SPACE = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
DIST = {"train.optimizer.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}


def search_study(tmp_path, **search):
    return build_study(
        tiny_study_dict(tmp_path, tmp_path / "run", search={"design": "search", "space": SPACE, **search})
    )


def optuna_study(study, run):
    run.path.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(study_name=study.name, storage=run.optuna_url(None), direction="maximize")


def test_running_proposals_are_failed_and_finished_ones_untouched(tmp_path):
    study, run = search_study(tmp_path), RunDir(tmp_path / "run")
    ost = optuna_study(study, run)
    values = {}
    for i in range(5):
        trial = ost.ask(DIST)
        if i in (0, 2):
            ost.tell(trial, 0.1 * (i + 1))
            values[trial.number] = 0.1 * (i + 1)
        elif i == 3:
            ost.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert close_orphans(study, run) == 2  # trials 1 and 4 were left RUNNING
    states = {t.number: t.state.name for t in ost.get_trials()}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "PRUNED", 4: "FAIL"}
    assert {t.number: t.value for t in ost.get_trials() if t.state.name == "COMPLETE"} == values
    assert close_orphans(study, run) == 0
    other = build_study(
        tiny_study_dict(tmp_path, tmp_path / "run", name="never_proposed", search={"design": "search", "space": SPACE})
    )
    assert close_orphans(other, run) == 0  # no such Optuna study yet


def _fragment(
    run: RunDir, trial_id: str, number: int, seed: int, status: str | None, val: float | None, cell=None
) -> None:
    d = run.fragment(trial_id)
    meta = {"config_hash": trial_id, "optuna_trial": number, "seed": seed, "cell": cell or {}}
    fragments.write_json(d / "meta.json", meta)
    if val is not None:
        io.write_frame(
            d / "history.parquet",
            pd.DataFrame({"trial_id": [trial_id] * 2, "iteration": [3, 6], "val_dice": [val / 2, val]}),
        )
    if status is not None:
        fragments.write_json(d / ("result.json" if status == "completed" else "status.json"), {"status": status})


def test_an_interrupted_search_plans_its_missing_seeds_and_the_proposals_left(tmp_path):
    study, run = search_study(tmp_path, seeds=[0, 1, 2], num_samples=5), RunDir(tmp_path / "run")
    ost = optuna_study(study, run)
    done, cut, lost = ost.ask(DIST), ost.ask(DIST), ost.ask(DIST)  # numbers 0, 1, 2
    ost.tell(done, 0.5)
    ost.enqueue_trial({"train.optimizer.lr": 0.01})  # WAITING: not asked yet, a new proposal
    _fragment(run, "a", 1, 0, "completed", 0.6)  # proposal 1: seed 0 finished,
    _fragment(run, "b", 1, 1, "stopped_early", 0.2)  # seed 1 stopped by ASHA,
    _fragment(run, "c", 1, 2, None, 0.3)  # seed 2 interrupted (no end)
    interrupted, new = plan_search(study, run)
    by_number = {p.number: p for p in interrupted}
    assert set(by_number) == {1, 2}  # RUNNING in Optuna: asked, never told
    assert by_number[1].todo == [2] and by_number[1].scores == {0: pytest.approx(0.6), 1: pytest.approx(0.2)}
    assert by_number[1].params == cut.params
    assert by_number[2].todo == [0, 1, 2] and by_number[2].scores == {}  # no trial of it ever started
    assert by_number[2].params == lost.params
    assert new == 5 - 3  # three proposals asked; the enqueued one is still to ask
    empty = RunDir(tmp_path / "empty")
    assert plan_search(search_study(tmp_path, num_samples=4), empty) == ([], 4)  # nothing asked yet
    assert not empty.optuna_file.exists()  # and no database created by looking


def test_a_resume_counts_the_score_its_searcher_counted_not_a_later_history_row(tmp_path):
    """ASHA stopped seed 1 on its report at iteration 3 (0.2 counted), but rank 0 of the DDP
    trial had already logged iteration 6 (0.4). Resumed, the proposal counts 0.2, as the
    first life would have: the history is the fallback only where no score was recorded."""
    study, run = search_study(tmp_path, seeds=[0, 1, 2], num_samples=1), RunDir(tmp_path / "run")
    optuna_study(study, run).ask(DIST)
    _fragment(run, "a", 0, 0, "completed", 0.6)  # completed before its searcher heard: history
    _fragment(run, "b", 0, 1, "stopped_early", 0.4)
    fragments.write_json(run.fragment("b") / "score.json", {"metric": "val_dice", "score": 0.2})
    _fragment(run, "c", 0, 2, "stopped_early", 0.5)
    fragments.write_json(run.fragment("c") / "score.json", {"metric": "train_loss", "score": 9.0})  # another metric
    (proposal,), _ = plan_search(study, run)
    assert proposal.scores == {0: pytest.approx(0.6), 1: pytest.approx(0.2), 2: pytest.approx(0.5)}


@pytest.mark.parametrize("behind", ["no database", "an older database"])
def test_proposals_the_database_never_saw_are_restored_from_their_trials(tmp_path, behind):
    """A mirror pulled after its driver died mid-push: the trials of proposals 0-3 are there,
    Optuna's database (uploaded last) is not, or holds proposal 0 only. Resuming must not
    ask again from scratch (that ran a fourth trial in tests/e2e/test_autoscale.py)."""
    study, run = search_study(tmp_path, seeds=[0, 1], num_samples=6), RunDir(tmp_path / "run")
    lr = {n: {"train.optimizer.lr": 0.01 * (n + 1)} for n in range(4)}
    if behind == "an older database":
        ost = optuna_study(study, run)
        assert ost.ask(DIST).number == 0
    _fragment(run, "a", 0, 0, "completed", 0.6, lr[0])  # proposal 0: both seeds ended
    _fragment(run, "b", 0, 1, "stopped_early", 0.2, lr[0])
    _fragment(run, "c", 1, 0, None, 0.3, lr[1])  # proposal 1: seed 0 interrupted, seed 1 never started
    _fragment(run, "d", 3, 0, "completed", 0.5, lr[3])  # proposal 2 named by no trial (never mirrored)
    _fragment(run, "e", 3, 1, "completed", 0.7, lr[3])
    restored = restore_proposals(study, run)
    assert restored == (3 if behind == "no database" else 2)
    ost = optuna.load_study(study_name=study.name, storage=run.optuna_url(None))
    trials = ost.get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert [t.state.name for t in trials] == ["RUNNING", "RUNNING", "FAIL", "RUNNING"]
    assert trials[2].user_attrs == {LOST: True} and trials[2].params == {}
    for n in (1, 3):
        assert trials[n].params == lr[n] and trials[n].distributions == DIST
    if behind == "no database":
        assert trials[0].params == lr[0]
    interrupted, new = plan_search(study, run)
    assert {p.number: p.todo for p in interrupted} == {0: [], 1: [0, 1], 3: []}
    assert new == 6 - 3  # the placeholder's proposal is asked again
    work = plan(study, run)  # every seed ended: told, with the mean of the seeds' last scores
    assert [p.number for p in work.interrupted] == [1] and work.new == 3
    values = {t.number: t.value for t in ost.get_trials() if t.state.name == "COMPLETE"}
    assert values == {0: pytest.approx(0.4), 3: pytest.approx(0.6)}
    assert restore_proposals(study, run) == 0  # nothing is behind any more


def test_restored_proposals_keep_conditions_searched_seeds_and_the_default_point(tmp_path):
    """A conditional space: each restored proposal holds exactly the parameters Optuna
    suggested (momentum only for SGD); proposal 0 of a study that starts from its defaults,
    named by no mirrored trial, is the default point, not a placeholder."""
    space = {
        "train.optimizer.name": {"type": "categorical", "choices": ["sgd", "adam"]},
        "train.optimizer.momentum": {
            "type": "categorical",
            "choices": [0.9, 0.99],
            "when": {"train.optimizer.name": "sgd"},
        },
    }
    study = build_study(
        tiny_study_dict(
            tmp_path,
            tmp_path / "run",
            train={"optimizer": {"name": "adam", "lr": 0.01}},
            search={"design": "search", "space": space, "start_from_defaults": True, "num_samples": 4},
        )
    )
    run = RunDir(tmp_path / "run")
    _fragment(run, "a", 1, 0, "completed", 0.5, {"train.optimizer.name": "sgd", "train.optimizer.momentum": 0.99})
    _fragment(run, "b", 2, 0, None, None, {"train.optimizer.name": "adam"})
    assert restore_proposals(study, run) == 2
    trials = optuna.load_study(study_name=study.name, storage=run.optuna_url(None)).get_trials()
    assert [t.state.name for t in trials] == ["RUNNING"] * 3
    assert [t.params for t in trials] == [
        {"train.optimizer.name": "adam"},  # the study's own value
        {"train.optimizer.name": "sgd", "train.optimizer.momentum": 0.99},
        {"train.optimizer.name": "adam"},
    ]
    interrupted, new = plan_search(study, run)
    assert {p.number: p.todo for p in interrupted} == {0: [0], 1: [], 2: [0]} and new == 1


def test_a_trial_whose_parameters_leave_the_space_is_one_line(tmp_path):
    study, run = search_study(tmp_path), RunDir(tmp_path / "run")
    _fragment(run, "a", 0, 0, "completed", 0.5, {"train.optimizer.lr": 0.5})  # above the space's 0.1
    with pytest.raises(VrsearchError, match=r"trials/a/meta.json: not a point of the study's search space"):
        restore_proposals(study, run)
    _fragment(run, "a", 0, 0, "completed", 0.5, {})  # the searched key missing
    with pytest.raises(VrsearchError, match=r"trials/a/meta.json: not a point"):
        restore_proposals(study, run)


def _stops(sched, value: float) -> bool:
    sched.set_search_properties("val_dice", "max")
    trial = _Ended("new")
    sched.on_trial_add(_NoLiveTrials(), trial)
    return sched.on_trial_result(_NoLiveTrials(), trial, {"iteration": 3, "val_dice": value}) == "STOP"


@pytest.mark.parametrize("name", ["asha", "median"])
def test_a_resumed_scheduler_compares_with_the_trials_that_ended_before(tmp_path, name):
    study = build_study(
        tiny_study_dict(
            tmp_path,
            tmp_path / "run",
            train={"iterations": 9, "eval": {"every": 3}},
            search={"design": "none", "scheduler": name, "seeds": [0, 1, 2, 3, 4]},
        )
    )
    curves = {f"old{i}": [(3, 0.2 + 0.1 * i), (6, 0.3 + 0.1 * i), (9, 0.4 + 0.1 * i)] for i in range(4)}
    assert _stops(scheduler(study, curves), 0.05)  # far below every earlier trial at the same rung
    assert not _stops(scheduler(study, curves), 0.9)
    assert not _stops(scheduler(study, {}), 0.05)  # a scheduler that remembers nothing lets it go on


@pytest.mark.parametrize("kind", [optuna.samplers.RandomSampler, optuna.samplers.TPESampler])
def test_a_restarted_sampler_does_not_repeat_its_first_lifes_proposals(tmp_path, kind):
    """A resumed search rebuilds its sampler; reseeded with the study's seed alone, its
    random draws would start over and propose the configurations already asked (the CI
    failure of issue 16's resume test: two trials of one lr). A fresh search keeps the seed."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"

    def draws(seed: int, n: int) -> list[float]:
        ost = optuna.create_study(study_name="s", storage=storage, load_if_exists=True, sampler=kind(seed=seed))
        return [ost.ask({"lr": DIST["train.optimizer.lr"]}).params["lr"] for _ in range(n)]

    assert sampler_seed(7, 0) == 7
    first = draws(sampler_seed(7, 0), 3)
    again = draws(sampler_seed(7, 3), 3)
    assert not set(first) & set(again)
    assert sampler_seed(7, 3) == sampler_seed(7, 3) != sampler_seed(7, 4)  # deterministic per resume point
    restarted_plainly = optuna.create_study(study_name="t", storage=storage, sampler=kind(seed=7))
    assert restarted_plainly.ask({"lr": DIST["train.optimizer.lr"]}).params["lr"] == first[0]  # the bug, shown


@pytest.mark.parametrize("final", [None, 9])
def test_asha_never_stops_a_trial_at_its_last_iteration(final):
    """270 iterations with grace 30 and reduction factor 3 put an ASHA rung on the last
    iteration (30·3²): a trial that trained to the end was stopped there and lost its
    test evaluation (found by the quickstart). Same shape here: 9 iterations, grace 1,
    rf 3; B ties A up to rung 3 and is worse at 9 — stopped without ``final``, kept with it."""
    sched = scheduler_for_test(final)
    ctrl, a, b = _NoLiveTrials(), _Ended("a"), _Ended("b")
    for t in (a, b):
        sched.on_trial_add(ctrl, t)
    for it in (1, 3, 9):
        sched.on_trial_result(ctrl, a, {"iteration": it, "val_dice": 0.5})
    actions = [sched.on_trial_result(ctrl, b, {"iteration": it, "val_dice": v}) for it, v in ((1, 0.5), (3, 0.5))]
    assert actions == ["CONTINUE", "CONTINUE"]
    last = sched.on_trial_result(ctrl, b, {"iteration": 9, "val_dice": 0.1})
    assert last == ("STOP" if final is None else "CONTINUE")


def scheduler_for_test(final):
    from vrsearch.orchestrate.schedulers import tune_scheduler

    return tune_scheduler("asha", 1, 10, reduction_factor=3, final=final, metric="val_dice", mode="max")
