"""Faults at named points (vrsearch.results.faults), through the real CLI and Ray:
the driver SIGKILLed while compacting parquet or writing the report, a worker
SIGKILLed mid-trial, a full disk while writing results."""

from __future__ import annotations

import os
import subprocess

import optuna
import pandas as pd
import pytest

from tests.e2e.test_cli import VRSEARCH, assert_one_line_error
from tests.e2e.test_run import finished_results, write_study
from vrsearch.results.io import load

pytestmark = pytest.mark.slow
GRID = {"design": "grid", "scheduler": "none",
        "space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 0.02, 0.03]}}}


def launch(args, fault: str, marker, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "VRSEARCH_FAULT": fault, "VRSEARCH_FAULT_ONCE": str(marker)}
    return subprocess.run([VRSEARCH, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def truncate_experiment_state(run) -> None:
    """As if the kill had hit Tune copying its experiment state file (an in-place copy)."""
    state = sorted((run / "tune").glob("experiment_state-*.json"))[-1]
    state.write_text(state.read_text()[:100])


def forget_results(run, trial_id: str) -> None:
    """As if the driver had died after ``trial_id`` trained to its last checkpoint and before
    Tune saved any of its results: the trial is running in the experiment state, with no
    result there or in its fragment."""
    import json

    state_file = sorted((run / "tune").glob("experiment_state-*.json"))[-1]
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:
        trial, meta = json.loads(entry[0]), json.loads(entry[1])
        if trial["trial_id"] == trial_id:
            trial["status"], meta["last_result"] = "RUNNING", {}
            entry[0], entry[1] = json.dumps(trial), json.dumps(meta)
    state_file.write_text(json.dumps(state))
    (run / "trials" / trial_id / "result.json").unlink()


def finish_and_check(run, before) -> pd.DataFrame:
    resumed = subprocess.run([VRSEARCH, "resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_results(run)
    assert all(after[t] == stamp for t, stamp in before.items()), "a finished trial was re-run or changed"
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert sorted(trials["config.train.optimizer.lr"]) == [0.01, 0.02, 0.03]  # the grid's cells, no bare study
    return trials


@pytest.mark.parametrize(("point", "truncate_state"), [("tuner", False), ("compact", False), ("report", True)])
def test_driver_killed_while_writing_results_loses_nothing(tiny_phantom, tmp_path, point, truncate_state):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], f"kill:{point}", marker, tmp_path)
    assert proc.returncode == -9 and marker.exists(), proc.stderr[-2000:]  # the driver died at the point
    load(run)  # every parquet file present reads back
    if truncate_state:
        truncate_experiment_state(run)
    before = finished_results(run)
    assert not truncate_state or before  # the report is written after a trial finished
    finish_and_check(run, before)


@pytest.mark.parametrize(("point", "truncate_state"), [("tuner", False), ("compact", False), ("report", True)])
def test_a_killed_search_resumes_with_optuna_consistent(tiny_phantom, tmp_path, point, truncate_state):
    """``tuner``: killed before Tune saved any state, the search starts over (Optuna's study too).
    ``compact``: killed just after Optuna was told a trial's result and before Tune saved
    that: the restored experiment replays the trial (no training), Optuna keeps its value.
    ``report`` + a truncated Tune state: a new experiment continues the search on Optuna's
    study, keeping the finished trial."""
    space = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    study = write_study(tmp_path, tiny_phantom, search={"design": "search", "num_samples": 2, "space": space},
                        resources={"concurrent_trials": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], f"kill:{point}", marker, tmp_path)
    assert proc.returncode == -9 and (run / "tune" / "tuner.pkl").exists(), proc.stderr[-2000:]
    storage = f"sqlite:///{run / 'optuna.db'}"
    told = {}
    if point == "tuner":  # the window Tune cannot restore from
        assert not list((run / "tune").glob("experiment_state-*.json"))
    else:
        told = {t.number: t.value for t in optuna.load_study(study_name="tiny", storage=storage).trials
                if t.state.name == "COMPLETE"}
        assert len(told) == 1
    if truncate_state:
        truncate_experiment_state(run)
    before = finished_results(run)
    resumed = subprocess.run([VRSEARCH, "resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert ("starting the study from the beginning" in resumed.stdout) == (point == "tuner")
    assert ("continuing the search: 1 finished trials kept, 1 to run" in resumed.stdout) == truncate_state
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 2 and set(trials.status) == {"completed"}
    assert trials["config.train.optimizer.lr"].between(1e-3, 1e-1).all()
    assert all(finished_results(run)[t] == stamp for t, stamp in before.items())  # replayed or kept, not re-run
    ost = optuna.load_study(study_name="tiny", storage=storage)
    states = [t.state.name for t in ost.trials]
    assert states.count("COMPLETE") == 2 and set(states) <= {"COMPLETE", "FAIL"}  # no proposal left running
    assert {t.number: t.value for t in ost.trials}.items() >= told.items()


def test_a_trial_trained_to_its_end_without_results_in_tune_state_resumes(tiny_phantom, tmp_path):
    """The trial restarts from its checkpoint at the last iteration, so it trains nothing and
    makes no new evaluation; it must still report its metric, or Tune's strict metric check
    stops the resumed study (issue 16: the flaky kill/resume test)."""
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    proc = subprocess.run([VRSEARCH, "run", str(study)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = sorted(finished_results(run))[-1]
    forget_results(run, last)
    before = finished_results(run)
    trials = finish_and_check(run, before)
    assert trials.set_index("trial_id").loc[last, "iterations"] == 6
    assert last in finished_results(run)


def test_an_unexpected_driver_error_is_one_line_with_the_traceback_in_a_file(tiny_phantom, tmp_path):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    proc = launch(["run", study], "enospc:tuner", tmp_path / "fired", tmp_path)  # an OSError out of Tune's fit
    line = assert_one_line_error(proc, "the study stopped on OSError", "driver-error.log", "vrsearch resume")
    log = (run / "driver-error.log").read_text()
    assert "Traceback" in log and "No space left on device" in log, line
    finish_and_check(run, {})


def test_worker_killed_mid_trial_is_retried_from_its_checkpoint(tiny_phantom, tmp_path):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1, "max_failures": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], "kill:step:5", marker, tmp_path)  # after the checkpoint at iteration 3
    assert proc.returncode == 0 and marker.exists(), proc.stderr[-3000:]
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    history = pd.read_parquet(run / "history.parquet")
    assert history.groupby("trial_id").iteration.apply(lambda s: s.is_unique and s.max() == 6).all()


def test_a_full_disk_once_is_a_warning_and_the_study_goes_on(tiny_phantom, tmp_path):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], "enospc:compact", marker, tmp_path)
    assert proc.returncode == 0 and marker.exists(), proc.stderr[-3000:]
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "history.parquet: No space left on device" in warnings[0], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}


def test_a_full_disk_that_stays_full_stops_in_one_line_and_keeps_results(tiny_phantom, tmp_path):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    env = {**os.environ, "VRSEARCH_FAULT": "enospc:compact"}  # every compaction of history.parquet fails
    proc = subprocess.run([VRSEARCH, "run", str(study)], capture_output=True, text=True, env=env, timeout=600)
    assert_one_line_error(proc, "history.parquet: No space left on device", "previous history.parquet is intact")
    load(run)  # every parquet file present reads back
    finish_and_check(run, finished_results(run))


def test_a_second_run_on_the_same_directory_refuses(tiny_phantom, tmp_path):
    import time

    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    first = subprocess.Popen([VRSEARCH, "run", str(study)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / ".vrsearch.lock").exists() and time.time() < deadline:
        time.sleep(0.2)
    second = subprocess.run([VRSEARCH, "run", str(study)], capture_output=True, text=True, timeout=120)
    line = assert_one_line_error(second)
    assert "in use by another vrsearch process" in line or "already holds a run of this study" in line
    resume = subprocess.run([VRSEARCH, "resume", str(run)], capture_output=True, text=True, timeout=120)
    assert_one_line_error(resume, f"pid {first.pid}", "in use by another vrsearch process")
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    assert set(pd.read_parquet(run / "trials.parquet").status) == {"completed"}
