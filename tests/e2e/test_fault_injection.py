"""The kill/resume loop of benchmarks/fault_injection.py, small N, for a grid and an
Optuna search: no finished trial lost or re-run, parquet readable after every
SIGKILL of the driver."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).parents[2] / "benchmarks" / "fault_injection.py"


@pytest.mark.parametrize("design", ["grid", "search"])
def test_random_kills_lose_and_rerun_nothing(tmp_path, design):
    spec = importlib.util.spec_from_file_location("fault_injection", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.inject(cycles=3, seed=1, kill_after=(3.0, 25.0), cells=4, iterations=6, work=tmp_path, design=design)
    assert out["lost"] == 0 and out["rerun"] == 0
    assert out["completed"] == out["distinct_cells_completed"] == 4
    assert any(k is not None for k in out["kills_s"])  # at least one kill landed
    if design == "search":  # every proposal told to Optuna once, none left running or failed
        assert out["optuna"] == {"COMPLETE": 4}
