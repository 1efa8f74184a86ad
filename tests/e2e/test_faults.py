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
GRID = {
    "design": "grid",
    "scheduler": "none",
    "space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 0.02, 0.03]}},
}


def launch(args, fault: str, marker, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "VRSEARCH_FAULT": fault, "VRSEARCH_FAULT_ONCE": str(marker)}
    return subprocess.run([VRSEARCH, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def finish_and_check(run, before) -> pd.DataFrame:
    resumed = subprocess.run([VRSEARCH, "resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_results(run)
    assert all(after[t] == stamp for t, stamp in before.items()), "a finished trial was re-run or changed"
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert sorted(trials["config.train.optimizer.lr"]) == [0.01, 0.02, 0.03]  # the grid's cells, no bare study
    return trials


#: where the driver is killed, one life after the other: ``tuner`` in ``vrsearch run`` (Tune's
#: experiment set up, no trial started), then in the ``vrsearch resume`` after each kill ``compact``
#: (rebuilding the parquet files after that life's first finished trial) and ``report`` (writing
#: report.html after it)
KILL_CHAIN = ("tuner", "compact", "report")


def kill_chain(study, run, tmp_path, told=None) -> dict:
    """Kill the driver at each point of :data:`KILL_CHAIN` in turn and check after each kill:
    every parquet file present reads back, no finished trial was lost or rewritten, the point
    was reached after as many finished trials as lives before it (none at ``tuner``), and each
    resume said how many it kept. ``told`` (a search): Optuna holds one COMPLETE trial per
    finished one, the values told in earlier lives unchanged. Returns the finished results
    before the last resume (and fills ``told``)."""
    kept: dict = {}
    for life, point in enumerate(KILL_CHAIN):
        args = ["run", study] if life == 0 else ["resume", run]
        marker = tmp_path / f"fired-{point}"
        proc = launch(args, f"kill:{point}", marker, tmp_path)
        assert proc.returncode == -9 and marker.exists(), (point, proc.stderr[-2000:])  # the driver died there
        assert life == 0 or f"{len(kept)} finished trials kept" in proc.stdout, (point, proc.stdout[-2000:])
        load(run)  # every parquet file present reads back
        now = finished_results(run)
        assert all(now.get(t) == stamp for t, stamp in kept.items()), f"a finished trial was lost or re-run ({point})"
        assert len(now) == life, (point, sorted(now))  # one trial at a time: the kill blocks the next
        if told is not None:
            complete = optuna_complete(run)
            assert len(complete) == len(now) and complete.items() >= told.items(), (point, complete, told)
            told.update(complete)
        kept = now
    return kept


def optuna_complete(run) -> dict:
    """``{Optuna trial number: value}`` of the run's COMPLETE Optuna trials."""
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}")
    return {t.number: t.value for t in ost.trials if t.state.name == "COMPLETE"}


def test_driver_killed_while_writing_results_loses_nothing(tiny_phantom, tmp_path):
    """A grid whose driver is killed at every point of :data:`KILL_CHAIN`, one after the other;
    the last resume finishes it with every finished trial kept."""
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    finish_and_check(run, kill_chain(study, run, tmp_path))


def test_a_killed_search_resumes_with_optuna_consistent(tiny_phantom, tmp_path):
    """A 3-proposal Optuna search killed at every point of :data:`KILL_CHAIN` in turn (``compact``
    just after Optuna was told a trial's result, ``report`` while writing the report after it).
    Each resumed search asks Optuna only for what is missing: every proposal ends COMPLETE, none
    is left running or failed, and every value Optuna was told is kept. The restarted sampler
    proposes configurations its earlier lives had not (three distinct lrs). No scheduler: an
    ASHA stop of a worse trial would be a legitimate end but not what is checked here."""
    space = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    search = {"design": "search", "num_samples": 3, "space": space, "scheduler": "none"}
    study = write_study(tmp_path, tiny_phantom, search=search, resources={"concurrent_trials": 1})
    run, told = tmp_path / "run", {}
    before = kill_chain(study, run, tmp_path, told)
    assert len(told) == len(before) >= 2
    resumed = subprocess.run([VRSEARCH, "resume", str(run)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{len(before)} finished trials kept" in resumed.stdout
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert trials["config.train.optimizer.lr"].between(1e-3, 1e-1).all()
    assert trials["config.train.optimizer.lr"].nunique() == 3 and set(trials.study) == {"tiny"}
    assert all(finished_results(run)[t] == stamp for t, stamp in before.items())  # kept, not re-run
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}")
    assert [t.state.name for t in ost.trials] == ["COMPLETE"] * 3  # nothing left running or failed
    assert {t.number: t.value for t in ost.trials}.items() >= told.items()
    assert sorted(trials.optuna_trial) == [0, 1, 2]


@pytest.mark.parametrize(("point", "continued_from"), [("step:4", 3), ("final", 6)])
def test_a_trial_interrupted_with_its_driver_continues_from_its_checkpoint(
    tiny_phantom, tmp_path, point, continued_from
):
    """The driver dies while a trial trains (after its checkpoint at iteration 3) or after
    its final checkpoint, before its result is written (the flaky kill/resume test of
    issue 16: a continued trial with nothing left to train must still report its metric).
    The resumed study runs that configuration under a new trial id from its checkpoint."""
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], f"kill-driver:{point}", marker, tmp_path)
    assert proc.returncode == -9 and marker.exists(), proc.stderr[-2000:]
    trials = finish_and_check(run, finished_results(run))
    assert sorted(trials.resumed_from) == [0, 0, continued_from]
    history = pd.read_parquet(run / "history.parquet")
    assert history.groupby("trial_id").iteration.apply(lambda s: s.is_unique and s.max() == 6).all()


def test_an_unexpected_driver_error_is_one_line_and_a_full_disk_once_is_a_warning(tiny_phantom, tmp_path):
    """An OSError out of Tune's fit (a full disk as Tune sets up the experiment) stops the study
    in one line with the traceback in a file. Its resume meets a full disk once, while
    rebuilding history.parquet after a trial: one warning line, and the study goes on to its end."""
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1})
    run = tmp_path / "run"
    proc = launch(["run", study], "enospc:tuner", tmp_path / "fired", tmp_path)  # an OSError out of Tune's fit
    line = assert_one_line_error(proc, "the study stopped on OSError", "driver-error.log", "vrsearch resume")
    log = (run / "driver-error.log").read_text()
    assert "Traceback" in log and "No space left on device" in log, line
    marker = tmp_path / "fired-compact"
    proc = launch(["resume", run], "enospc:compact", marker, tmp_path)
    assert proc.returncode == 0 and marker.exists(), proc.stderr[-3000:]
    warnings = [ln for ln in proc.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and "history.parquet: No space left on device" in warnings[0], proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    assert sorted(trials["config.train.optimizer.lr"]) == [0.01, 0.02, 0.03]


def test_worker_killed_mid_trial_is_retried_from_its_checkpoint(tiny_phantom, tmp_path):
    study = write_study(tmp_path, tiny_phantom, search=GRID, resources={"concurrent_trials": 1, "max_failures": 1})
    marker, run = tmp_path / "fired", tmp_path / "run"
    proc = launch(["run", study], "kill:step:5", marker, tmp_path)  # after the checkpoint at iteration 3
    assert proc.returncode == 0 and marker.exists(), proc.stderr[-3000:]
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    history = pd.read_parquet(run / "history.parquet")
    assert history.groupby("trial_id").iteration.apply(lambda s: s.is_unique and s.max() == 6).all()


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
