"""Commands that read a run directory, pointed at something that is not one: one line,
exit 2, nothing written (a report or table file in a folder of study files, say)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.corpus._util import cli_in_process, snapshot
from tests.e2e.test_cli import assert_one_line_error

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def _folder_of_studies(tmp: Path) -> Path:
    target = tmp / "studies"
    shutil.copytree(STUDIES, target)
    return target


def _empty(tmp: Path) -> Path:
    (tmp / "empty").mkdir()
    return tmp / "empty"


def _uri_of_studies(tmp: Path) -> str:
    return f"file://{_folder_of_studies(tmp)}"


@pytest.mark.parametrize("command", ["report", "table"])
@pytest.mark.parametrize(
    ("make", "expect"),
    [
        (_folder_of_studies, "not a vrsearch run directory"),
        (_empty, "not a vrsearch run directory"),
        (lambda tmp: tmp / "missing", "no such run directory"),
        (_uri_of_studies, "not a vrsearch run directory"),
    ],
    ids=["studies-folder", "empty", "missing", "uri-of-studies-folder"],
)
def test_a_folder_that_is_not_a_run_is_refused_and_nothing_written(tmp_path, monkeypatch, command, make, expect):
    target = make(tmp_path)
    monkeypatch.chdir(tmp_path)  # a URI's report/table would land in the working directory
    before = snapshot(tmp_path)
    assert_one_line_error(cli_in_process(command, target), expect)
    assert snapshot(tmp_path) == before
