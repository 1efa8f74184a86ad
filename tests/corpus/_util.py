"""Helpers of the bad-input corpus tests: study headers, placeholders, tree snapshots."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import traceback
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


def cli_in_process(*args: str) -> subprocess.CompletedProcess:
    """``vrsearch ARGS`` in this interpreter through typer's CliRunner: the same command,
    error handling and exit code as the console script without its ~2.5 s start-up
    (torch, MONAI). An exception that escaped the command shows up in ``stderr`` as a
    traceback, as it would in a real process."""
    from typer.testing import CliRunner

    from vrsearch.cli import app

    args = [str(a) for a in args]
    res = CliRunner().invoke(app, args)
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))
    return subprocess.CompletedProcess(["vrsearch", *args], res.exit_code, res.stdout, stderr)


def validate_in_process(study: Path) -> subprocess.CompletedProcess:
    """``vrsearch validate STUDY`` through :func:`cli_in_process`."""
    return cli_in_process("validate", study)
