"""A run's copy at a storage URI (``output.storage``): push, pull, read back.

The local run directory stays the working copy; :func:`push` mirrors it to
``<storage>/<study name>`` and :func:`pull` brings it back (resume on another
machine). Filesystems are pyarrow's: ``s3://bucket/prefix``, ``gs://bucket/prefix``,
``file:///shared/path`` or a plain path; query options such as
``?endpoint_override=host:port&scheme=http`` pass through to
:meth:`pyarrow.fs.FileSystem.from_uri`. Credentials come from the environment
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS, ...):
a URI that carries keys is refused, so no key ever reaches study.yaml or a log.

What is mirrored: the top-level files (study.yaml, the parquet files,
report.html, table files, optuna.db), ``trials/`` and ``checkpoints/`` —
everything a resume needs — not Tune's experiment dirs (a resume never
restores them), Ray's temp dirs, sockets, locks or temporaries.
Each file is written whole: to a temporary name and moved on filesystems whose
move is a rename (local / mounted paths); directly on object stores, where an
object appears only once its upload is complete. A manifest in the run dir
(:data:`MANIFEST`) remembers each file's local size/mtime and remote
size/mtime at the last sync, so a push uploads only changed files (and deletes
remotely the files it had pushed that are gone locally) and a pull downloads
only files changed remotely.

Optuna's SQLite study goes last, as a snapshot taken *before* the other files are
listed: a proposal it holds as finished had its trial's files written before it was
told, so they are in the listing and reach the mirror first. (Uploading the live file
in name order put a proposal told during the push into the mirror without its trial:
a resume from there kept it closed and never ran it again.) The price: a push cut off
before its last upload leaves trials of proposals the mirrored database does not hold
(or no database at all); a resume restores those proposals from the trials'
``meta.json`` (:func:`vrsearch.orchestrate.searchers.restore_proposals`). A pull, too,
brings the database last, so a pull cut off midway leaves it behind the trials, never
ahead of them.

One copy of a run pushes to a mirror at a time: the one that took it up last (a token in
the mirror and in the manifest; :mod:`vrsearch.results.storage_owner`). A manifest is
matched to its mirror by :func:`~vrsearch.results.storage_fs.location_key`, so one place
spelled two ways (a plain path and ``file://``) is one mirror.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from vrsearch.errors import VrsearchError
from vrsearch.results import storage_owner as owner
from vrsearch.results.atomic import write_text_atomic
from vrsearch.results.rundir import OPTUNA_FILE, STUDY_FILE
from vrsearch.results.rundir import SMALL_FILES as SMALL_FILES  # storage.SMALL_FILES
from vrsearch.results.storage_fs import (
    MANIFEST,
    _download,
    _remote_files,
    _require,
    _short,
    _stat,
    _upload,
    check_uri,
    is_uri,
    local_files,
    location,
    location_key,
    parse,
)

__all__ = [
    "MANIFEST",
    "SMALL_FILES",
    "check_owner",
    "check_uri",
    "forget",
    "is_uri",
    "local_files",
    "location",
    "parse",
    "pull",
    "push",
    "put",
    "read_bytes",
    "remove",
    "synced_with",
]


# --- the manifest ---------------------------------------------------------


def _manifest(run_dir: Path, uri: str) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    same = isinstance(data, dict) and location_key(str(data.get("location"))) == location_key(uri)
    return data if same else {}


def _write_manifest(run_dir: Path, uri: str, files: dict[str, dict], tokens: list[str]) -> None:
    """The files' stats at the last sync and the owner tokens this copy accepts (storage_owner)."""
    data = {"location": uri, "files": files, "owner": tokens}
    write_text_atomic(run_dir / MANIFEST, json.dumps(data, indent=0, sort_keys=True))


def synced_with(run_dir: Path | str, uri: str) -> bool:
    """Whether ``run_dir`` was pushed to or pulled from ``uri`` before."""
    return bool(_manifest(Path(run_dir), uri))


def forget(run_dir: Path | str) -> None:
    """Drop the manifest (the next push uploads everything)."""
    (Path(run_dir) / MANIFEST).unlink(missing_ok=True)


# --- push, pull, single files ---------------------------------------------


