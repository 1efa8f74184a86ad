"""Training processes keep freed memory for the next step (vrsearch.engine.allocator): a large
block is reused rather than mapped afresh — on the main thread with the thresholds alone, on
any thread in a process started with the trials' environment — glibc's defaults with
``VRSEARCH_MALLOC=system``, and the same training either way."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest

from tests.e2e.test_cli import VRSEARCH, assert_one_line_error, cli
from vrsearch.engine import allocator
from vrsearch.errors import VrsearchError

#: in a fresh process: keep_freed_memory(), then how many blocks malloc had mapped on their own
#: while a 96 MiB block was held, on the main thread and on a second one (glibc's mallinfo2)
PROBE = """
import ctypes, ctypes.util, json, threading
from vrsearch.engine.allocator import keep_freed_memory
kept = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in names]
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
out = {"kept": kept}
def probe(where):
    before = libc.mallinfo2().hblks
    block = libc.malloc(96 << 20)
    out[where] = libc.mallinfo2().hblks - before
    libc.free(block)
probe("main")
thread = threading.Thread(target=probe, args=("thread",))
thread.start()
thread.join()
import os
from vrsearch.engine.allocator import marks
os.environ["MALLOC_ARENA_MAX"] = "7"  # too late for glibc: the mark reports what the process started with
out["arenas"] = marks()["malloc_arenas"]
print(json.dumps(out))
"""
GLIBC = platform.libc_ver()[0] == "glibc"


def probe(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", allocator.ENV))}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**clean, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_large_block_is_reused_on_every_thread_with_the_trials_environment():
    if not GLIBC:  # no glibc, no mallopt to call: nothing changes
        assert probe({})["kept"] is False
        return
    default = "glibc default"
    # the thresholds alone (a process training on its main thread): a thread's arena still maps it
    assert probe({}) == {"kept": True, "main": 0, "thread": 1, "arenas": default}
    assert probe(allocator.worker_env()) == {"kept": True, "main": 0, "thread": 0, "arenas": "1"}
    assert probe({allocator.ENV: "system"}) == {"kept": False, "main": 1, "thread": 1, "arenas": default}


def test_the_mode_is_kept_or_system_and_anything_else_is_one_line(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.mode() == "system" and allocator.worker_env() == {allocator.ENV: "system"}
    monkeypatch.setenv(allocator.ENV, "")
    env = allocator.worker_env()
    assert allocator.mode() == "kept" and env["MALLOC_ARENA_MAX"] == "1" and env[allocator.ENV] == "kept"
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) == allocator.MMAP_THRESHOLD
    monkeypatch.setenv(allocator.ENV, "off")
    with pytest.raises(VrsearchError, match="VRSEARCH_MALLOC='off': expected 'kept'"):
        allocator.worker_env()


def test_a_bad_mode_stops_the_study_before_it_starts_in_one_line(tiny_study):
    proc = cli("validate", tiny_study(), env={allocator.ENV: "off"})
    assert_one_line_error(proc, "VRSEARCH_MALLOC='off'", "expected 'kept'")


@pytest.mark.slow
def test_training_is_the_same_with_glibcs_defaults_and_with_freed_memory_kept(tiny_study, tmp_path):
    """Where memory comes from changes no arithmetic: the same study trained in two processes,
    one with glibc's defaults, gives the same curve, scores and per-case metrics to the bit."""
    runs = {}
    for mode in ("system", "kept"):
        path = tiny_study(output={"dir": str(tmp_path / mode)})
        env = {**os.environ, allocator.ENV: mode}
        proc = subprocess.run([VRSEARCH, "train", str(path)], capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[mode] = tmp_path / mode
    history = {m: pd.read_parquet(r / "history.parquet") for m, r in runs.items()}
    numbers = [c for c in history["system"] if c.startswith(("loss", "term_", "val_")) or c == "iteration"]
    assert len(numbers) > 3 and history["system"][numbers].equals(history["kept"][numbers])
    cases = {
        m: pd.read_parquet(r / "cases.parquet").drop(columns=["trial_id"], errors="ignore") for m, r in runs.items()
    }
    assert cases["system"].equals(cases["kept"])
