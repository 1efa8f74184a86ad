"""Prepared data: each case decoded, reoriented, resampled and normalised once per node,
kept as ``.npy`` files that every trial and DDP worker reads memory-mapped.

An *entry* holds the arrays (and affines) that one chain of deterministic transforms
makes of one case's files. Its key is the SHA-256 of everything the result depends on:
the cache format, the MONAI / torch / NumPy versions, the chain (``stage`` and its
settings: orientation, spacing, intensity), the keys, and each source file's absolute
path, size and modification time (ns). A changed file or setting is a new key; old
entries are never read again (delete the folder to reclaim the space).

Layout: ``<root>/<key[:2]>/<key>/<name>.npy`` and ``entry.json`` (shapes, dtypes,
affines, sizes and the SHA-256 of each ``.npy``). Every file is written to a temporary
name and renamed, ``entry.json`` last, so an entry whose writer was killed has no
``entry.json`` (or one whose files do not match it) and is rebuilt; a truncated or
altered ``.npy`` fails its size or digest check and is rebuilt too — never trusted.
Building holds ``<root>/<key>.lock`` (``flock``), so trials that start together decode a
case once and the others read it. Each process checks an entry's digests once, then
keeps it memory-mapped (read-only) for its later trials (a reused Tune actor); readers
get their own copies of the arrays, so nothing downstream can write into the cache.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # MONAI only where a tensor is made: a study's driver imports this module
    from monai.data import MetaTensor

FORMAT = 1
#: the code that turns a file into a prepared case: an edit to it (orientation, resampling,
#: interpolation, intensity) changes every key, so no entry made by older code is served
_CODE = hashlib.sha256(
    b"".join((Path(__file__).parent / name).read_bytes() for name in ("pipeline.py", "intensity.py", "prepared.py"))
).hexdigest()
ENTRY_FILE = "entry.json"
#: entries this process has verified: folder -> {name: (read-only memory map, affine)}
_OPEN: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}


def file_identity(path: str | Path) -> list:
    """(absolute path, size, mtime in ns) of a source file: what an entry's key reads of it."""
    p = Path(path).absolute()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


def entry_key(stage: str, files: dict[str, str], settings: dict) -> str:
    """The content key of the entry that ``stage`` (with ``settings``) makes of ``files``."""
    import monai
    import nibabel
    import torch

    doc = {
        "format": FORMAT,
        "code": _CODE,
        "versions": [monai.__version__, torch.__version__, np.__version__, nibabel.__version__],
        "stage": stage,
        "settings": settings,
        "files": {k: file_identity(v) for k, v in sorted(files.items())},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _replace_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` beside ``path``, then rename over it (the data layer's own atomic
    write: :mod:`vrsearch.results.atomic` sits in a layer ``data`` does not import)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save would add ".npy" to a temporary name
        np.save(f, arr, allow_pickle=False)


class PreparedStore:
    """The prepared-data cache under ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).absolute()

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def get(self, key: str, build: Callable[[], dict[str, MetaTensor]]) -> dict[str, MetaTensor]:
        """The entry ``key`` as fresh MetaTensors, built with ``build()`` and stored if it is
        missing or damaged."""
        import torch
        from monai.data import MetaTensor

        folder = str(self.folder(key))
        arrays = _OPEN.get(folder) or self.open(key)
        if arrays is None:
            with self._lock(key):
                arrays = self.open(key) or self._write(key, build())
        _OPEN[folder] = arrays
        return {
            name: MetaTensor(torch.from_numpy(np.array(a)), affine=torch.from_numpy(aff.copy()))
            for name, (a, aff) in arrays.items()
        }

    def open(self, key: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
        """A complete, intact entry memory-mapped; None if it is missing, half-written or damaged."""
        folder = self.folder(key)
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            if entry.get("format") != FORMAT or entry.get("key") != key:
                return None
            out = {}
            for name, meta in entry["arrays"].items():
                path = folder / f"{name}.npy"
                if path.stat().st_size != meta["size"] or _digest(path) != meta["sha256"]:
                    return None
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
                    return None
                out[name] = (arr, np.asarray(meta["affine"], dtype=np.float64))
            return out
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, key: str, tensors: dict[str, MetaTensor]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from monai.data import MetaTensor

        folder = self.folder(key)
        shutil.rmtree(folder, ignore_errors=True)  # whatever a killed writer left
        folder.mkdir(parents=True)
        arrays = {}
        for name, t in tensors.items():
            arr = np.ascontiguousarray(t.as_tensor().numpy() if isinstance(t, MetaTensor) else np.asarray(t))
            path = folder / f"{name}.npy"
            _replace_atomic(path, functools.partial(_save_npy, arr=arr))
            arrays[name] = {
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "size": path.stat().st_size,
                "sha256": _digest(path),
                "affine": np.asarray(t.affine, dtype=np.float64).tolist(),
            }
        text = json.dumps({"format": FORMAT, "key": key, "arrays": arrays})
        _replace_atomic(folder / ENTRY_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        out = self.open(key)
        if out is None:  # pragma: no cover - written and renamed just now
            raise OSError(f"prepared-data cache entry {folder} could not be read back")
        return out

    @contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def forget_open() -> None:
    """Drop this process's verified entries (the next read checks the files again)."""
    _OPEN.clear()