def push(run_dir: Path | str, uri: str, *, take_up: bool = False) -> dict[str, int]:
    """Mirror ``run_dir`` to ``uri``: upload the files changed since the last push and delete
    the pushed files that are gone locally. Returns counts; errors raise :class:`VrsearchError`
    naming the URI (what was uploaded before the error is remembered). A mirror that another
    copy of the run took up is refused; ``take_up``: this copy takes it up first (once per
    life of a run, :mod:`vrsearch.results.storage_owner`)."""
    run_dir = Path(run_dir)
    fs, base = parse(uri)
    files, tokens = _checked_manifest(run_dir, uri, fs, base)
    if take_up:  # a failure leaves the manifest accepting the new token and the old ones
        tokens = _take_up(fs, base, run_dir, uri, files, tokens)
    uploaded: list[str] = []
    local: dict[str, list[int]] = {}
    deleted = 0
    with tempfile.TemporaryDirectory(prefix="vrs-push-") as tmp:
        try:
            db = _snapshot_db(run_dir, Path(tmp))  # before the listing (module doc)
            local = local_files(run_dir)
            if db is not None:
                local[OPTUNA_FILE] = db[1]
            for rel, listed in sorted(local.items(), key=lambda item: (item[0] == OPTUNA_FILE, item[0])):
                if files.get(rel, {}).get("local") == listed:
                    continue
                # the stat just before reading (the database's: before its snapshot): a later change is pushed next time
                src, stat = db if rel == OPTUNA_FILE and db is not None else (run_dir / rel, _stat(run_dir / rel))
                if stat is None:
                    continue
                _upload(fs, src, f"{base}/{rel}")
                files[rel] = {"local": stat, "remote": None}
                uploaded.append(rel)
            for rel in sorted(set(files) - set(local)):
                try:
                    fs.delete_file(f"{base}/{rel}")
                except FileNotFoundError:
                    pass
                del files[rel]
                deleted += 1
            if uploaded:
                remote = _remote_files(fs, base)
                for rel in uploaded:
                    files[rel]["remote"] = remote.get(rel)
        except VrsearchError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, permissions, missing bucket
            raise VrsearchError(f"cannot write to {uri}: {_short(exc)}") from None
        finally:
            if uploaded or deleted or take_up or not (run_dir / MANIFEST).exists():
                _write_manifest(run_dir, uri, files, tokens)
    return {"uploaded": len(uploaded), "deleted": deleted, "unchanged": len(local) - len(uploaded)}


def _take_up(fs: Any, base: str, run_dir: Path, uri: str, files: dict[str, dict], tokens: list[str]) -> list[str]:
    """Make this copy the mirror's owner; the new token is in the manifest, beside the old
    ones, before the mirror hears of it (storage_owner). Returns the tokens it accepts now."""
    token = owner.new_token()
    _write_manifest(run_dir, uri, files, [token, *tokens])
    try:
        owner.write(fs, base, token)
    except Exception as exc:  # noqa: BLE001 - network, permissions, missing bucket
        raise VrsearchError(f"cannot write to {uri}: {_short(exc)}") from None
    return [token]


def _changed_since_sync(run_dir: Path, files: dict[str, dict]) -> bool:
    """Whether the copy holds a mirrored file that its last sync did not leave as it is."""
    return any(files.get(rel, {}).get("local") != st for rel, st in local_files(run_dir).items())


def check_owner(run_dir: Path | str, uri: str) -> None:
    """Refuse a copy of a run whose mirror another copy took up since (one line;
    :mod:`vrsearch.results.storage_owner`)."""
    fs, base = parse(uri)
    _checked_manifest(Path(run_dir), uri, fs, base)


def _checked_manifest(run_dir: Path, uri: str, fs: Any, base: str) -> tuple[dict[str, dict], list[str]]:
    """The manifest's files and owner tokens, once the mirror's owner is checked against them."""
    data = _manifest(run_dir, uri)
    tokens = owner.accepted(data)
    owner.check(_owner_record(fs, base, uri, "cannot write to"), tokens, uri, run_dir)  # as any failed push
    return data.get("files", {}), tokens


def _owner_record(fs: Any, base: str, uri: str, failed: str) -> dict[str, Any] | None:
    """The mirror's owner record (storage_owner.read); a mirror that cannot be read is one line."""
    try:
        return owner.read(fs, base)
    except Exception as exc:  # noqa: BLE001 - network, permissions, missing bucket
        raise VrsearchError(f"{failed} {uri}: {_short(exc)}") from None


