"""Tiny studies run once per session through real Ray and shared by the tests that
read their results: an ablation (2 arms × 2 seeds), a seed-aware search, and two
DDP trials one after the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import cli
from tests.e2e.test_run import write_study

ABLATION = {
    "design": "ablation",
    "scheduler": "none",
    "seeds": [0, 1],
    "arms": [{"name": "ce_only", "set": {"method.params.loss": "ce", "train.optimizer.lr": 0.03}}],
}
SEARCH = {
    "design": "search",
    "searcher": "random",
    "scheduler": "none",
    "num_samples": 2,
    "seeds": [0, 1],
    "space": {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.05, "log": True}},
}
RES = {"concurrent_trials": 2}
#: two DDP trials (2 gloo workers each), one at a time, that differ only in how often they save a
#: checkpoint, nothing they compute; no scheduler, so the second one runs in the first one's Tune actor
DDP_TWINS = {
    "design": "grid",
    "scheduler": "none",
    "space": {"train.checkpoint_every": {"type": "categorical", "choices": [3, 2]}},
}
DDP = {"concurrent_trials": 1, "workers_per_trial": 2, "cpus_per_worker": 1}


def _run(tiny_phantom, tmp, search, resources=RES):
    study = write_study(tmp, tiny_phantom, search=search, resources=resources)
    proc = cli("run", study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return study, proc


@pytest.fixture(scope="session")
def ablation_run(tiny_phantom, tmp_path_factory):
    """(tmp dir, study file, run dir, the run's process)."""
    tmp = tmp_path_factory.mktemp("ablation")
    study, proc = _run(tiny_phantom, tmp, ABLATION)
    return tmp, study, tmp / "run", proc


@pytest.fixture(scope="session")
def search_run(tiny_phantom, tmp_path_factory):
    """The tmp dir whose ``run`` holds a 2-configuration × 2-seed search."""
    tmp = tmp_path_factory.mktemp("search")
    _run(tiny_phantom, tmp, SEARCH)
    return tmp


@pytest.fixture(scope="session")
def ddp_twins_run(tiny_phantom, tmp_path_factory):
    """The tmp dir whose ``run`` holds :data:`DDP_TWINS` on a local Ray: the second trial in the
    first one's Tune actor (tests/e2e/test_determinism.py), and the one-node reference of the
    DDP trial split over two nodes (tests/e2e/test_autoscale.py)."""
    tmp = tmp_path_factory.mktemp("ddp_twins")
    _run(tiny_phantom, tmp, DDP_TWINS, DDP)
    return tmp


def actor_marks(run: Path, trial: str) -> dict:
    """A trial's ``timing.json``: its Tune actor's marks (``trials_before``: how many trials that
    actor had run before it; ``pid``; with a worker group, when the workers started)."""
    return json.loads((run / "trials" / trial / "timing.json").read_text())
