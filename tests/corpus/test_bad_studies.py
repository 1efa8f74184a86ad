"""A corpus of malformed study files: each fails with one line naming the problem and writes nothing.

Every file in ``bad_studies/`` is a small complete study with ONE defect. Its
header says what the error line must contain (``# expect: …``), whether the
defect is only detectable by ``vrsearch run`` (``# run: true``: ``validate``
accepts the file, ``run`` must refuse it before Ray starts) and what the test
prepares first (``# setup: …``). ``validate`` runs in-process (typer's
CliRunner, the same command code); ``run`` runs as the real console script. The placeholders ``DATA_ROOT``, ``OUT_DIR``
and ``TMP_DIR`` become the tiny phantom, ``<tmp>/out`` and ``<tmp>``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.corpus._util import fill, header, snapshot, validate_in_process
from tests.e2e.test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.slow

CORPUS = Path(__file__).parent / "bad_studies"
FILES = sorted(CORPUS.glob("*.yaml"))


def test_corpus_is_complete():
    """At least 30 files, every one with an expected fragment; known setups only."""
    assert len(FILES) >= 30
    for path in FILES:
        meta = header(path)
        assert meta.get("expect") and meta["expect"][0], path.name
        assert set(meta) <= {"expect", "run", "setup"}, path.name
        assert set(meta.get("setup", [])) <= {"readonly", "file", "other-study"}, path.name
        assert meta.get("run", ["true"]) == ["true"], path.name


def _setup(kind: str, tmp: Path, out: Path, data_root: Path) -> None:
    if kind == "readonly":  # output.dir under a folder nobody may write
        ro = tmp / "readonly"
        ro.mkdir()
        ro.chmod(0o500)
        if os.access(ro, os.W_OK):  # root ignores the mode: a regular file cannot hold a folder either
            ro.chmod(0o700)
            ro.rmdir()
            ro.write_text("a regular file, not a folder\n")
    elif kind == "file":
        (tmp / "afile").write_text("a regular file, not a folder\n")
    elif kind == "other-study":  # the output dir already holds a different (valid) study
        from vrsearch.study import load_study, study_to_yaml

        other = tmp / "other.yaml"
        other.write_text(yaml.safe_dump(tiny_study_dict(data_root, out, name="other", train={"iterations": 4})))
        out.mkdir()
        (out / "study.yaml").write_text(study_to_yaml(load_study(other)))
        other.unlink()
    else:  # pragma: no cover - guarded by test_corpus_is_complete
        raise AssertionError(kind)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_bad_study_is_one_line_and_writes_nothing(path, tiny_phantom, tmp_path, monkeypatch):
    meta = header(path)
    expect = meta["expect"][0]
    at_run = meta.get("run") == ["true"]
    out = tmp_path / "out"
    study = tmp_path / path.name
    study.write_text(
        fill(path.read_text(encoding="utf-8"), data_root=tiny_phantom, out_dir=out, tmp=tmp_path), encoding="utf-8"
    )
    for kind in meta.get("setup", []):
        _setup(kind, tmp_path, out, tiny_phantom)
    before = snapshot(tmp_path)
    try:
        monkeypatch.chdir(tmp_path)  # a relative path the CLI might write to lands in the snapshot
        checked = validate_in_process(study)
        if at_run:  # validate cannot see it: the file itself is a valid study
            assert checked.returncode == 0, checked.stderr
            checked = cli("run", study, cwd=tmp_path)
        line = assert_one_line_error(checked, expect)
        assert line.startswith("error: "), line
        assert snapshot(tmp_path) == before  # nothing written (also not in the working directory)
        if "other-study" not in meta.get("setup", []):
            assert not out.exists()
    finally:
        if (tmp_path / "readonly").is_dir():
            (tmp_path / "readonly").chmod(0o700)
