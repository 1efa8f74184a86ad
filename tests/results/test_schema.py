"""Typed parquet schemas: declared types whatever pandas inferred, and old files still load."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vrsearch.results import io, schema


def _trial(tid: str, **extra) -> dict:
    return {
        "trial_id": tid,
        "status": "running",
        "error": None,
        "seed": 0,
        "iterations": 5,
        "best_iteration": math.nan,
        "best_val_dice": math.nan,
        "config.method.params.sampler": "ns",
        **extra,
    }


def test_all_missing_text_columns_stay_text(tmp_path):
    trials = io.frame([_trial("a"), _trial("b")], io.TRIAL_COLUMNS)
    trials["arm"] = math.nan  # what a frame of running trials can hold: floats where text belongs
    io.write_frame(tmp_path / io.TRIALS_FILE, trials)
    types = {f.name: f.type for f in pq.read_schema(tmp_path / io.TRIALS_FILE)}
    for column in ("error", "arm", "group", "device", "config_hash", "metric_conventions"):
        assert types[column] == pa.large_string(), column
    assert types["seed"] == types["best_iteration"] == pa.int64() and types["best_val_dice"] == pa.float64()
    assert types["config.method.params.sampler"] == pa.large_string()
    back = pd.read_parquet(tmp_path / io.TRIALS_FILE)
    assert pd.api.types.is_string_dtype(back["arm"]) and back["arm"].isna().all()
    assert back["seed"].tolist() == [0, 0] and back["best_iteration"].isna().all()


def test_numbers_in_a_text_column_are_written_as_text(tmp_path):
    trials = io.frame([_trial("a", group=3), _trial("b", group="g")], io.TRIAL_COLUMNS)
    io.write_frame(tmp_path / io.TRIALS_FILE, trials)
    assert pd.read_parquet(tmp_path / io.TRIALS_FILE)["group"].tolist() == ["3", "g"]


def test_history_and_cases_types(tmp_path):
    history = pd.DataFrame(
        {
            "trial_id": ["a", "a"],
            "iteration": [0, 5],
            "val_dice": [None, None],
            "term_sup": [1, 2],
            "loss": [0.5, np.nan],
        }
    )
    io.write_frame(tmp_path / io.HISTORY_FILE, history)
    types = {f.name: f.type for f in pq.read_schema(tmp_path / io.HISTORY_FILE)}
    assert types == {
        "trial_id": pa.large_string(),
        "iteration": pa.int64(),
        "val_dice": pa.float64(),
        "term_sup": pa.float64(),
        "loss": pa.float64(),
    }
    cases = io.frame(
        [
            {
                "trial_id": "a",
                "split": "test",
                "iteration": 5.0,
                "case_id": 7,
                "class_index": 1,
                "class_name": "liver",
                "dice": 1,
                "label_empty": None,
                "pred_empty": False,
            }
        ],
        io.CASE_COLUMNS,
    )
    io.write_frame(tmp_path / io.CASES_FILE, cases)
    types = {f.name: f.type for f in pq.read_schema(tmp_path / io.CASES_FILE)}
    assert types["case_id"] == pa.large_string() and types["iteration"] == pa.int64()
    assert types["dice"] == types["hd95_mm"] == pa.float64() and types["label_empty"] == pa.bool_()


def test_an_old_run_dir_with_float_text_columns_loads_as_text(tmp_path):
    """A run written before the schemas: pandas stored the all-NaN ``error`` and ``arm`` as double."""
    trials = pd.DataFrame(
        {"trial_id": ["a"], "status": ["completed"], "error": [np.nan], "arm": [np.nan], "best_val_dice": [0.5]}
    )
    pq.write_table(pa.Table.from_pandas(trials, preserve_index=False), tmp_path / io.TRIALS_FILE)
    assert pq.read_schema(tmp_path / io.TRIALS_FILE).field("error").type == pa.float64()
    loaded = io.load(tmp_path).trials
    assert pd.api.types.is_string_dtype(loaded["error"]) and pd.api.types.is_string_dtype(loaded["arm"])
    assert loaded["error"].isna().all() and loaded["best_val_dice"].tolist() == [0.5]


def test_a_wrong_type_is_refused_not_coerced():
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        schema.to_table(pd.DataFrame({"trial_id": ["a"], "seed": [1.5]}), io.TRIALS_FILE)
