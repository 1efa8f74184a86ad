"""One writer per run directory: a second holder refuses in one line; a dead holder frees it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vrsearch.errors import VrsearchError
from vrsearch.results.lock import LOCK_FILE, run_lock

HOLD = (
    "import sys, time; from pathlib import Path; from vrsearch.results.lock import run_lock\n"
    "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"
)


def test_second_process_refuses_and_a_killed_holder_releases(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(VrsearchError) as err:
            with run_lock(tmp_path):
                pass
        assert f"pid {holder.pid}" in str(err.value) and "in use" in str(err.value)
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock
        holder.wait()
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == str(__import__("os").getpid())


def test_unwritable_run_dir_is_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(VrsearchError, match="output.dir: cannot write the run directory"):
        with run_lock(blocker / "run"):
            pass


def test_a_released_lock_leaves_no_file(tmp_path):
    with run_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


RACE = """import os, sys, time
from pathlib import Path
from vrsearch.errors import VrsearchError
from vrsearch.results.lock import run_lock
run, log = Path(sys.argv[1]), sys.argv[2]
held = 0
deadline = time.time() + 3
while time.time() < deadline:
    try:
        with run_lock(run):
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, b"in\\n"); time.sleep(0.002); os.write(fd, b"out\\n"); os.close(fd)
            held += 1
    except VrsearchError:
        pass
print(held)
"""


def test_removing_the_file_on_release_keeps_one_holder_at_a_time(tmp_path):
    """Processes take and release the lock as fast as they can: entries never overlap,
    although every release removes the file others may have just opened."""
    log = tmp_path / "log"
    procs = [
        subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(log)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    held = [int(p.communicate(timeout=60)[0]) for p in procs]
    lines = log.read_text().split()
    assert sum(held) == len(lines) // 2 and sum(held) > 20
    assert lines == ["in", "out"] * (len(lines) // 2)  # strictly alternating: one holder at a time


CLAIM = (
    "import sys, time; from pathlib import Path; from vrsearch.results.lock import checkpoint_claim\n"
    "from vrsearch.results.rundir import RunDir\n"
    "with checkpoint_claim(RunDir(Path(sys.argv[1])), 'cfg', sys.argv[2]) as f:\n"
    "    print(f.name, flush=True); time.sleep(60)"
)


def test_a_held_checkpoint_sends_another_trial_to_a_fresh_folder_but_a_retry_waits(tmp_path, monkeypatch):
    """A configuration's folder held by a live trial: a second trial of that configuration
    starts fresh in its own folder at once; a retry of the holding trial itself (whose
    earlier attempt is dying, e.g. on a lost node whose file lock the server still keeps)
    waits for the claim and continues in the configuration's folder."""
    import threading

    from vrsearch.results import lock
    from vrsearch.results.rundir import RunDir

    run = RunDir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", CLAIM, str(tmp_path), "t1"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "cfg"
        assert (tmp_path / "checkpoints" / "cfg" / ".claim").read_text() == "t1"
        with lock.checkpoint_claim(run, "cfg", "t2") as folder:
            assert folder.name == "cfg-t2"
        monkeypatch.setattr(lock, "CLAIM_WAIT_S", 1.5)  # the holder outlives the wait: fresh folder
        with lock.checkpoint_claim(run, "cfg", "t1") as folder:
            assert folder.name == "cfg-t1"
        monkeypatch.setattr(lock, "CLAIM_WAIT_S", 60.0)
        threading.Timer(2.0, holder.kill).start()  # the earlier attempt dies while the retry waits
        with lock.checkpoint_claim(run, "cfg", "t1") as folder:
            assert folder.name == "cfg" and holder.poll() is not None
    finally:
        holder.kill()
        holder.wait()
