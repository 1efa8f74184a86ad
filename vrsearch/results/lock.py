"""One writer per run directory: ``vrsearch run``/``resume`` hold an exclusive
``fcntl`` lock on ``RUN_DIR/.vrsearch.lock`` while they work, so a second
process on the same directory refuses in one line instead of interleaving
trials, fragments and parquet writes. The kernel drops the lock when the
holder dies (even by SIGKILL), so a killed study never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vrsearch.errors import VrsearchError

LOCK_FILE = ".vrsearch.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise VrsearchError(f"output.dir: cannot write the run directory {run_dir} ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise VrsearchError(f"{run_dir} is in use by another vrsearch process (pid {holder}); "
                                "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
