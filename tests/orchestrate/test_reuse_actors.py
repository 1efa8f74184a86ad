"""Which studies run their trials in warm (reused) Tune actors: all but those with DDP
trials that a scheduler can stop, unless ``VRSEARCH_REUSE_ACTORS=0``."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_study_dict
from vrsearch.orchestrate.experiment import REUSE_ENV, plan, reuse_actors, tune_setup
from vrsearch.results.rundir import RunDir
from vrsearch.study.load import build_study

GRID = {
    "design": "grid",
    "scheduler": "none",
    "space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 0.02]}},
}
SEARCH = {
    "design": "search",
    "searcher": "random",
    "scheduler": "none",
    "num_samples": 2,
    "space": {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.05}},
}


def setup(tmp_path, search, **sections):
    study = build_study(tiny_study_dict(tmp_path / "ds", tmp_path / "run", search=search, **sections))
    run = RunDir(tmp_path / "run")
    run.path.mkdir(exist_ok=True)
    work = plan(study, run)
    return reuse_actors(study, work), tune_setup(study, run, work)[1].reuse_actors


@pytest.mark.parametrize("search", [GRID, SEARCH])
def test_single_process_trials_reuse_their_actors(tmp_path, monkeypatch, search):
    monkeypatch.delenv(REUSE_ENV, raising=False)
    assert setup(tmp_path, search) == (True, True)
    monkeypatch.setenv(REUSE_ENV, "0")
    assert setup(tmp_path, search) == (False, False)


@pytest.mark.parametrize("scheduler", ["asha", "median"])
def test_studies_with_ddp_trials_a_scheduler_can_stop_start_fresh_actors(tmp_path, monkeypatch, scheduler):
    monkeypatch.delenv(REUSE_ENV, raising=False)
    grid, search = {**GRID, "scheduler": scheduler}, {**SEARCH, "scheduler": scheduler}
    assert setup(tmp_path, grid, resources={"workers_per_trial": 2}) == (False, False)
    # one DDP cell among single-process ones is enough
    mixed = {
        **grid,
        "space": {**grid["space"], "resources.workers_per_trial": {"type": "categorical", "choices": [1, 2]}},
    }
    assert setup(tmp_path, mixed) == (False, False)
    assert setup(tmp_path, search, resources={"workers_per_trial": 2}) == (False, False)
    assert setup(tmp_path, grid) == (True, True)  # single-process trials: a stopped one is reset in a report


def test_ddp_trials_no_scheduler_stops_reuse_their_actors(tmp_path, monkeypatch):
    monkeypatch.delenv(REUSE_ENV, raising=False)
    assert setup(tmp_path, GRID, resources={"workers_per_trial": 2}) == (True, True)
    mixed = {
        **GRID,
        "space": {**GRID["space"], "resources.workers_per_trial": {"type": "categorical", "choices": [1, 2]}},
    }
    assert setup(tmp_path, mixed) == (True, True)
    assert setup(tmp_path, SEARCH, resources={"workers_per_trial": 2}) == (True, True)
    monkeypatch.setenv(REUSE_ENV, "0")
    assert setup(tmp_path, GRID, resources={"workers_per_trial": 2}) == (False, False)
