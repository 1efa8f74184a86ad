"""One writer per run directory: ``vrsearch run``/``resume``/``train`` hold an
exclusive ``fcntl`` lock on ``RUN_DIR/.vrsearch.lock`` while they work (taken
before they write or delete anything there, ``--fresh`` and a resume's pull
included), so a second process on the same directory refuses in one line
instead of interleaving trials, fragments and parquet writes. The kernel drops the lock when the
holder dies (even by SIGKILL), so a killed study never leaves a stale lock.

Likewise one trial per checkpoint folder (:func:`checkpoint_claim`): folders
are keyed by configuration, and a search may propose one configuration twice.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vrsearch.errors import VrsearchError
from vrsearch.results.rundir import LOCK_FILE, RunDir


def _acquire(path: Path, run_dir: Path) -> int:
    """An fd holding the lock on the file now at ``path``. A holder removes the file when it
    releases, so a lock taken on a file that was removed meanwhile is dropped and retried."""
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise VrsearchError(f"output.dir: cannot write the run directory {run_dir} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise VrsearchError(
                f"{run_dir} is in use by another vrsearch process (pid {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # the previous holder removed it after we opened it: take the new one


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock (creating the directory and missing parents; removed
    again on release where still empty); the lock file is removed when released (a holder killed by a
    signal leaves it behind, unlocked, and the next holder removes it)."""
    path = Path(run_dir) / LOCK_FILE
    created = _missing(Path(run_dir))
    fd = _acquire(path, Path(run_dir))
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # still locked: whoever opened it before retries
        os.close(fd)  # releases the lock
        for folder in created:  # a command that stopped before writing anything leaves no empty folder
            try:
                folder.rmdir()
            except OSError:
                break


def _missing(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, the deepest first."""
    out = []
    while not folder.exists() and folder.parent != folder:
        out.append(folder)
        folder = folder.parent
    return out


#: how long a retried trial waits for the claim of its own earlier attempt (on NFS a dead
#: node's lock lasts until the server's lease for that node expires, commonly 90 s on NFSv4)
CLAIM_WAIT_S = 300.0


def _lock_now(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_own_claim(fd: int, trial_id: str, timeout: float) -> bool:
    """Whether the claim held by an earlier attempt of ``trial_id`` is ours within ``timeout``.
    Tune retries a trial only after its attempt failed, so that holder is dead or dying —
    a process on a lost node whose lock the file server has not yet dropped."""
    if os.pread(fd, 256, 0).decode(errors="replace").strip() != trial_id:
        return False  # another trial of the same configuration, alive: never wait for it
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if _lock_now(fd):
            return True
    return False


@contextmanager
def checkpoint_claim(run: RunDir, key: str, trial_id: str) -> Iterator[Path]:
    """The checkpoint folder of configuration ``key`` for this trial, held while the trial
    trains: ``checkpoints/<key>`` — whatever an earlier trial of the same configuration
    left there is continued (an interrupted one) or reused (a finished one trains no
    more) — unless a live trial holds it (a search proposed the configuration twice at
    once); then ``checkpoints/<key>-<trial_id>``, a fresh start. The holder's trial id is
    written in the claim: a retry of the same trial waits (up to :data:`CLAIM_WAIT_S`) for
    its lost attempt's claim to be released and continues from its checkpoint."""
    for name in (key, f"{key}-{trial_id}"):
        folder = run.checkpoint(name)
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".claim", os.O_RDWR | os.O_CREAT, 0o644)
        if _lock_now(fd) or _wait_for_own_claim(fd, trial_id, CLAIM_WAIT_S):
            break
        os.close(fd)
    else:  # pragma: no cover - the trial's own folder cannot be held by another trial
        raise VrsearchError(f"checkpoint folder {folder} is held by another trial")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, trial_id.encode(), 0)
        yield folder
    finally:
        os.close(fd)
