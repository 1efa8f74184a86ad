"""glibc's thresholds raised for training processes (vrsearch.engine.allocator): set where
glibc is, left alone with ``VRSEARCH_MALLOC=system``, and the same training either way."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pandas as pd
import pytest

from tests.e2e.test_cli import VRSEARCH

PROBE = "from vrsearch.engine.allocator import keep_freed_memory as k; print(k(), k())"


def probe(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_thresholds_are_set_once_where_glibc_is_and_not_when_asked():
    glibc = platform.libc_ver()[0] == "glibc"
    assert probe({"VRSEARCH_MALLOC": ""}) == ("True True" if glibc else "False False")
    assert probe({"VRSEARCH_MALLOC": "system"}) == "False False"


@pytest.mark.slow
def test_training_is_the_same_with_glibcs_defaults_and_with_freed_memory_kept(tiny_study, tmp_path):
    """Where memory comes from changes no arithmetic: the same study trained in two processes,
    one with glibc's defaults, gives the same curve, scores and per-case metrics to the bit."""
    runs = {}
    for mode in ("system", "kept"):
        path = tiny_study(output={"dir": str(tmp_path / mode)})
        env = {**os.environ, "VRSEARCH_MALLOC": mode}
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
