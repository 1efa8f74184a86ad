"""A run's mirror at ``output.storage``: where it lives and pushing to it during a study
(a failed push mid-study is a warning and is retried; a failed final push is an error)."""

from __future__ import annotations

from pathlib import Path

from vrsearch.core.config import Echo
from vrsearch.errors import VrsearchError
from vrsearch.results import storage
from vrsearch.study.schema import Study


def run_location(study: Study) -> str | None:
    """``<output.storage>/<study name>``, or None without storage."""
    return storage.location(study.output.storage, study.name) if study.output.storage else None


def push_results(run_dir: Path, where: str | None, echo: Echo = print, *, final: bool = False) -> None:
    """Mirror the run dir to its storage; a failed push warns (retried at the next one),
    a failed final push raises (naming the URI)."""
    if where is None:
        return
    try:
        storage.push(run_dir, where)
    except VrsearchError as exc:
        if final:
            raise VrsearchError(f"{exc}; the results are complete locally in {run_dir}") from None
        echo(f"warning: results not stored ({exc}); retrying at the next push")
