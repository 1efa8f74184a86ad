"""Who may push to a run's mirror: the copy of the run that took it up last.

A mirror can be resumed from anywhere (``vrsearch resume URI``), so two copies of one run
can each believe they own it: machine A's driver dies, machine B resumes from the mirror and
goes on, and later A's own directory is resumed too (or A was never dead, only cut off).
Their pushes would interleave two histories of one study in the mirror: trials of both,
Optuna's database of one. So every life of a run that pushes takes the mirror up first: it
writes a fresh token to :data:`OWNER_FILE` in the mirror and keeps it in its manifest, and a
pull keeps the token it found. A push (or a resume) whose tokens do not include the mirror's
is refused in one line naming who took the mirror up and how to go on from there; so is a
pull into such a stale copy if it changed since it last synced (its own trials would be pushed
beside the mirror's); an unchanged copy (a clean A→B→A, a read-only follower) is brought up to
date. ``vrsearch resume URI`` takes the mirror up before it pulls, so a copy still alive
elsewhere cannot push between the pull and the resumed study's first push.

The new token is in the manifest *before* the mirror hears of it, beside the old one: a copy
killed in between accepts either, so a crash never locks a copy out of its own mirror.
Mirrors written before this file existed have no token: the first push takes them up. The
check and the take-up are two requests, not one atomic step (object stores have no
compare-and-swap that pyarrow exposes): two copies taking a mirror up in the same instant can
both succeed, and the first push after it refuses the one that wrote first.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrsearch.errors import VrsearchError
from vrsearch.results.storage_fs import OWNER_FILE, _upload, resumable

if TYPE_CHECKING:
    import pyarrow.fs as pafs


def new_token() -> str:
    return uuid.uuid4().hex


def accepted(manifest: dict[str, Any]) -> list[str]:
    """The tokens a copy's manifest accepts as its own (the newest first)."""
    tokens = manifest.get("owner") or []
    return [tokens] if isinstance(tokens, str) else [t for t in tokens if isinstance(t, str)]


def read(fs: pafs.FileSystem, base: str) -> dict[str, Any] | None:
    """The mirror's owner record, None if it has none (or one that cannot be read)."""
    try:
        with fs.open_input_stream(f"{base}/{OWNER_FILE}", compression=None) as f:
            record = json.loads(f.read().decode("utf-8"))
    except (FileNotFoundError, ValueError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("token"), str) else None


def write(fs: pafs.FileSystem, base: str, token: str) -> None:
    """Make ``token`` the mirror's owner (written whole, as every mirrored file)."""
    record = {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
    with tempfile.TemporaryDirectory(prefix="vrs-owner-") as tmp:
        src = Path(tmp) / OWNER_FILE
        src.write_text(json.dumps(record), encoding="utf-8")
        _upload(fs, src, f"{base}/{OWNER_FILE}")


def check(theirs: dict[str, Any] | None, mine: Sequence[str], uri: str, run_dir: object) -> None:
    """Refuse ``run_dir`` (accepting tokens ``mine``) a mirror another copy took up."""
    if theirs is None or theirs["token"] in mine:
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(theirs.get("since") or 0)))
    raise VrsearchError(
        f"{uri} was taken up by another copy of this run (host {theirs.get('host', '?')}, pid "
        f"{theirs.get('pid', '?')}, {when}) after {run_dir} last synced with it; continue from the "
        f"mirror in a new directory with 'vrsearch resume {resumable(uri)} --into NEWDIR' (or remove {run_dir} first)"
    )
