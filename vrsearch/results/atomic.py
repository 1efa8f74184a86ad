"""Atomic, durable writes: every file vrsearch writes goes to a temporary name
beside its target and is renamed over it, so a reader (even of a study that is
still running) sees the old file or the new one, never a part. One
implementation for text, parquet, checkpoints and downloads.

Durable too: the temporary file's data is flushed to the disk (``fsync``)
before the rename and the folder's entry after it, so a host that loses power
right after a write keeps the new file whole or the old one, never a file of
the new name with none of its data (a renamed file is not flushed by the
rename: ext4's delayed allocation can leave it empty). A flush costs ~1 ms for
a fragment and ~3 ms for 2 MB on the development machine's ext4 disk
(benchmarks/RESULTS.md (a¹⁵)). A full disk found only by the flush (delayed
allocation) is the same one-line error as one found by the write."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from vrsearch.errors import VrsearchError
from vrsearch.results import faults

#: errors of a disk that is full (or over quota): one line, the previous file intact
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def temporary(path: Path) -> Path:
    """The temporary name a write of ``path`` uses (hidden, per process)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _full_disk(path: Path, exc: OSError) -> VrsearchError:
    return VrsearchError(
        f"{path}: {exc.strerror or 'no space left on device'} while writing it; the previous "
        f"{path.name} is intact; free space, then 'vrsearch resume' the run"
    )


def write_atomic(path: Path, write: Callable[[Path], object], fault_point: str = "write") -> None:
    """``write(tmp)``, flush it, rename it over ``path``, flush the folder; a full disk is
    a one-line error that leaves the previous file as it was. ``fault_point`` names the moment between the
    two for fault injection (:mod:`vrsearch.results.faults`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        write(tmp)
        _flush(tmp)
        faults.point(fault_point)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in FULL:
            raise _full_disk(path, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)
    try:
        _flush(path.parent)
    except OSError as exc:  # the new file is in place; only its folder entry may not be on the disk yet
        raise VrsearchError(
            f"{path.parent}: {exc.strerror or exc} while flushing the folder to the disk; the new "
            f"{path.name} is in place; free space or check the disk, then run the command again"
        ) from None


def _flush(path: Path) -> None:
    """``fsync`` a file's data or a folder's entries. A file system that cannot flush a
    folder (``EINVAL``: some network and FUSE file systems) is left as it is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if not (path.is_dir() and exc.errno in (errno.EINVAL, errno.ENOTSUP, errno.EBADF)):
            raise
    finally:
        os.close(fd)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