def _snapshot_db(run_dir: Path, tmp: Path) -> tuple[Path, list[int]] | None:
    """A consistent copy of the run's Optuna SQLite study (SQLite's online backup, safe
    while the driver writes) and the live file's stat taken before it; None without one."""
    live = run_dir / OPTUNA_FILE
    stat = _stat(live)
    if stat is None:
        return None
    copy = tmp / OPTUNA_FILE
    try:
        src = sqlite3.connect(f"file:{live}?mode=ro", uri=True)
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
    except sqlite3.Error:  # not a database SQLite can read: mirrored as the file it is
        return live, stat
    return copy, stat


#: SQLite's files beside a database (rollback journal, write-ahead log, its index)
SQLITE_SIDE_FILES = ("-journal", "-wal", "-shm")


def pull(uri: str, run_dir: Path | str, names: tuple[str, ...] | None = None, *, take_up: bool = False) -> int:
    """Bring ``run_dir`` up to date with ``uri``: download the files that are missing locally
    or changed remotely since the last sync (``names``: only these top-level files, no
    manifest). Returns the number of files downloaded. Optuna's database comes last, as in
    :func:`push`: a pull cut off midway leaves it behind the trials, never ahead of them (a
    resume restores what it lacks; a proposal it held as closed without its trial's files
    would never run again); the SQLite journal of a database it replaces is removed. A copy
    that changed since it last synced with a mirror another copy took up since is refused;
    ``take_up``: this copy takes the mirror up before it downloads (storage_owner)."""
    run_dir = Path(run_dir)
    fs, base = parse(uri)
    _require(fs, base, uri)
    data = {} if names is not None else _manifest(run_dir, uri)
    files = data.get("files", {})
    theirs = _owner_record(fs, base, uri, "cannot read")  # before the files: a take-up meanwhile makes ours stale
    if files and _changed_since_sync(run_dir, files):  # a stale copy's own trials
        owner.check(theirs, owner.accepted(data), uri, run_dir)
    tokens = [theirs["token"]] if theirs else []
    if take_up:
        tokens = _take_up(fs, base, run_dir, uri, files, tokens)
    n = 0
    try:
        remote = _remote_files(fs, base)
        for rel, rstat in sorted(remote.items(), key=lambda item: (item[0] == OPTUNA_FILE, item[0])):
            if names is not None and rel not in names:
                continue
            dest, entry = run_dir / rel, files.get(rel)
            have = _stat(dest)
            if have is not None:
                if entry is not None and entry.get("remote") == rstat:
                    continue  # unchanged remotely since the last sync (local may be newer)
                if entry is None and have[0] == rstat[0] and (rstat[1] or 0) <= have[1]:
                    continue  # same size, not newer remotely
            _download(fs, f"{base}/{rel}", dest)
            if rel == OPTUNA_FILE:  # a journal left by a killed driver belonged to the file replaced
                for side in SQLITE_SIDE_FILES:
                    (run_dir / f"{OPTUNA_FILE}{side}").unlink(missing_ok=True)
            files[rel] = {"local": _stat(dest), "remote": rstat}
            n += 1
    except VrsearchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot read {uri}: {_short(exc)}") from None
    finally:
        if names is None:
            _write_manifest(run_dir, uri, files, tokens)
    return n


def put(local: Path | str, uri: str, name: str) -> None:
    """Upload one file as ``<uri>/<name>`` (e.g. a report built elsewhere)."""
    fs, base = parse(uri)
    try:
        _upload(fs, Path(local), f"{base}/{name}")
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot write to {uri}: {_short(exc)}") from None


def read_bytes(uri: str, name: str, *, must_exist: bool = True) -> bytes | None:
    """``<uri>/<name>`` (None if absent); a missing location is an error if ``must_exist``."""
    import pyarrow.fs as pafs

    fs, base = parse(uri)
    if must_exist:
        _require(fs, base, uri)
    try:
        if fs.get_file_info(f"{base}/{name}").type != pafs.FileType.File:
            return None
        with fs.open_input_stream(f"{base}/{name}", compression=None) as f:
            return f.read()
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot read {uri}: {_short(exc)}") from None


def remove(uri: str) -> None:
    """Delete everything at ``uri`` (``run --fresh``), its study.yaml first: a delete cut
    off midway leaves no run there that ``resume URI`` would take up."""
    fs, base = parse(uri)
    try:
        try:
            fs.delete_file(f"{base}/{STUDY_FILE}")
        except FileNotFoundError:
            pass
        fs.delete_dir_contents(base, missing_dir_ok=True)
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot delete {uri}: {_short(exc)}") from None
