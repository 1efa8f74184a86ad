"""``run --fresh`` and ``train`` touch a run directory only under its lock, and a
``run --fresh`` cut off midway leaves no run that anything but another ``--fresh``
takes up (here and in the run's mirror). No Ray starts in these tests: every
command is refused, or the test calls the start-over step itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.storage.test_storage import mirrored, synthetic_run
from vrsearch.engine.single import train_single
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate import runner
from vrsearch.results import io, storage
from vrsearch.results.lock import run_lock
from vrsearch.study import load_study, study_to_yaml


class Killed(BaseException):
    """Stands for a SIGKILL: nothing below catches it."""


def _study_run(tiny_phantom: Path, tmp_path: Path) -> tuple[Path, Path, str]:
    """A finished run of the tiny study (synthetic fragments, parquet files, checkpoints,
    Optuna database) and its mirror in a local folder, pushed."""
    mirror = str(tmp_path / "bucket")
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(tiny_study_dict(tiny_phantom, tmp_path / "run", output={"storage": mirror})))
    run = synthetic_run(tmp_path / "run")
    (run / io.STUDY_FILE).write_text(study_to_yaml(load_study(study_file, [])))
    where = storage.location(mirror, "tiny")
    storage.push(run, where)
    return study_file, run, where


def test_a_fresh_start_cut_off_in_the_mirror_leaves_no_run_to_resume(tiny_phantom, tmp_path, monkeypatch):
    study_file, run, where = _study_run(tiny_phantom, tmp_path)
    parse = storage.parse

    class CutOff:  # the mirror's file system, killed as it starts emptying the folder
        def __init__(self, fs):
            self.fs = fs

        def __getattr__(self, name):
            return getattr(self.fs, name)

        def delete_dir_contents(self, *args, **kwargs):
            raise Killed

    monkeypatch.setattr(storage, "parse", lambda uri: (CutOff(parse(uri)[0]), parse(uri)[1]))
    with pytest.raises(Killed):
        runner.start_over(load_study(study_file, []), runner.RunDir(run), where)
    monkeypatch.setattr(storage, "parse", parse)
    assert not (run / io.STUDY_FILE).exists() and (run / "trials").is_dir()  # cut off before the trials
    left = mirrored(Path(where))
    assert io.STUDY_FILE not in left and "trials.parquet" in left  # the mirror's study.yaml went first
    with pytest.raises(VrsearchError, match="not a vrsearch run"):
        runner.resume_study(f"file://{where}", into=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    with pytest.raises(VrsearchError, match="not a vrsearch run directory"):
        runner.resume_study(run)
    with pytest.raises(VrsearchError, match="holds trials but no readable study.yaml; start over with --fresh"):
        runner.run_study(study_file, [])


def test_a_fresh_start_forgets_the_run_here_and_in_the_mirror(tiny_phantom, tmp_path):
    study_file, run, where = _study_run(tiny_phantom, tmp_path)
    (run / "cache").mkdir()
    (run / "cache" / "kept.npy").write_bytes(b"prepared data")
    runner.start_over(load_study(study_file, []), runner.RunDir(run), where)
    assert mirrored(Path(where)) == {}
    for name in (io.STUDY_FILE, "trials", "checkpoints", "tune", "optuna.db", "ray_train", storage.MANIFEST):
        assert not (run / name).exists(), name
    assert (run / "cache" / "kept.npy").read_bytes() == b"prepared data"  # the data cache is not the run's


def test_fresh_starts_and_train_wait_for_the_runs_lock(tiny_phantom, tmp_path):
    """A live 'vrsearch run' holds the lock: 'run --fresh' and 'train --fresh' refuse before
    they delete anything (they used to empty the directory first, then find the lock)."""
    study_file, run, where = _study_run(tiny_phantom, tmp_path)
    with run_lock(run):
        for command in (
            lambda: runner.run_study(study_file, [], fresh=True),
            lambda: runner.resume_study(run),
            lambda: runner.resume_study(f"file://{where}"),  # its pull would write into the run
            "a directory that only 'vrsearch train' used",
            lambda: train_single(study_file, [], fresh=True),
            lambda: train_single(study_file, []),
        ):
            if isinstance(command, str):
                for name in ("trials", "tune"):
                    shutil.rmtree(run / name)
                continue
            before, remote = mirrored(run), mirrored(Path(where))
            with pytest.raises(VrsearchError, match="in use by another vrsearch process"):
                command()
            assert mirrored(run) == before and mirrored(Path(where)) == remote


def test_train_refuses_a_directory_that_holds_a_study_run_by_vrsearch_run(tiny_phantom, tmp_path):
    study_file, run, _ = _study_run(tiny_phantom, tmp_path)
    before = mirrored(run)
    for fresh in (False, True):
        with pytest.raises(VrsearchError, match="holds a study run by 'vrsearch run'.*--set output.dir=DIR"):
            train_single(study_file, [], fresh=fresh)
        assert mirrored(run) == before
    (run / "study.yaml").write_text("name: another\n")  # a different study's run: the same answer, not "--fresh"
    with pytest.raises(VrsearchError, match="holds a study run by 'vrsearch run'"):
        train_single(study_file, [])


def test_the_lock_removes_the_folders_it_created_when_nothing_was_written(tmp_path):
    with run_lock(tmp_path / "runs" / "new"):
        assert (tmp_path / "runs" / "new").is_dir()
    assert not (tmp_path / "runs").exists()
    with run_lock(tmp_path / "used"):
        (tmp_path / "used" / "study.yaml").write_text("x")
    assert (tmp_path / "used" / "study.yaml").exists()
    (tmp_path / "old").mkdir()
    with run_lock(tmp_path / "old"):
        pass
    assert (tmp_path / "old").is_dir()  # not ours to remove
