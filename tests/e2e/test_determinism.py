"""Same study and seeds on CPU → bit-identical metrics, through the real CLI and Ray."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow
GRID = {"design": "grid", "scheduler": "none", "seeds": [0, 1],
        "space": {"method.params.loss": {"type": "categorical", "choices": ["dice_ce", "ce"]}}}


def run_once(tiny_phantom, tmp_path, name: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    study = tmp_path / f"{name}.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict(tiny_phantom, tmp_path / name, search=GRID,
                                                    resources={"concurrent_trials": 2})))
    proc = cli("run", study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / name / "trials.parquet")
    key = trials.set_index("trial_id").config_hash
    history = pd.read_parquet(tmp_path / name / "history.parquet")
    cases = pd.read_parquet(tmp_path / name / "cases.parquet")
    history["cell"], cases["cell"] = history.trial_id.map(key), cases.trial_id.map(key)
    trials = trials.set_index("config_hash").sort_index()
    return (trials, history.drop(columns=["trial_id", "time_s"]).sort_values(["cell", "iteration"]).reset_index(drop=True),
            cases.drop(columns=["trial_id"]).sort_values(["cell", "split", "case_id", "class_index"]).reset_index(drop=True))


def test_two_runs_are_bit_identical(tiny_phantom, tmp_path):
    t1, h1, c1 = run_once(tiny_phantom, tmp_path, "a")
    t2, h2, c2 = run_once(tiny_phantom, tmp_path, "b")
    assert len(t1) == 4 and list(t1.index) == list(t2.index)
    for col in ("best_val_dice", "final_val_dice", "test_dice", "test_jaccard", "best_iteration"):
        assert t1[col].tolist() == t2[col].tolist(), col  # exact, not approx
    metrics = [c for c in h1.columns if c.startswith(("loss", "term_", "val_", "lr"))]
    pd.testing.assert_frame_equal(h1[["cell", "iteration", *metrics]], h2[["cell", "iteration", *metrics]],
                                  check_exact=True)
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)
