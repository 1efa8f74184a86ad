"""Optuna bookkeeping of search designs: proposals orphaned by a killed driver."""

from __future__ import annotations

import optuna
import pytest

from tests.conftest import tiny_study_dict
from vrsearch.orchestrate.searchers import close_orphans, optuna_storage_url
from vrsearch.study.load import build_study

SPACE = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}


def test_running_proposals_are_failed_and_finished_ones_untouched(tmp_path):
    study = build_study(tiny_study_dict(tmp_path, tmp_path / "run", search={"design": "search", "space": SPACE}))
    (tmp_path / "run").mkdir()
    ost = optuna.create_study(study_name=study.name, storage=optuna_storage_url(study, tmp_path / "run"),
                              direction="maximize")
    values = {}
    for i in range(5):
        trial = ost.ask({"train.optimizer.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
        if i in (0, 2):
            ost.tell(trial, 0.1 * (i + 1))
            values[trial.number] = 0.1 * (i + 1)
        elif i == 3:
            ost.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert close_orphans(study, tmp_path / "run") == 2  # trials 1 and 4 were left RUNNING
    states = {t.number: t.state.name for t in ost.get_trials()}
    assert states == {0: "COMPLETE", 1: "FAIL", 2: "COMPLETE", 3: "PRUNED", 4: "FAIL"}
    assert {t.number: t.value for t in ost.get_trials() if t.state.name == "COMPLETE"} == values
    assert close_orphans(study, tmp_path / "run") == 0
    other = build_study(tiny_study_dict(tmp_path, tmp_path / "run", name="never_proposed",
                                        search={"design": "search", "space": SPACE}))
    assert close_orphans(other, tmp_path / "run") == 0  # no such Optuna study yet


def test_results_for_a_trial_optuna_has_closed_are_dropped_not_raised():
    """A driver killed after Optuna was told a result and before Tune saved it: the restored
    experiment replays the trial and reports it again; Ray's OptunaSearch would raise."""
    from ray.tune.search.optuna import OptunaSearch

    from vrsearch.orchestrate.resumable_optuna import ResumableOptunaSearch

    space = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)}
    for cls in (OptunaSearch, ResumableOptunaSearch):
        searcher = cls(space=space, metric="val_dice", mode="max", sampler=optuna.samplers.RandomSampler(seed=0))
        assert searcher.suggest("t1") is not None
        searcher._ot_study.tell(searcher._ot_trials["t1"], 0.4)  # what the killed driver had committed
        result = {"val_dice": 0.4, "training_iteration": 6}
        if cls is OptunaSearch:
            with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
                searcher.on_trial_result("t1", result)
            continue
        searcher.on_trial_result("t1", result)
        searcher.on_trial_complete("t1", result)
        trials = searcher._ot_study.trials
        assert [(t.state.name, t.value) for t in trials] == [("COMPLETE", 0.4)]
