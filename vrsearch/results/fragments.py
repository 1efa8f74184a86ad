"""Per-trial result fragments and their compaction into the run's parquet files.

While a study runs, each trial owns ``trials/<trial_id>/``:

* ``meta.json`` — written when the trial starts (cell, seed, arm, config);
* ``history.parquet`` — rewritten atomically at every report;
* ``result.json`` + ``cases.parquet`` — written when the trial ends on its own
  (``completed`` or ``failed``: e.g. a NaN loss).

A trial without ``result.json`` that the scheduler ended is ``stopped_early``;
one that crashed is ``failed`` with the error the orchestrator recorded in
``status.json``. :func:`compact` rebuilds the top-level ``trials.parquet``,
``history.parquet`` and ``cases.parquet`` from the fragments (atomically), so
it can run after every finished trial and again after a resume.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from vrsearch.errors import VrsearchError, flat
from vrsearch.results import io
from vrsearch.results.rundir import FRAGMENTS_DIR, META_FILE, RESULT_FILE, STATUS_FILE

TRIALS_DIR = FRAGMENTS_DIR
#: the statuses of a trial that ended (a ``running`` one has not)
FINISHED = ("completed", "failed", "stopped_early")
#: the error of a failed trial whose own message could not be read
RAISED = "trial raised an error"
#: meta.json entries that are not trial-row columns (``config`` is flattened instead)
META_ONLY = ("config", "resources", "process")


def trial_dir(run_dir: Path, trial_id: str) -> Path:
    return Path(run_dir) / TRIALS_DIR / trial_id


def write_json(path: Path, data: dict) -> None:
    io.write_text_atomic(path, json.dumps(data, indent=1, default=str, allow_nan=True))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_history(run_dir: Path, trial_id: str, rows: list[dict]) -> None:
    io.write_frame(trial_dir(run_dir, trial_id) / io.HISTORY_FILE, io.frame(rows, io.HISTORY_COLUMNS))


def write_final(run_dir: Path, trial_id: str, trial: dict, history: list[dict], cases: list[dict]) -> None:
    """A trial ended on its own: history, cases, then result.json (last: it marks completion)."""
    d = trial_dir(run_dir, trial_id)
    write_history(run_dir, trial_id, history)
    write_cases(d / io.CASES_FILE, io.frame(cases, io.CASE_COLUMNS), io.trial_conventions(trial))
    write_json(d / RESULT_FILE, trial)


def write_cases(path: Path, cases: pd.DataFrame, conventions: dict) -> None:
    """cases.parquet with its metric conventions in the schema metadata (:data:`io.CONVENTIONS_KEY`)."""
    io.write_frame(path, cases, metadata={io.CONVENTIONS_KEY: conventions} if conventions else None)


def record_status(run_dir: Path, trial_id: str, status: str, error: str = "") -> None:
    """What the orchestrator saw (``stopped_early`` or ``failed``) for a trial without result.json."""
    write_json(trial_dir(run_dir, trial_id) / STATUS_FILE, {"status": status, "error": error})


def ended(d: Path) -> dict | None:
    """How the trial whose fragments are in ``d`` ended (its result, or the status the
    orchestrator recorded), or None if it has not."""
    end = read_json(d / RESULT_FILE) or read_json(d / STATUS_FILE)
    return end if end and end.get("status") in FINISHED else None


def device_hours_row(meta: dict, wall_time_s: float) -> dict[str, Any]:
    """GPU-hours if the trial had GPUs, else CPU-core-hours, from ``meta["resources"]``
    (wall time × workers × GPUs or CPUs per worker)."""
    res = meta.get("resources") or {}
    if not res:
        return {}
    gpus = float(res.get("gpus_per_worker", 0) or 0)
    per_worker, kind = (gpus, "gpu") if gpus > 0 else (float(res.get("cpus_per_worker", 1)), "cpu")
    return {"device": kind, "device_hours": wall_time_s / 3600 * int(res.get("workers_per_trial", 1)) * per_worker}


def _row_without_result(d: Path, meta: dict, history: pd.DataFrame) -> dict[str, Any]:
    status = read_json(d / STATUS_FILE) or {"status": "running", "error": ""}
    row: dict[str, Any] = {"trial_id": d.name, **{k: v for k, v in meta.items() if k not in META_ONLY}}
    row.update(status)
    if "val_dice" in history:
        evals = history.dropna(subset=["val_dice"])
        trained = evals[evals.iteration > 0]
        if len(trained):
            best = trained.loc[trained.val_dice.idxmax()]
            row.update(
                best_val_dice=float(best.val_dice),
                best_iteration=int(best.iteration),
                final_val_dice=float(trained.val_dice.iloc[-1]),
            )
    row["iterations"] = int(history.iteration.max()) if len(history) else 0
    if len(history) and "time_s" in history:
        row["wall_time_s"] = float(history.time_s.max())
        row.update(device_hours_row(meta, row["wall_time_s"]))
    row.update({f"config.{k}": v for k, v in io.flatten(meta.get("config", {})).items()})
    return row


def read_frame(path: Path) -> pd.DataFrame:
    """A fragment's parquet file (its columns under their current names). One that cannot be
    read — e.g. left empty by a host that lost power before the disk had it — is one line
    naming it and what to do: the trial's folder removed, a resume runs it again."""
    try:
        return io.renamed(pd.read_parquet(path))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise VrsearchError(
            f"{path}: not a readable parquet file ({flat(exc, 160)}); "
            f"delete {path.parent} and resume to run that trial again"
        ) from None


def compact(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Rebuild and atomically write the three top-level parquet files."""
    run_dir = Path(run_dir)
    rows, histories, cases, conventions = [], [], [], []
    for d in sorted((run_dir / TRIALS_DIR).glob("*/")):
        meta = read_json(d / META_FILE)
        if meta is None:
            continue
        hist = read_frame(d / io.HISTORY_FILE) if (d / io.HISTORY_FILE).exists() else pd.DataFrame()
        result = read_json(d / RESULT_FILE)
        if result is not None:
            row = {**result, **{k: v for k, v in meta.items() if k not in META_ONLY and k not in result}}
            if (d / io.CASES_FILE).exists():
                cases.append(read_frame(d / io.CASES_FILE))
                conventions.append(io.trial_conventions(row) or io.read_conventions(d / io.CASES_FILE))
        else:
            row = _row_without_result(d, meta, hist)
        row["cell"] = json.dumps(row.get("cell", {}), sort_keys=True, default=str)
        rows.append(row)
        if len(hist):
            histories.append(hist)
    trials = io.renamed(io.frame(rows, io.TRIAL_COLUMNS))
    history = pd.concat(histories, ignore_index=True) if histories else io.frame([], io.HISTORY_COLUMNS)
    case_df = pd.concat(cases, ignore_index=True) if cases else io.frame([], io.CASE_COLUMNS)
    for col in ("best_val_dice", "final_val_dice", "test_dice"):
        trials[col] = pd.to_numeric(trials[col], errors="coerce")
    io.write_frame(run_dir / io.TRIALS_FILE, trials)
    io.write_frame(run_dir / io.HISTORY_FILE, history, fault_point="compact")  # the driver, mid-compaction
    write_cases(run_dir / io.CASES_FILE, case_df, io.merge_conventions(conventions))
    return trials, history, case_df


def finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None
