"""A storage mirror cut off before its last upload (Optuna's database, which a push sends
last), resumed elsewhere: the session's finished seed-aware search (2 proposals x 2 seeds)
must come back whole, with nothing asked or trained again."""

from __future__ import annotations

import shutil

import optuna
import pandas as pd
import pytest

from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow


def told(run) -> dict[int, float]:
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}")
    return {t.number: t.value for t in ost.trials if t.state.name == "COMPLETE"}


def test_a_mirror_without_its_optuna_database_resumes_without_asking_again(search_run, tmp_path):
    mirror, elsewhere = tmp_path / "bucket" / "tiny", tmp_path / "elsewhere"
    shutil.copytree(search_run / "run", mirror)
    (mirror / "optuna.db").unlink()
    proc = cli("resume", f"file://{mirror}", "--into", elsewhere)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 proposal(s) restored" in proc.stdout and "nothing to run" in proc.stdout, proc.stdout
    original = pd.read_parquet(search_run / "run" / "trials.parquet").set_index("trial_id")
    trials = pd.read_parquet(elsewhere / "trials.parquet").set_index("trial_id")
    assert sorted(trials.index) == sorted(original.index) and set(trials.status) == {"completed"}
    for t in original.index:
        assert (elsewhere / "trials" / t / "result.json").read_text() == (
            search_run / "run" / "trials" / t / "result.json"
        ).read_text()
    # each proposal told once more, from the same seeds' scores: the value its first life told
    assert told(elsewhere) == pytest.approx(told(search_run / "run"))
    assert (mirror / "optuna.db").exists()  # and the mirror is whole again
