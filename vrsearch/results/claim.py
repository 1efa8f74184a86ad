"""Claiming a run directory for a study: ``study.yaml`` written first, a directory
that holds a different study refused (or, with ``--fresh``, emptied of what
vrsearch wrote there). Shared by ``vrsearch train`` and ``vrsearch run``; light
on purpose (no torch, no MONAI), since a study's driver imports it."""

from __future__ import annotations

import shutil
from pathlib import Path

from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results.rundir import RunDir


def remove_run(run_dir: Path) -> None:
    """Remove what vrsearch writes in a run directory (nothing else)."""
    run = RunDir(run_dir)
    for path in (run.study, run.trials, run.history, run.cases):
        path.unlink(missing_ok=True)
    shutil.rmtree(run.checkpoints, ignore_errors=True)


def refuse_other_study(run_dir: Path, text: str, fresh: bool) -> None:
    """A directory that holds a different study is refused (unless ``fresh``)."""
    path = RunDir(run_dir).study
    if not fresh and path.exists() and path.read_text(encoding="utf-8") != text:
        raise VrsearchError(
            f"{run_dir} holds results of a different study; set output.dir elsewhere or pass --fresh to replace them"
        )


def claim_run_dir(run_dir: Path, text: str, fresh: bool) -> None:
    """Write study.yaml, refusing a directory that holds a different study."""
    path = RunDir(run_dir).study
    refuse_other_study(run_dir, text, fresh)
    if fresh:
        remove_run(run_dir)
    try:
        io.write_text_atomic(path, text)
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        raise VrsearchError(
            f"output.dir: cannot write the run directory {run_dir} ({exc.strerror or exc}{where})"
        ) from None
