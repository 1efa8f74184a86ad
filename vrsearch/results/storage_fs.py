"""URIs, pyarrow filesystems and whole-file transfers of a storage mirror (:mod:`.storage`).

A URI's scheme picks pyarrow's filesystem (``s3://``, ``gs://``, ``file://``; a plain
path is local); credentials inside a URI are refused. A file is written whole: to a
temporary name and moved where a move is a rename, directly on object stores (an
object appears only once its upload is complete).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from vrsearch.errors import VrsearchError
from vrsearch.results.atomic import write_atomic
from vrsearch.results.rundir import LOCK_FILE, MIRRORED_DIRS

if TYPE_CHECKING:
    import pyarrow.fs as pafs

MANIFEST = ".storage-manifest.json"
#: in a mirror only, never pulled: the token of the copy of the run that took it up (storage_owner)
OWNER_FILE = ".vrsearch-owner.json"
#: files never mirrored: a run's lock, a checkpoint folder's claim (held by live processes)
_LOCAL_ONLY = (LOCK_FILE, ".claim")
SECRET_PARAMS = {
    "access_key",
    "secret_key",
    "session_token",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "access_token",
    "token",
    "password",
    "credentials",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_TEMP = re.compile(r"^\..+\.tmp$")
_CHUNK = 1 << 20


def is_uri(text: object) -> bool:
    """``scheme://...`` (``file://`` included); a plain path or a Path is not."""
    return isinstance(text, str) and bool(_SCHEME.match(text))


def location_key(uri: str) -> str:
    """One spelling of a storage location, for matching a manifest to it: ``file://`` URIs and
    plain paths as ``file://`` + the absolute, decoded path; other URIs without a trailing slash
    and without the query options that do not say where the data is (all but ``endpoint_override``)."""
    if not is_uri(uri) or uri.startswith("file://"):
        path = unquote(urlsplit(uri).path) if is_uri(uri) else uri
        return "file://" + os.path.normpath(Path(path).expanduser().absolute())
    p = urlsplit(uri)
    where = sorted((k, v.rstrip("/")) for k, v in parse_qsl(p.query) if k == "endpoint_override")
    return urlunsplit((p.scheme, p.netloc, p.path.rstrip("/"), urlencode(where), ""))


def resumable(uri: str) -> str:
    """How ``vrsearch resume`` names a mirror (it takes a plain path for a local run directory)."""
    return uri if is_uri(uri) else Path(uri).expanduser().absolute().as_uri()


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
            "GOOGLE_APPLICATION_CREDENTIALS)"
        )


def location(storage: str, name: str) -> str:
    """A study's place under ``storage``: ``<storage>/<name>`` (query options kept)."""
    if not is_uri(storage):
        return str(Path(storage).expanduser().absolute() / name)
    p = urlsplit(storage)
    return urlunsplit(p._replace(path=p.path.rstrip("/") + "/" + name))


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def parse(uri: str) -> tuple[pafs.FileSystem, str]:
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


def _object_store(fs: pafs.FileSystem) -> bool:
    return fs.type_name in ("s3", "gcs")


# --- listing and transfers ------------------------------------------------


def _mirrored(rel: str) -> bool:
    parts = rel.split("/")
    if _TEMP.match(parts[-1]) or parts[-1].endswith("-journal") or parts[-1] in _LOCAL_ONLY:
        return False
    if len(parts) == 1:
        return parts[0] not in (MANIFEST, OWNER_FILE)
    return parts[0] in MIRRORED_DIRS


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.lstat()
    except OSError:
        return None
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


def _remote_files(fs: pafs.FileSystem, base: str) -> dict[str, list[Any]]:
    import pyarrow.fs as pafs

    out: dict[str, list[Any]] = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type == pafs.FileType.File:
            rel = info.path[len(base) :].lstrip("/")
            if _mirrored(rel):
                out[rel] = [info.size, info.mtime_ns]
    return out


def _require(fs: pafs.FileSystem, base: str, uri: str) -> None:
    import pyarrow.fs as pafs

    try:
        info = fs.get_file_info(base)
    except Exception as exc:  # noqa: BLE001
        raise VrsearchError(f"{uri}: cannot read ({_short(exc)})") from None
    if info.type == pafs.FileType.NotFound:
        raise VrsearchError(f"{uri}: no such run directory")


# --- transfers ------------------------------------------------------------


def _upload(fs: pafs.FileSystem, local: Path, dest: str) -> None:
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


def _download(fs: pafs.FileSystem, src: str, dest: Path) -> None:
    def write(tmp: Path) -> None:
        with fs.open_input_stream(src, compression=None) as inp, tmp.open("wb") as out:
            shutil.copyfileobj(inp, out, _CHUNK)

    write_atomic(dest, write)
