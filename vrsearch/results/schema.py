"""Typed parquet schemas of the three results files (``trials``, ``history``, ``cases``;
top level and per-trial fragments alike: the file name says which).

Every column the contract names (:mod:`vrsearch.results.io`) is written with its declared
type whatever pandas inferred: a text column stays text when all its values are missing
(pandas alone writes an all-NaN column as ``double``), integers stay ``int64`` with nulls,
flags ``bool``. In ``history`` every other column (``loss``, ``lr``, ``time_s``,
``term_*``, ``val_*``) is a ``double``. Other columns (``config.<knob>``, which can be
text, numbers or flags) keep the type pyarrow infers.

Reading, :func:`conform` turns a text column that an older run wrote as all-NaN
``double`` back into text, so old run directories load with the same dtypes as new ones.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from vrsearch.results.rundir import CASES_FILE, HISTORY_FILE, TRIALS_FILE

TEXT, INT, FLOAT, FLAG = pa.large_string(), pa.int64(), pa.float64(), pa.bool_()


def _fields(text: str = "", ints: str = "", floats: str = "", flags: str = "") -> dict[str, pa.DataType]:
    out: dict[str, pa.DataType] = {}
    for names, kind in ((text, TEXT), (ints, INT), (floats, FLOAT), (flags, FLAG)):
        out.update(dict.fromkeys(names.split(), kind))
    return out


#: column → type of each file (by file name)
SCHEMAS: dict[str, dict[str, pa.DataType]] = {
    TRIALS_FILE: _fields(
        text="trial_id study method status error config_json arm group config_hash group_hash device "
        "kernels metric_conventions cell node_id worker_nodes",
        ints="seed split_seed iterations resumed_from best_iteration n_labeled n_unlabeled n_val n_test",
        floats="labeled_ratio best_val_dice final_val_dice test_dice test_jaccard test_hd95_mm test_assd_mm "
        "wall_time_s device_hours",
    ),
    HISTORY_FILE: _fields(text="trial_id", ints="iteration"),
    CASES_FILE: _fields(
        text="trial_id split case_id class_name",
        ints="iteration class_index",
        floats="dice jaccard hd95_mm assd_mm",
        flags="label_empty pred_empty",
    ),
}
#: the columns that are text in any of the files
TEXT_COLUMNS = frozenset(c for columns in SCHEMAS.values() for c, kind in columns.items() if kind == TEXT)
#: the type of a column a file's schema does not name (None: as pyarrow infers it)
OTHERS: dict[str, pa.DataType | None] = {TRIALS_FILE: None, HISTORY_FILE: FLOAT, CASES_FILE: None}


def _as_text(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    return value if isinstance(value, str) else str(value)


def _text(values: pd.Series) -> pd.Series:
    """Values as str, missing ones as None (pyarrow refuses a number in a text column)."""
    return values.astype(object).map(_as_text)


def _numeric_or_null(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind) or pa.types.is_boolean(kind)
    )


def to_table(frame: pd.DataFrame, name: str) -> pa.Table:
    """``frame`` as an arrow table with the declared types of file ``name`` (any other
    file name: types as inferred)."""
    declared, others = SCHEMAS.get(name, {}), OTHERS.get(name)
    frame = frame.assign(**{c: _text(frame[c]) for c, kind in declared.items() if kind == TEXT and c in frame.columns})
    inferred = pa.Schema.from_pandas(frame, preserve_index=False)
    fields = []
    for field in inferred:
        kind = declared.get(field.name)
        if kind is None and others is not None and _numeric_or_null(field.type):
            kind = others
        fields.append(field.with_type(kind) if kind is not None else field)
    return pa.Table.from_pandas(frame, schema=pa.schema(fields, metadata=inferred.metadata), preserve_index=False)


def conform(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A frame read from file ``name`` with its text columns as text: an older file's
    all-missing text column (written as ``double`` or ``null``) becomes ``str``."""
    fix = [
        c
        for c, kind in SCHEMAS.get(name, {}).items()
        if kind == TEXT and c in frame.columns and not pd.api.types.is_string_dtype(frame[c]) and frame[c].isna().all()
    ]
    return frame.assign(**{c: frame[c].astype("str") for c in fix}) if fix else frame
