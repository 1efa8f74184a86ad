"""Helpers of the bad-input corpus tests: study headers, placeholders, tree snapshots."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

HEADER = re.compile(r"#\s*([a-z]+):\s*(.*?)\s*$")


def header(path: Path) -> dict[str, list[str]]:
    """``# key: value`` lines at the top of a corpus file (``expect``, ``run``, ``setup``)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = HEADER.match(line)
        if not m:
            break
        out.setdefault(m.group(1), []).append(m.group(2))
    return out


def fill(text: str, *, data_root: Path, out_dir: Path, tmp: Path) -> str:
    """Replace the corpus placeholders by this test's paths."""
    return text.replace("DATA_ROOT", str(data_root)).replace("OUT_DIR", str(out_dir)).replace("TMP_DIR", str(tmp))


def snapshot(root: Path, exclude: tuple[Path, ...] = ()) -> dict[str, tuple]:
    """Every entry under ``root`` (but ``exclude``): kind, mode, and a file's size, mtime and content hash."""
    skip = {str(p) for p in exclude}
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path in skip:
                continue
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if name in filenames and os.path.isfile(path):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                tree[rel] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
            else:
                tree[rel] = ("dir", st.st_mode)
    return tree
