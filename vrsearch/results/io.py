"""The results contract (DESIGN.md, "Results"): parquet files in a run dir.

* ``study.yaml`` — the resolved study;
* ``trials.parquet`` — one row per trial: ids, method, flattened config
  (``config.<path>`` columns), seed, labeled ratio, status, error, best and
  final metrics, iterations, wall time;
* ``history.parquet`` — one row per (trial, iteration): every loss term
  (``term_*``), ``loss``, ``lr``, ``val_*`` at evaluation points;
* ``cases.parquet`` — one row per (trial, split, case, class): dice,
  jaccard, hd95_mm, asd_mm, label_empty, pred_empty.

Every file is written atomically (temporary file + rename), so a reader —
even of a study that is still running — sees a complete old or new file.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vrsearch.errors import VrsearchError
from vrsearch.results import faults

STUDY_FILE = "study.yaml"
TRIALS_FILE = "trials.parquet"
HISTORY_FILE = "history.parquet"
CASES_FILE = "cases.parquet"

CASE_COLUMNS = [
    "trial_id", "split", "iteration", "case_id", "class_index", "class_name",
    "dice", "jaccard", "hd95_mm", "asd_mm", "label_empty", "pred_empty",
]
TRIAL_COLUMNS = [
    "trial_id", "study", "method", "status", "error", "seed", "labeled_ratio", "split_seed",
    "iterations", "best_iteration", "best_val_dice", "final_val_dice",
    "test_dice", "test_jaccard", "test_hd95_mm", "test_asd_mm", "wall_time_s",
    "n_labeled", "n_unlabeled", "n_val", "n_test", "config_json",
    "arm", "group", "config_hash", "group_hash", "device", "device_hours",
]
_TEXT_COLUMNS = ("trial_id", "error", "status", "arm", "group", "config_hash", "group_hash", "device")
HISTORY_COLUMNS = ["trial_id", "iteration"]


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _full_disk(path: Path, exc: OSError) -> VrsearchError:
    return VrsearchError(f"{path}: {exc.strerror or 'no space left on device'} while writing it; the previous "
                         f"{path.name} is intact; free space, then 'vrsearch resume' the run")


def _write_atomic(path: Path, write, fault_point: str) -> None:
    """``write(tmp)`` then rename over ``path``: readers see the old file or the new one,
    never a part; a full disk is a one-line error and leaves the previous file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        write(tmp)
        faults.point(fault_point)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno in FULL:
            raise _full_disk(path, exc) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), "write")


def write_frame(path: Path, frame: pd.DataFrame, fault_point: str = "write") -> None:
    """Write a DataFrame as parquet atomically; ``fault_point`` names it for fault injection."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    _write_atomic(path, lambda tmp: pq.write_table(table, tmp), fault_point)


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows → DataFrame with ``columns`` first (present even when empty)."""
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = pd.Series(dtype="object" if c in _TEXT_COLUMNS else "float64")
    return df[columns + [c for c in df.columns if c not in columns]]


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict → ``{"a.b.c": value}``; lists become JSON strings."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    key = prefix[:-1]
    out[key] = json.dumps(data) if isinstance(data, (list, tuple)) else data
    return out


@dataclass
class Results:
    """A run directory's tables as pandas frames (empty frames if absent)."""

    trials: pd.DataFrame
    history: pd.DataFrame
    cases: pd.DataFrame
    study: dict[str, Any]


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if path.exists():
        return pd.read_parquet(path)
    return frame([], columns)


def _load_uri(uri: str) -> Results:
    """Results read through a pyarrow filesystem (``s3://``, ``gs://``, ``file://``), no local copy."""
    import pyarrow.fs as pafs
    import yaml

    from vrsearch.errors import VrsearchError
    from vrsearch.results import storage

    fs, base = storage.parse(uri)
    names = (STUDY_FILE, TRIALS_FILE, HISTORY_FILE, CASES_FILE)
    try:
        infos = fs.get_file_info([base, *(f"{base}/{n}" for n in names)])
        if infos[0].type == pafs.FileType.NotFound:
            raise VrsearchError(f"{uri}: no such run directory")
        present = {n for n, info in zip(names, infos[1:]) if info.type == pafs.FileType.File}
        if not present & {STUDY_FILE, TRIALS_FILE}:
            raise VrsearchError(f"{uri}: not a vrsearch run directory (no {STUDY_FILE} or {TRIALS_FILE})")
        study = {}
        if STUDY_FILE in present:
            with fs.open_input_stream(f"{base}/{STUDY_FILE}", compression=None) as f:
                study = yaml.safe_load(f.read().decode("utf-8")) or {}

        def read(name: str, columns: list[str]) -> pd.DataFrame:
            if name in present:
                return pd.read_parquet(f"{base}/{name}", filesystem=fs)
            return frame([], columns)

        return Results(trials=read(TRIALS_FILE, TRIAL_COLUMNS), history=read(HISTORY_FILE, HISTORY_COLUMNS),
                       cases=read(CASES_FILE, CASE_COLUMNS), study=study)
    except VrsearchError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, permissions, a missing bucket
        raise VrsearchError(f"cannot read {uri}: {' '.join(str(exc).split())[:300]}") from None


def require_run_dir(path: Path, name: str | None = None) -> None:
    """Refuse (one line) a folder that is not a vrsearch run directory: no ``study.yaml``
    and no ``trials.parquet``. ``name``: how to call it in the message (e.g. its URI)."""
    from vrsearch.errors import VrsearchError

    name = name or str(path)
    if not path.is_dir():
        raise VrsearchError(f"{name}: no such run directory")
    if not ((path / STUDY_FILE).is_file() or (path / TRIALS_FILE).is_file()):
        raise VrsearchError(f"{name}: not a vrsearch run directory (no {STUDY_FILE} or {TRIALS_FILE}); "
                            "pass the output.dir of a study started with 'vrsearch run' or 'vrsearch train'")


def load(run_dir: Path | str) -> Results:
    """Load a (finished or running) study's results: a run directory, or a storage
    URI (``s3://bucket/prefix/<study>``, ``gs://...``, ``file:///...``) read in place."""
    import yaml

    from vrsearch.results.storage import is_uri

    if is_uri(run_dir):
        return _load_uri(run_dir)
    run_dir = Path(run_dir)
    require_run_dir(run_dir)
    study_path = run_dir / STUDY_FILE
    study = yaml.safe_load(study_path.read_text()) if study_path.exists() else {}
    return Results(
        trials=_read(run_dir / TRIALS_FILE, TRIAL_COLUMNS),
        history=_read(run_dir / HISTORY_FILE, HISTORY_COLUMNS),
        cases=_read(run_dir / CASES_FILE, CASE_COLUMNS),
        study=study or {},
    )
