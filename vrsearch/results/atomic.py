"""Atomic writes: every file vrsearch writes goes to a temporary name beside its
target and is renamed over it, so a reader (even of a study that is still
running) sees the old file or the new one, never a part. One implementation for
text, parquet, checkpoints and downloads."""

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
    """``write(tmp)`` then rename over ``path``; a full disk is a one-line error that
    leaves the previous file as it was. ``fault_point`` names the moment between the
    two for fault injection (:mod:`vrsearch.results.faults`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        write(tmp)
        faults.point(fault_point)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in FULL:
            raise _full_disk(path, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
