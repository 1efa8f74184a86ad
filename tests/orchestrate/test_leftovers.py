"""A killed driver's local Ray can leave processes running (a trial still training): the next
``run``/``resume`` kills them before it reads the run directory
(vrsearch.orchestrate.experiment.reap_leftovers), and only them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from tests.conftest import tiny_study_dict
from vrsearch.orchestrate.experiment import ray_temp_dir, reap_leftovers
from vrsearch.results.rundir import RunDir
from vrsearch.study.load import build_study

HOLD = "import sys, time; f = open(sys.argv[1], 'a'); time.sleep(120)"


def holding(path) -> subprocess.Popen:
    """A process that holds ``path`` open, as a Ray worker holds its log file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)])
    deadline = time.time() + 30
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the file is created by open(): the descriptor is there once it exists
    return proc


def test_a_leftover_of_this_runs_local_ray_is_killed_and_nothing_else(tmp_path):
    study = build_study(tiny_study_dict(tmp_path, tmp_path / "run"))
    run = RunDir(study.run_dir)
    temp = ray_temp_dir(run.path, None)  # under /tmp: the run dir's path is too long for sockets
    ours = holding(temp / "session_x" / "logs" / "worker.out")
    other = holding(tmp_path / "elsewhere" / "worker.out")
    try:
        assert reap_leftovers(study, run, "127.0.0.1:6379") == []  # on a cluster: Ray's business
        shared = build_study(tiny_study_dict(tmp_path, tmp_path / "run", resources={"ray_temp_dir": str(temp)}))
        assert reap_leftovers(shared, run, None) == []  # a configured temp dir other studies may share
        assert ours.poll() is None
        assert reap_leftovers(study, run, None) == [ours.pid]
        assert ours.wait(timeout=10) == -9
        assert other.poll() is None  # another process's files: left alone
    finally:
        for p in (ours, other):
            p.kill()
            p.wait()
        shutil.rmtree(temp, ignore_errors=True)
