"""The results carry their metric conventions, and runs written before ``asd_mm`` became
``assd_mm`` read with today's names."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from vrsearch.engine.metrics import conventions
from vrsearch.results import fragments, io


def _cases(tid: str, distance: str) -> list[dict]:
    return [
        {
            "trial_id": tid,
            "split": "test",
            "iteration": 3,
            "case_id": f"c{c}",
            "class_index": 1,
            "class_name": "liver",
            "dice": 0.5,
            "jaccard": 0.3,
            "hd95_mm": 4.0,
            distance: 1.0 + c,
            "label_empty": False,
            "pred_empty": False,
        }
        for c in range(2)
    ]


def _trial(tid: str, both_empty: str | None, distance: str = "assd_mm") -> dict:
    row = {
        "trial_id": tid,
        "status": "completed",
        "error": "",
        "seed": 0,
        "best_val_dice": 0.4,
        f"test_{distance}": 1.5,
    }
    if both_empty is not None:
        row["metric_conventions"] = json.dumps(conventions(both_empty), sort_keys=True)
    return row


def _fragment(run, tid: str, both_empty: str | None, distance: str = "assd_mm") -> None:
    fragments.write_json(fragments.trial_dir(run, tid) / "meta.json", {"seed": 0, "method": "supervised"})
    history = [{"trial_id": tid, "iteration": 3, "val_dice": 0.4, f"val_{distance}": 2.0}]
    fragments.write_final(run, tid, _trial(tid, both_empty, distance), history, _cases(tid, distance))


def test_compacted_cases_record_the_conventions(tmp_path):
    _fragment(tmp_path, "a", "nan")
    _fragment(tmp_path, "b", "nan")
    fragments.compact(tmp_path)
    meta = pq.read_schema(tmp_path / io.CASES_FILE).metadata[io.CONVENTIONS_KEY.encode()]
    assert json.loads(meta) == conventions("nan")
    res = io.load(tmp_path)
    assert res.conventions == conventions("nan") and res.conventions["both_empty"] == "nan"
    assert "assd_mm" in res.cases.columns and "asd_mm" not in res.cases.columns


def test_trials_with_different_conventions_are_marked_mixed(tmp_path):
    _fragment(tmp_path, "a", "nan")
    _fragment(tmp_path, "b", "one")
    fragments.compact(tmp_path)
    assert io.load(tmp_path).conventions == {"mixed": [conventions("nan"), conventions("one")]}


def test_an_old_run_dir_reads_with_new_names_and_legacy_conventions(tmp_path):
    run = tmp_path / "old"
    run.mkdir()
    io.write_frame(run / io.CASES_FILE, pd.DataFrame(_cases("a", "asd_mm")))
    io.write_frame(run / io.TRIALS_FILE, pd.DataFrame([_trial("a", None, "asd_mm")]))
    io.write_frame(run / io.HISTORY_FILE, pd.DataFrame([{"trial_id": "a", "iteration": 3, "val_asd_mm": 2.0}]))
    res = io.load(run)
    assert res.cases["assd_mm"].tolist() == [1.0, 2.0] and "asd_mm" not in res.cases.columns
    assert res.trials["test_assd_mm"].tolist() == [1.5] and "test_asd_mm" not in res.trials.columns
    assert res.history["val_assd_mm"].tolist() == [2.0]
    assert res.conventions == io.LEGACY_CONVENTIONS


def test_resuming_an_old_run_merges_old_and_new_fragments(tmp_path):
    """Fragments of trials finished before the rename keep their values under the new
    name, and the run says its trials were scored under different conventions."""
    _fragment(tmp_path, "old", None, "asd_mm")
    _fragment(tmp_path, "new", "nan")
    trials, history, cases = fragments.compact(tmp_path)
    assert "asd_mm" not in cases.columns and cases["assd_mm"].notna().all()
    assert cases.groupby("trial_id")["assd_mm"].sum().to_dict() == {"new": 3.0, "old": 3.0}
    assert trials.set_index("trial_id")["test_assd_mm"].to_dict() == {"new": 1.5, "old": 1.5}
    assert "val_asd_mm" not in history.columns and history["val_assd_mm"].tolist() == [2.0, 2.0]
    assert io.load(tmp_path).conventions == {"mixed": [conventions("nan"), io.LEGACY_CONVENTIONS]}


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"asd_mm": [1.0, 2.0]}),
        pd.DataFrame({"asd_mm": [1.0, 2.0], "assd_mm": [None, 5.0]}),
    ],
)
def test_renamed_keeps_every_value(frame):
    out = io.renamed(frame)
    assert list(out.columns) == ["assd_mm"]
    assert out["assd_mm"].tolist() == ([1.0, 2.0] if len(frame.columns) == 1 else [1.0, 5.0])
