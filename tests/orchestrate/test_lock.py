"""One writer per run directory: a second holder refuses in one line; a dead holder frees it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vrsearch.errors import VrsearchError
from vrsearch.results.lock import LOCK_FILE, run_lock

HOLD = "import sys, time; from pathlib import Path; from vrsearch.results.lock import run_lock\n" \
       "with run_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)"


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
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(log)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    held = [int(p.communicate(timeout=60)[0]) for p in procs]
    lines = log.read_text().split()
    assert sum(held) == len(lines) // 2 and sum(held) > 20
    assert lines == ["in", "out"] * (len(lines) // 2)  # strictly alternating: one holder at a time
