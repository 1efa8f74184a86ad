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
