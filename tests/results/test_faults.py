"""The fault points' arming rules, across real processes: once, and after ``k`` passes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from vrsearch.results import faults

ARRIVE = (
    "import os, sys; from vrsearch.results import faults; faults.point('step', 4);"
    " sys.exit(0)"
)  # 'enospc' raises: exit 1 when it fired


def arrivals(marker, n: int, skip: int | None) -> list[int]:
    env = {"VRSEARCH_FAULT": "enospc:step:4", "VRSEARCH_FAULT_ONCE": str(marker), "PATH": ""}
    if skip is not None:
        env["VRSEARCH_FAULT_SKIP"] = str(skip)
    return [subprocess.run([sys.executable, "-c", ARRIVE], env=env, capture_output=True).returncode for _ in range(n)]


@pytest.mark.parametrize("skip", [None, 0, 2])
def test_the_fault_fires_once_after_skip_arrivals(tmp_path, skip):
    marker = tmp_path / "fired"
    fired = arrivals(marker, 5, skip)
    assert fired == [0] * (skip or 0) + [1] + [0] * (4 - (skip or 0))
    assert int(marker.read_text()) > 0  # the pid of the process it fired in


def test_a_disarmed_marker_consumes_no_pass(tmp_path):
    marker = tmp_path / "fired"
    marker.write_text("disarmed")
    assert arrivals(marker, 3, 2) == [0, 0, 0]
    assert not list(tmp_path.glob("fired.pass*"))
    marker.unlink()
    assert arrivals(marker, 3, 2) == [0, 0, 1]


def test_a_world_filtered_fault_fires_only_in_a_trial_of_that_many_ranks(monkeypatch):
    monkeypatch.setenv("VRSEARCH_FAULT", "enospc:step:4")
    monkeypatch.setenv("VRSEARCH_FAULT_WORLD", "2")
    faults.point("step", 4)  # outside training: passes
    faults.point("step", 4, world=1)  # a trial that trains alone: passes
    faults.point("step", 3, world=2)  # another step: passes
    with pytest.raises(OSError, match="No space left"):
        faults.point("step", 4, world=2)
    monkeypatch.delenv("VRSEARCH_FAULT_WORLD")
    with pytest.raises(OSError, match="No space left"):
        faults.point("step", 4, world=1)  # unfiltered: any trial


def test_pause_waits_and_goes_on(monkeypatch):
    monkeypatch.setenv("VRSEARCH_FAULT", "pause:step:4")
    monkeypatch.setattr(faults, "PAUSE_S", 0.2)
    t0 = time.monotonic()
    faults.point("step", 4, world=2)
    assert time.monotonic() - t0 >= 0.2
