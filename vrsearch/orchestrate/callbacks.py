"""Tune callbacks on the driver: keep the parquet files current, show progress."""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray.tune import Callback
from ray.tune.experiment import Trial

from vrsearch.core.config import Echo
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.mirror import push_results
from vrsearch.results import fragments
from vrsearch.results.names import started_trial_names
from vrsearch.results.rundir import REPORT_FILE, RESULT_FILE, SMALL_FILES

#: after a study's first finished trial the driver rebuilds the report at most this often (and at
#: the study's end): a rebuild costs it 0.6-0.8 s of CPU, ~2.2 s the first time in a process,
#: as much as a short trial's training on a small machine
REPORT_EVERY_S = 30.0


def refresh_report(run_dir: Path, echo: Echo = print) -> Path | None:
    """(Re)write ``report.html``; a report that cannot be built never stops a study."""
    try:
        from vrsearch.report.html import write_report

        return write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 — any failure of a figure is reported, not raised
        echo(f"warning: report.html not updated ({type(exc).__name__}: {str(exc)[:200]})")
        return None


def report_inputs(run_dir: Path) -> tuple[tuple[str, str], ...] | None:
    """Content hash of each of the run directory's small files (study, parquet files, Optuna's
    SQLite database) that exists: what the report is built from. By content, not time:
    recompacting rewrites the parquet files with the same bytes (at a study's end too). None
    when one cannot be read (e.g. replaced meanwhile): then it counts as changed. (An Optuna
    storage outside the run directory is not hashed; the study's end rebuilds anyway when the
    parquet files changed, and its own changes there — open proposals closed — do not show.)"""
    entries = []
    try:
        for name in SMALL_FILES:
            path = run_dir / name
            if path.exists():
                with path.open("rb") as f:
                    entries.append((name, hashlib.file_digest(f, "blake2b").hexdigest()))
    except OSError:
        return None
    return tuple(entries)


class ReportRefresh:
    """When the driver rebuilds ``report.html``: after the study's first finished trial (a
    report to open early), then at most every ``every`` seconds, and when the study ends or
    stops (``final``) — never while none of the files it is built from changed since."""

    def __init__(self, run_dir: Path, echo: Echo = print, every: float = REPORT_EVERY_S):
        self.run_dir, self.echo, self.every = Path(run_dir), echo, every
        self.last: float | None = None
        self.inputs: tuple | None = None

    def __call__(self, *, final: bool = False) -> Path | None:
        if not final and self.last is not None and time.monotonic() - self.last < self.every:
            return None
        inputs = report_inputs(self.run_dir)
        if inputs is not None and inputs == self.inputs and (self.run_dir / REPORT_FILE).exists():
            return self.run_dir / REPORT_FILE
        self.last = time.monotonic()
        path = refresh_report(self.run_dir, self.echo)
        self.inputs = inputs if path is not None else None
        return path


class ResultsCallback(Callback):
    """After every finished trial, record its fate, recompact the parquet files, refresh the
    report (:class:`ReportRefresh`: the first time, then at most every ``REPORT_EVERY_S``) and
    (with ``storage``, a URI) mirror the run dir there; a failed push is one warning line and
    is retried after the next trial."""

    def __init__(
        self,
        run_dir: Path,
        total: int,
        echo: Echo = print,
        storage: str | None = None,
        report: ReportRefresh | None = None,
    ):
        self.run_dir, self.total, self.echo, self.storage = Path(run_dir), total, echo, storage
        self.done = self.failed = self.stopped = 0
        self.best = -math.inf
        self.t0 = time.perf_counter()
        self.running: set[str] = set()
        self.report = report or ReportRefresh(self.run_dir, echo)

    def _finished(self, trial: Trial, status: str, error: str = "") -> None:
        self.running.discard(trial.trial_id)
        d = fragments.trial_dir(self.run_dir, trial.trial_id)
        result = fragments.read_json(d / RESULT_FILE)
        if result is None:
            fragments.record_status(self.run_dir, trial.trial_id, status, error)
        else:
            status = result["status"]
        trials: pd.DataFrame | None
        try:
            trials, _, _ = fragments.compact(self.run_dir)
        except VrsearchError as exc:  # e.g. a full disk: the fragments hold everything, the study goes on
            self.echo(f"warning: {exc}; retried after the next trial")
            trials = None
        else:
            self.report()
        if getattr(self, "storage", None):  # a callback pickled before storage existed has none
            push_results(self.run_dir, self.storage, self.echo)
        self.done += 1
        self.failed += status == "failed"
        self.stopped += status == "stopped_early"
        row = trials[trials.trial_id == trial.trial_id] if trials is not None else None
        score = fragments.finite(row.best_val_dice.iloc[0]) if row is not None and len(row) else None
        if score is not None:
            self.best = max(self.best, score)
        self.echo(self.line(trial.trial_id, status, score, result.get("error", "") if result else error))

    def line(self, trial_id: str, status: str, score: float | None, error: str) -> str:
        """The progress line of a finished trial, which it names by group (and seed)."""
        name = started_trial_names(self.run_dir).get(trial_id, trial_id)
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else math.nan
        best = f"{self.best:.4f}" if self.best > -math.inf else "n/a"
        why = f" ({error[:120]})" if error else ""
        val = f"{score:.4f}" if score is not None else "n/a"
        return (
            f"[{self.done}/{self.total}] {name} {status}{why}: best val dice {val} | "
            f"running {len(self.running)}, failed {self.failed}, stopped early {self.stopped}, "
            f"best so far {best}, elapsed {elapsed:.0f}s, ETA {eta:.0f}s"
        )

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._finished(trial, "stopped_early")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        err = ""
        path = getattr(trial, "error_file", None) or ""
        if path and Path(path).exists():
            lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
            err = lines[-1] if lines else ""
        self._finished(trial, "failed", err or fragments.RAISED)
