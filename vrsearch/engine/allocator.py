"""Keep freed memory in the process for the next training step (glibc's malloc).

PyTorch takes a CPU tensor's memory straight from the C library's ``malloc``.
glibc serves a request above its *mmap threshold* with fresh pages from the
kernel and unmaps them on ``free``; the threshold starts at 128 KiB and rises
with freed blocks only up to 32 MiB, and glibc also hands the top of its heap
back whenever more than twice the threshold is free there. A training step
allocates and frees the same tensors every iteration, so on a large patch
most of its temporaries (a ``[4, 14, 96, 96, 64]`` probability map is 132 MB)
are new pages every step, and the kernel zeroes and maps each of them on
first touch: a MONA step on a 96×96×64 patch spent a third of its CPU time in
copies into such pages (``benchmarks/RESULTS.md`` (b⁸)).

:func:`keep_freed_memory` raises both thresholds with ``mallopt(3)`` once per
process (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`), so freed blocks are
reused by the next step instead of being unmapped and faulted in again. That
covers a process that trains on its main thread (``vrsearch train``). Ray
trials train on another thread (Tune's trial thread, Ray Train's training
thread), and glibc gives such a thread its own arena of 64 MiB heaps, where a
larger block is always mapped afresh whatever the threshold; so Ray's worker
processes start with :func:`worker_env` (the orchestration passes it as the
job's runtime environment): one arena (``MALLOC_ARENA_MAX=1``: every thread
allocates from the main heap) and the same two thresholds, read by glibc when
the process starts.

The price is memory: freed memory stays mapped, so a training process's
resident size stays at its peak for the whole run (sum the peaks of trials
that run side by side), and the heap's fragmentation raised the peak of four
96×96×64 steps by 8 % (MONA) to 42 % (labeled-only) in (b⁸). Where memory
comes from changes no arithmetic: ``tests/engine/test_allocator.py`` trains
the same study both ways and compares every logged number. Only glibc has
these knobs; elsewhere (musl, macOS) nothing changes.
``VRSEARCH_MALLOC=system`` (set where the study is started; it is passed on
to the trials) keeps glibc's defaults; ``kept`` (or unset) is the default,
and then the trials' ``MALLOC_*`` values are these, over any of the user's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path

from vrsearch.errors import VrsearchError

#: the environment variable that chooses (module doc)
ENV = "VRSEARCH_MALLOC"

#: requests below this come from the heap, whose freed blocks are reused (glibc: ``M_MMAP_THRESHOLD``)
MMAP_THRESHOLD = 1 << 30
#: free memory at the heap's top kept mapped up to this much (glibc: ``M_TRIM_THRESHOLD``)
TRIM_THRESHOLD = (1 << 31) - 1
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DONE: list[bool] = []


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process (once); True if they are set.

    The mmap threshold goes first: setting either one turns off glibc's dynamic
    threshold, so the trim threshold is set only if the mmap one was accepted."""
    if not _DONE:
        _DONE.append(_apply())
    return _DONE[0]


def mode() -> str:
    """``VRSEARCH_MALLOC``: ``kept`` (the default) or ``system``; anything else is one line."""
    value = os.environ.get(ENV, "").strip().lower() or "kept"
    if value not in ("kept", "system"):
        raise VrsearchError(f"{ENV}={os.environ[ENV]!r}: expected 'kept' (the default) or 'system'")
    return value


def worker_env() -> dict[str, str]:
    """Environment for the processes Ray starts for a study's trials (module doc): glibc
    reads these when the process starts, before any thread allocates."""
    if mode() == "system":
        return {ENV: "system"}
    return {
        ENV: "kept",
        "MALLOC_ARENA_MAX": "1",
        "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD),
    }


def start_environment(name: str) -> str | None:
    """``name`` in the environment this process started with (what glibc read), from
    ``/proc/self/environ`` where there is one, else from ``os.environ``."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return os.environ.get(name)
    for entry in raw.split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key.decode(errors="replace") == name:
            return value.decode(errors="replace")
    return None


def marks() -> dict[str, object]:
    """What a trial's ``timing.json`` records of this process's malloc: the thresholds raised,
    and the arena limit it started with."""
    return {
        "freed_memory_kept": keep_freed_memory(),
        "malloc_arenas": start_environment("MALLOC_ARENA_MAX") or "glibc default",
    }


def _apply() -> bool:
    if mode() == "system":
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name, or no mallopt (not glibc)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


__all__ = [
    "ENV",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "keep_freed_memory",
    "marks",
    "mode",
    "start_environment",
    "worker_env",
]
