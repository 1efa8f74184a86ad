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
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from vrsearch.errors import VrsearchError
from vrsearch.results.atomic import write_atomic, write_text_atomic
from vrsearch.results.rundir import LOCK_FILE, MIRRORED_DIRS, SMALL_FILES

MANIFEST = ".storage-manifest.json"
#: files never mirrored: a run's lock, a checkpoint folder's claim (held by live processes)
_LOCAL_ONLY = (LOCK_FILE, ".claim")
SECRET_PARAMS = {"access_key", "secret_key", "session_token", "aws_access_key_id", "aws_secret_access_key",
                 "aws_session_token", "access_token", "token", "password", "credentials"}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_TEMP = re.compile(r"^\..+\.tmp$")
_CHUNK = 1 << 20


def is_uri(text) -> bool:
    """``scheme://...`` (``file://`` included); a plain path or a Path is not."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def _bare(uri: str) -> str:
    """The URI without user info and query (for messages about a refused URI)."""
    p = urlsplit(uri)
    return urlunsplit((p.scheme, p.hostname or "", p.path, "", ""))


def check_uri(uri: str) -> None:
    """Refuse credentials inside a storage URI (they belong in the environment)."""
    if not is_uri(uri):
        return
    p = urlsplit(uri)
    keys = {k.lower() for k, _ in parse_qsl(p.query, keep_blank_values=True)}
    if "@" in p.netloc or keys & SECRET_PARAMS:
        raise VrsearchError(
            f"{_bare(uri)}: credentials in a storage URI are refused (they would be written to study.yaml "
            "and logs); pass them through the environment (e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
            "GOOGLE_APPLICATION_CREDENTIALS)")


def location(storage: str, name: str) -> str:
    """A study's place under ``storage``: ``<storage>/<name>`` (query options kept)."""
    if not is_uri(storage):
        return str(Path(storage).expanduser().absolute() / name)
    p = urlsplit(storage)
    return urlunsplit(p._replace(path=p.path.rstrip("/") + "/" + name))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def parse(uri: str):
    """``(pyarrow filesystem, base path)`` of a URI or plain path."""
    import pyarrow.fs as pafs

    check_uri(uri)
    if not is_uri(uri):
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().absolute())
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError/ValueError
        raise VrsearchError(f"{uri}: not a usable storage URI ({_short(exc)})") from None
    return fs, path.rstrip("/") or path


def _object_store(fs) -> bool:
    return fs.type_name in ("s3", "gcs")


# --- the manifest ---------------------------------------------------------


def _read_manifest(run_dir: Path, uri: str) -> dict[str, dict]:
    try:
        data = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("files", {}) if data.get("location") == uri else {}


def _write_manifest(run_dir: Path, uri: str, files: dict[str, dict]) -> None:
    write_text_atomic(run_dir / MANIFEST, json.dumps({"location": uri, "files": files}, indent=0, sort_keys=True))


def synced_with(run_dir: Path | str, uri: str) -> bool:
    """Whether ``run_dir`` was pushed to or pulled from ``uri`` before."""
    try:
        return json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8")).get("location") == uri
    except (OSError, ValueError):
        return False


def forget(run_dir: Path | str) -> None:
    """Drop the manifest (the next push uploads everything)."""
    (Path(run_dir) / MANIFEST).unlink(missing_ok=True)


# --- listing --------------------------------------------------------------


def _mirrored(rel: str) -> bool:
    parts = rel.split("/")
    if _TEMP.match(parts[-1]) or parts[-1].endswith("-journal") or parts[-1] in _LOCAL_ONLY:
        return False
    if len(parts) == 1:
        return parts[0] != MANIFEST
    return parts[0] in MIRRORED_DIRS


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    import stat

    return [st.st_size, st.st_mtime_ns] if stat.S_ISREG(st.st_mode) else None


