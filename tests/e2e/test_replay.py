"""``vrsearch replay`` through the real console script on a tiny real run (the
session's seed-aware search: 2 configurations x 2 seeds trained through Ray)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from tests.e2e.test_cli import assert_one_line_error, cli
from vrsearch.results import io

pytestmark = pytest.mark.slow


def test_replay_of_a_real_run_matches_its_recorded_curves(search_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(search_run / "run", run)
    res = io.load(run)
    for seed in (0, 1):
        proc = cli("replay", run, "--searcher", "random", "--scheduler", "asha", "--repeats", "4", "--seed", seed)
        assert proc.returncode == 0, proc.stderr
        assert "recommended grace period" in proc.stdout or "no rung" in proc.stdout
        mine = res.trials[res.trials.seed == seed].trial_id
        hist = res.history[res.history.trial_id.isin(mine) & (res.history.iteration > 0)].dropna(subset=["val_dice"])
        summary = pd.read_parquet(run / "replay" / "summary.parquet").iloc[-1]
        assert summary.table_best == pytest.approx(hist.val_dice.max())
        assert summary.exhaustive_compute == 2 * 6  # two configurations of 6 iterations
        assert (pd.read_parquet(run / "replay" / "fidelity.parquet").rung == [3]).all()
    assert_one_line_error(cli("replay", run, "--searcher", "hyperopt"), "--searcher 'hyperopt'")
    assert_one_line_error(cli("replay", tmp_path / "nowhere"), "no such run directory")
