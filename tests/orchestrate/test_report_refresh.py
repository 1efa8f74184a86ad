"""When a study's driver rebuilds report.html (:class:`ReportRefresh`): after the first finished
trial, then at most every ``every`` seconds, and at the end; never when none of the files the
report reads changed since it was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from vrsearch.orchestrate import callbacks
from vrsearch.orchestrate.callbacks import ReportRefresh, report_inputs


@pytest.fixture
def builds(monkeypatch, tmp_path):
    """A run directory whose report 'build' writes report.html and is counted."""
    count: list[int] = []

    def build(run_dir: Path, echo=print) -> Path:
        count.append(1)
        (run_dir / "report.html").write_text(f"<html>{len(count)}</html>")
        return run_dir / "report.html"

    monkeypatch.setattr(callbacks, "refresh_report", build)
    (tmp_path / "trials.parquet").write_bytes(b"1")
    return count


def touch(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def test_first_trial_then_at_most_every_interval(builds, tmp_path):
    refresh = ReportRefresh(tmp_path, every=3600)
    assert refresh() == tmp_path / "report.html" and len(builds) == 1  # the first finished trial
    touch(tmp_path / "trials.parquet", b"12")
    assert refresh() is None and len(builds) == 1  # within the interval: not rebuilt
    assert refresh(final=True) == tmp_path / "report.html" and len(builds) == 2  # the end: rebuilt
    assert (tmp_path / "report.html").read_text() == "<html>2</html>"


def test_nothing_changed_nothing_rebuilt(builds, tmp_path):
    refresh = ReportRefresh(tmp_path, every=0)
    refresh()
    assert refresh() == tmp_path / "report.html" and refresh(final=True) is not None
    assert len(builds) == 1
    touch(tmp_path / "optuna.db", b"x")  # a new input file
    refresh()
    touch(tmp_path / "history.parquet", b"y")
    refresh(final=True)
    assert len(builds) == 3
    (tmp_path / "report.html").unlink()  # a report removed by hand is written again
    refresh()
    assert len(builds) == 4


def test_a_failed_build_is_tried_again(monkeypatch, tmp_path):
    tries: list[int] = []
    monkeypatch.setattr(callbacks, "refresh_report", lambda run_dir, echo=print: tries.append(1))
    refresh = ReportRefresh(tmp_path, every=0)
    refresh()
    refresh(final=True)
    assert len(tries) == 2


def test_the_inputs_are_the_small_files_the_report_is_built_from(tmp_path):
    (tmp_path / "trials.parquet").write_bytes(b"1")
    (tmp_path / "study.yaml").write_text("name: s")
    for other in ("report.html", "table_val.md", ".trials.parquet.123.tmp", "driver-error.log"):
        (tmp_path / other).write_text("x")  # written beside them by the report, `table`, a failure
    (tmp_path / "trials").mkdir()
    assert [name for name, _ in report_inputs(tmp_path)] == ["study.yaml", "trials.parquet"]


def test_an_unreadable_input_counts_as_changed(builds, tmp_path, monkeypatch):
    """A file replaced while it is hashed must not stop the study: the report is rebuilt."""
    refresh = ReportRefresh(tmp_path, every=0)
    refresh()

    def gone(*args, **kwargs):
        raise OSError("replaced meanwhile")

    monkeypatch.setattr(callbacks.hashlib, "file_digest", gone)
    assert report_inputs(tmp_path) is None
    refresh()
    assert len(builds) == 2


def test_a_file_rewritten_with_the_same_bytes_is_no_change(builds, tmp_path):
    """Recompacting rewrites the parquet files (a study's end does it once more)."""
    refresh = ReportRefresh(tmp_path, every=0)
    refresh()
    touch(tmp_path / "trials.parquet", b"1")
    refresh(final=True)
    assert len(builds) == 1
