"""Who may push to a run's mirror: the copy of the run that took it up last.

A mirror can be resumed from anywhere (``vrsearch resume URI``), so two copies of one run
can each believe they own it: machine A's driver dies, machine B resumes from the mirror and
goes on, and later A's own directory is resumed too (or A was never dead, only cut off).
Their pushes would interleave two histories of one study in the mirror: trials of both,
Optuna's database of one. So every life of a run that pushes takes the mirror up first: it
writes a fresh token to :data:`OWNER_FILE` in the mirror and keeps it in its manifest, and a
pull keeps the token it found. A push whose token is not the mirror's is refused in one line
naming who took the mirror up and how to go on from there.

Mirrors written before this file existed have no token: the first push takes them up. The
check and the take-up are two requests, not one atomic step (object stores have no
compare-and-swap that pyarrow exposes): two copies taking a mirror up in the same instant can
both succeed, and the first push after it refuses the one that wrote first.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from vrsearch.errors import VrsearchError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

#: in the mirror only (never pulled: storage_fs._mirrored skips it)
OWNER_FILE = ".vrsearch-owner.json"


def read(fs: pafs.FileSystem, base: str) -> dict[str, Any] | None:
    """The mirror's owner record, None if it has none (or one that cannot be read)."""
    try:
        with fs.open_input_stream(f"{base}/{OWNER_FILE}", compression=None) as f:
            record = json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else None


def take_up(fs: pafs.FileSystem, base: str) -> str:
    """Make this process the mirror's owner; returns its new token."""
    token = uuid.uuid4().hex
    record = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(f"{base}/{OWNER_FILE}", compression=None) as f:
        f.write(json.dumps(record).encode("utf-8"))
    return token


def check(theirs: dict[str, Any] | None, mine: str | None, uri: str, run_dir: object) -> None:
    """Refuse a push from ``run_dir`` (token ``mine``) to a mirror another copy took up."""
    if theirs is None or theirs["token"] == mine:
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(theirs.get("since") or 0)))
    raise VrsearchError(
        f"{uri} was taken up by another copy of this run (host {theirs.get('host', '?')}, pid "
        f"{theirs.get('pid', '?')}, {when}) after {run_dir} last synced with it; continue from the "
        f"mirror with 'vrsearch resume {uri} --into DIR', or start over with --fresh"
    )
