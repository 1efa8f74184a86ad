"""Same study and seeds on CPU → bit-identical metrics, through the real CLI and Ray —
and the same whether trials run in warm (reused) Tune actors reading the prepared-data
cache or each in a fresh process that decodes every file itself; and a DDP trial the same
whether its Tune actor ran a trial before (its Ray Train worker group is new in each trial)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.e2e.conftest import DDP, actor_marks
from tests.e2e.test_cli import cli

pytestmark = pytest.mark.slow
GRID = {
    "design": "grid",
    "scheduler": "none",
    "seeds": [0, 1],
    "space": {"method.params.loss": {"type": "categorical", "choices": ["dice_ce", "ce"]}},
}
#: every trial in a fresh actor, no prepared-data cache (the path before warm actors), glibc's
#: malloc defaults (the path before trials kept freed memory: vrsearch.engine.allocator)
COLD = {"VRSEARCH_REUSE_ACTORS": "0", "VRSEARCH_CACHE_DIR": "off", "VRSEARCH_MALLOC": "system"}


def run_once(tiny_phantom, tmp_path, name: str, env: dict | None = None):
    resources = {"concurrent_trials": 2}
    study = tmp_path / f"{name}.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict(tiny_phantom, tmp_path / name, search=GRID, resources=resources)))
    proc = cli("run", study, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_run(tmp_path, name, resources)


def read_run(tmp_path, name: str, resources: dict):
    """(trials by config hash, history and cases with each row's cell, the trials' process marks)."""
    trials = pd.read_parquet(tmp_path / name / "trials.parquet")
    key = trials.set_index("trial_id").config_hash
    history = pd.read_parquet(tmp_path / name / "history.parquet")
    cases = pd.read_parquet(tmp_path / name / "cases.parquet")
    history["cell"], cases["cell"] = history.trial_id.map(key), cases.trial_id.map(key)
    trials = trials.set_index("config_hash").sort_index()
    processes = [json.loads(m.read_text())["process"] for m in (tmp_path / name / "trials").glob("*/meta.json")]
    if resources.get("workers_per_trial", 1) > 1:  # rank 0's process is new in every trial: the Tune actor's marks
        processes = {key[t]: actor_marks(tmp_path / name, t) for t in key.index}  # by config hash
    return (
        trials,
        history.drop(columns=["trial_id", "time_s"]).sort_values(["cell", "iteration"]).reset_index(drop=True),
        cases.drop(columns=["trial_id"])
        .sort_values(["cell", "split", "case_id", "class_index"])
        .reset_index(drop=True),
        processes,
    )


def test_warm_and_cold_runs_are_bit_identical(tiny_phantom, tmp_path):
    t1, h1, c1, p1 = run_once(tiny_phantom, tmp_path, "warm")
    t2, h2, c2, p2 = run_once(tiny_phantom, tmp_path, "cold", env=COLD)
    # 4 trials on 2 slots: warm actors ran later trials in processes that had run one before
    assert len(p1) == 4 and any(p["trials_before"] > 0 for p in p1), p1
    assert len({p["pid"] for p in p1}) < 4, p1
    assert len({p["pid"] for p in p2}) == 4 and all(p["trials_before"] == 0 for p in p2), p2
    assert (tmp_path / "warm" / "cache").is_dir() and not (tmp_path / "cold" / "cache").exists()
    # the trials' processes kept freed memory in one arena, or ran on glibc's defaults
    malloc = {
        run: {(m["freed_memory_kept"], m["malloc_arenas"]) for m in map(json.loads, timings)}
        for run in ("warm", "cold")
        for timings in [[p.read_text() for p in (tmp_path / run / "trials").glob("*/timing.json")]]
    }
    inherited = os.environ.get("MALLOC_ARENA_MAX") or "glibc default"  # cold: the workers inherit this one
    assert malloc == {"warm": {(True, "1")}, "cold": {(False, inherited)}}, malloc
    assert_identical((t1, h1, c1), (t2, h2, c2), 4)


def test_a_ddp_trial_in_a_reused_actor_is_bit_identical_to_one_in_a_fresh_actor(ddp_twins_run):
    t, h, c, marks = read_run(ddp_twins_run, "run", DDP)
    fresh, reused = sorted(marks, key=lambda cell: marks[cell]["trials_before"])
    assert [marks[fresh]["trials_before"], marks[reused]["trials_before"]] == [0, 1], marks
    assert all("worker_start" in m for m in marks.values()), "not DDP trials"

    def trial(cell: str):  # one trial's rows, its cell made anonymous
        return (
            t.loc[[cell]].reset_index(drop=True),
            h[h.cell == cell].assign(cell="-").reset_index(drop=True),
            c[c.cell == cell].assign(cell="-").reset_index(drop=True),
        )

    assert_identical(trial(reused), trial(fresh), 1)


def assert_identical(warm, cold, n: int) -> None:
    (t1, h1, c1), (t2, h2, c2) = warm, cold
    assert len(t1) == n and list(t1.index) == list(t2.index)
    for col in ("best_val_dice", "final_val_dice", "test_dice", "test_jaccard", "best_iteration"):
        assert t1[col].tolist() == t2[col].tolist(), col  # exact, not approx
    metrics = [c for c in h1.columns if c.startswith(("loss", "term_", "val_", "lr"))]
    pd.testing.assert_frame_equal(
        h1[["cell", "iteration", *metrics]], h2[["cell", "iteration", *metrics]], check_exact=True
    )
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)