def local_files(run_dir: Path) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of the files of ``run_dir`` that are mirrored."""
    out: dict[str, list[int]] = {}
    for root, dirs, files in os.walk(run_dir):
        rel_root = Path(root).relative_to(run_dir).as_posix()
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d in MIRRORED_DIRS]
        for name in files:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            st = _stat(Path(root) / name) if _mirrored(rel) else None
            if st is not None:
                out[rel] = st
    return out


def _remote_files(fs, base: str) -> dict[str, list]:
    import pyarrow.fs as pafs

    out = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            rel = info.path[len(base):].lstrip("/")
            if _mirrored(rel):
                out[rel] = [info.size, info.mtime_ns]
    return out


def _require(fs, base: str, uri: str) -> None:
    import pyarrow.fs as pafs

    try:
        info = fs.get_file_info(base)
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"{uri}: cannot read ({_short(exc)})") from None
    if info.type == pafs.FileType.NotFound:
        raise VrsearchError(f"{uri}: no such run directory")


# --- transfers ------------------------------------------------------------


def _upload(fs, local: Path, dest: str) -> None:
    if _object_store(fs):  # an object is visible only once complete
        with local.open("rb") as src, fs.open_output_stream(dest, compression=None) as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return
    parent, name = dest.rsplit("/", 1)
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{name}.{os.getpid()}.tmp"
    with local.open("rb") as src, fs.open_output_stream(tmp, compression=None) as out:
        shutil.copyfileobj(src, out, _CHUNK)
    try:
        fs.move(tmp, dest)
    except NotImplementedError:  # pyarrow's ArrowNotImplementedError is one
        fs.delete_file(tmp)
        with local.open("rb") as src, fs.open_output_stream(dest, compression=None) as out:
            shutil.copyfileobj(src, out, _CHUNK)


def _download(fs, src: str, dest: Path) -> None:
    def write(tmp: Path) -> None:
        with fs.open_input_stream(src, compression=None) as inp, tmp.open("wb") as out:
            shutil.copyfileobj(inp, out, _CHUNK)

    write_atomic(dest, write)


def push(run_dir: Path | str, uri: str) -> dict[str, int]:
    """Mirror ``run_dir`` to ``uri``: upload the files changed since the last push and delete
    the pushed files that are gone locally. Returns counts; errors raise :class:`VrsearchError`
    naming the URI (what was uploaded before the error is remembered)."""
    run_dir = Path(run_dir)
    fs, base = parse(uri)
    files = _read_manifest(run_dir, uri)
    uploaded: list[str] = []
    local: dict[str, list[int]] = {}
    deleted = 0
    try:
        local = local_files(run_dir)
        for rel, stat in sorted(local.items()):
            if files.get(rel, {}).get("local") == stat:
                continue
            stat = _stat(run_dir / rel)  # just before reading: a later change is pushed next time
            if stat is None:
                continue
            _upload(fs, run_dir / rel, f"{base}/{rel}")
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
        if uploaded or deleted or not (run_dir / MANIFEST).exists():
            _write_manifest(run_dir, uri, files)
    return {"uploaded": len(uploaded), "deleted": deleted, "unchanged": len(local) - len(uploaded)}


def pull(uri: str, run_dir: Path | str, names: tuple[str, ...] | None = None) -> int:
    """Bring ``run_dir`` up to date with ``uri``: download the files that are missing locally
    or changed remotely since the last sync (``names``: only these top-level files, no
    manifest). Returns the number of files downloaded."""
    run_dir = Path(run_dir)
    fs, base = parse(uri)
    _require(fs, base, uri)
    files = {} if names is not None else _read_manifest(run_dir, uri)
    n = 0
    try:
        remote = _remote_files(fs, base)
        for rel, rstat in sorted(remote.items()):
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
            files[rel] = {"local": _stat(dest), "remote": rstat}
            n += 1
    except VrsearchError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot read {uri}: {_short(exc)}") from None
    finally:
        if names is None:
            _write_manifest(run_dir, uri, files)
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
    """Delete everything at ``uri`` (``run --fresh``)."""
    fs, base = parse(uri)
    try:
        fs.delete_dir_contents(base, missing_dir_ok=True)
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"cannot delete {uri}: {_short(exc)}") from None
