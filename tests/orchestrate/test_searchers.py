"""Optuna bookkeeping of search designs: proposals orphaned by a killed driver."""

from __future__ import annotations

import optuna

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
