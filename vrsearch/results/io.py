"""The results contract (DESIGN.md, "Results"): parquet files in a run dir.

* ``study.yaml`` — the resolved study;
* ``trials.parquet`` — one row per trial: ids, method, flattened config
  (``config.<path>`` columns), seed, labeled ratio, status, error, best and
  final metrics, iterations, wall time, ``metric_conventions`` (JSON of
  the conventions its metrics were computed with);
* ``history.parquet`` — one row per (trial, iteration): every loss term
  (``term_*``), ``loss``, ``lr``, ``val_*`` at evaluation points;
* ``cases.parquet`` — one row per (trial, split, case, class): dice,
  jaccard, hd95_mm, assd_mm, label_empty, pred_empty; its parquet schema
  metadata :data:`CONVENTIONS_KEY` records the metric conventions the rows
  were computed with (:func:`vrsearch.engine.metrics.conventions`).

Runs written before ``asd_mm`` was renamed ``assd_mm`` (the symmetric,
pooled ASSD it always was) are read with the new names (:data:`RENAMED`);
their conventions are :data:`LEGACY_CONVENTIONS`.

Every file is written atomically (temporary file + rename), so a reader —
even of a study that is still running — sees a complete old or new file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from vrsearch.errors import VrsearchError, flat
from vrsearch.results import schema
from vrsearch.results.atomic import write_atomic
from vrsearch.results.atomic import write_text_atomic as write_text_atomic  # io.write_text_atomic
from vrsearch.results.rundir import CASES_FILE, HISTORY_FILE, STUDY_FILE, TRIALS_FILE, RunDir

CASE_COLUMNS = [
    "trial_id",
    "split",
    "iteration",
    "case_id",
    "class_index",
    "class_name",
    "dice",
    "jaccard",
    "hd95_mm",
    "assd_mm",
    "label_empty",
    "pred_empty",
]
TRIAL_COLUMNS = [
    "trial_id",
    "study",
    "method",
    "status",
    "error",
    "seed",
    "labeled_ratio",
    "split_seed",
    "iterations",
    "resumed_from",
    "best_iteration",
    "best_val_dice",
    "final_val_dice",
    "test_dice",
    "test_jaccard",
    "test_hd95_mm",
    "test_assd_mm",
    "wall_time_s",
    "n_labeled",
    "n_unlabeled",
    "n_val",
    "n_test",
    "config_json",
    "arm",
    "group",
    "config_hash",
    "group_hash",
    "device",
    "device_hours",
    "kernels",
    "metric_conventions",
    "node_id",
    "worker_nodes",
]
HISTORY_COLUMNS = ["trial_id", "iteration"]
#: old column name → new, in every table (``asd_mm`` was always the symmetric pooled ASSD)
RENAMED = {"asd_mm": "assd_mm", "test_asd_mm": "test_assd_mm", "val_asd_mm": "val_assd_mm"}
#: parquet schema metadata key of cases.parquet: JSON of the metric conventions
CONVENTIONS_KEY = "vrsearch.metrics"
#: the conventions of runs written before they were recorded
LEGACY_CONVENTIONS = {
    "version": 1,
    "both_empty": "one",
    "both_empty_rule": "Dice = Jaccard = 1 (in means), distances NaN",
    "missed_or_spurious": "Dice = Jaccard = 0; HD95 = ASSD = NaN (left out of means)",
}


def write_frame(
    path: Path, frame: pd.DataFrame, fault_point: str = "write", metadata: dict[str, Any] | None = None
) -> None:
    """Write a DataFrame as parquet atomically, typed by its file name
    (:func:`vrsearch.results.schema.to_table`); ``fault_point`` names it for fault
    injection; ``metadata`` entries join the parquet schema metadata (values as JSON)."""
    table = schema.to_table(frame, Path(path).name)
    if metadata:
        extra = {k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **extra})
    write_atomic(path, lambda tmp: pq.write_table(table, tmp), fault_point)


def trial_conventions(row: dict | pd.Series) -> dict:
    """The metric conventions a trial row records (``metric_conventions`` JSON; {} if none)."""
    text = row.get("metric_conventions")
    try:
        return json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}


def merge_conventions(items: Iterable[dict]) -> dict:
    """The conventions shared by ``items`` (dicts; empty ones ignored), or
    ``{"mixed": [...]}`` listing each distinct one if trials differ."""
    distinct: list[dict] = []
    for c in items:
        if c and c not in distinct:
            distinct.append(c)
    if len(distinct) <= 1:
        return distinct[0] if distinct else {}
    return {"mixed": distinct}


def read_conventions(path: str | Path, filesystem: Any = None) -> dict:
    """The conventions of a cases parquet file: its schema metadata, else
    :data:`LEGACY_CONVENTIONS` if it has the old ``asd_mm`` column, else {}."""
    try:
        found = pq.read_schema(str(path), filesystem=filesystem)
    except (OSError, ValueError, pa.ArrowException):
        return {}
    raw = (found.metadata or {}).get(CONVENTIONS_KEY.encode())
    if raw is not None:
        try:
            return json.loads(raw)
        except ValueError:
            return {}
    return dict(LEGACY_CONVENTIONS) if "asd_mm" in found.names else {}


def renamed(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with old column names (:data:`RENAMED`) replaced; a column present under
    both names keeps the new one, filled from the old where missing."""
    out = df
    for old, new in RENAMED.items():
        if old not in out.columns:
            continue
        if new in out.columns:
            out = out.assign(**{new: out[new].where(out[new].notna(), out[old])}).drop(columns=old)
        else:
            out = out.rename(columns={old: new})
    return out


def frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    """Rows → DataFrame with ``columns`` first (present even when empty)."""
    df = pd.DataFrame(rows)
    for c in columns:
        if c not in df.columns:
            df[c] = pd.Series(dtype="object" if c in schema.TEXT_COLUMNS else "float64")
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
    #: the metric conventions of ``cases`` (:func:`read_conventions`, else the trials')
    conventions: dict[str, Any] = field(default_factory=dict)


def _results(
    trials: pd.DataFrame, history: pd.DataFrame, cases: pd.DataFrame, study: dict, conventions: dict
) -> Results:
    """Results with today's column names; conventions from cases.parquet, else the trial rows."""
    trials, history, cases = renamed(trials), renamed(history), renamed(cases)
    if not conventions and "metric_conventions" in trials.columns:
        conventions = merge_conventions(trial_conventions(r) for _, r in trials.iterrows())
    return Results(trials=trials, history=history, cases=cases, study=study, conventions=conventions)


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if path.exists():
        return schema.conform(pd.read_parquet(path), path.name)
    return frame([], columns)


def _load_uri(uri: str) -> Results:
    """Results read through a pyarrow filesystem (``s3://``, ``gs://``, ``file://``), no local copy."""
    import pyarrow.fs as pafs
    import yaml

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
        study: dict[str, Any] = {}
        if STUDY_FILE in present:
            with fs.open_input_stream(f"{base}/{STUDY_FILE}", compression=None) as f:
                study = yaml.safe_load(f.read().decode("utf-8")) or {}

        def read(name: str, columns: list[str]) -> pd.DataFrame:
            if name in present:
                return schema.conform(pd.read_parquet(f"{base}/{name}", filesystem=fs), name)
            return frame([], columns)

        conventions = read_conventions(f"{base}/{CASES_FILE}", fs) if CASES_FILE in present else {}
        return _results(
            read(TRIALS_FILE, TRIAL_COLUMNS),
            read(HISTORY_FILE, HISTORY_COLUMNS),
            read(CASES_FILE, CASE_COLUMNS),
            study,
            conventions,
        )
    except VrsearchError:
        raise
    except Exception as exc:  # noqa: BLE001 - network, permissions, a missing bucket
        raise VrsearchError(f"cannot read {uri}: {flat(exc, 300)}") from None


def require_run_dir(path: Path, name: str | None = None) -> None:
    """Refuse (one line) a folder that is not a vrsearch run directory: no ``study.yaml``
    and no ``trials.parquet``. ``name``: how to call it in the message (e.g. its URI)."""
    name = name or str(path)
    if not path.is_dir():
        raise VrsearchError(f"{name}: no such run directory")
    if not RunDir(path).is_run():
        raise VrsearchError(
            f"{name}: not a vrsearch run directory (no {STUDY_FILE} or {TRIALS_FILE}); "
            "pass the output.dir of a study started with 'vrsearch run' or 'vrsearch train'"
        )


def load(run_dir: Path | str) -> Results:
    """Load a (finished or running) study's results: a run directory, or a storage
    URI (``s3://bucket/prefix/<study>``, ``gs://...``, ``file:///...``) read in place."""
    import yaml

    from vrsearch.results.storage import is_uri

    if isinstance(run_dir, str) and is_uri(run_dir):
        return _load_uri(run_dir)
    run_dir = Path(run_dir)
    require_run_dir(run_dir)
    study_path = run_dir / STUDY_FILE
    study = yaml.safe_load(study_path.read_text()) if study_path.exists() else {}
    cases_path = run_dir / CASES_FILE
    return _results(
        _read(run_dir / TRIALS_FILE, TRIAL_COLUMNS),
        _read(run_dir / HISTORY_FILE, HISTORY_COLUMNS),
        _read(cases_path, CASE_COLUMNS),
        study or {},
        read_conventions(cases_path) if cases_path.exists() else {},
    )
