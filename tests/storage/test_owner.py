"""A mirror takes pushes from one copy of a run: the one that took it up last
(vrsearch/results/storage_owner.py). Local-folder mirrors; no Ray starts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.orchestrate.test_start_over import _study_run
from tests.storage.test_storage import mirrored, synthetic_run
from vrsearch.errors import VrsearchError
from vrsearch.orchestrate import runner
from vrsearch.results import storage
from vrsearch.results.rundir import RunDir
from vrsearch.results.storage_owner import OWNER_FILE


def test_a_copy_whose_mirror_was_taken_up_elsewhere_cannot_push(tmp_path):
    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where, take_up=True)  # machine A's run
    b = tmp_path / "b"
    storage.pull(where, b)  # A's driver died; machine B resumes from the mirror ...
    assert not (b / OWNER_FILE).exists()  # (the token stays in the mirror and B's manifest)
    storage.push(b, where, take_up=True)  # ... and takes it up
    (b / "trials" / "t0000" / "b.json").write_text("{}")
    storage.push(b, where)  # B goes on pushing
    before = mirrored(Path(where))
    (a / "trials" / "t0001" / "a.json").write_text("{}")  # A's directory is resumed later
    for take_up in (False, True):
        with pytest.raises(VrsearchError) as err:
            storage.push(a, where, take_up=take_up)
        line = str(err.value)
        assert "\n" not in line and "was taken up by another copy of this run" in line and where in line
        assert f"vrsearch resume file://{where} --into NEWDIR" in line and "host " in line
        assert mirrored(Path(where)) == before  # nothing of A's reached the mirror
    c = tmp_path / "c"
    storage.pull(where, c)  # the way out the message names: a fresh copy of the mirror
    assert "trials/t0000/b.json" in storage.local_files(c)
    storage.push(c, where, take_up=True)
    with pytest.raises(VrsearchError, match="taken up"):
        storage.push(b, where)  # and now B's copy is the stale one


def test_a_mirror_without_an_owner_is_taken_up_by_its_first_push(tmp_path):
    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where)  # as before owners existed: no token anywhere
    assert not (Path(where) / OWNER_FILE).exists()
    storage.push(a, where, take_up=True)
    token = json.loads((Path(where) / OWNER_FILE).read_text())["token"]
    assert json.loads((a / storage.MANIFEST).read_text())["owner"] == [token]
    storage.push(a, where)  # its own token: accepted; the owner file is never deleted as "gone locally"
    assert (Path(where) / OWNER_FILE).exists() and OWNER_FILE not in storage.local_files(a)


def test_resuming_a_stale_copy_stops_before_ray_with_one_line(tiny_phantom, tmp_path):
    study_file, run, where = _study_run(tiny_phantom, tmp_path)
    storage.push(run, where, take_up=True)
    elsewhere = tmp_path / "elsewhere"
    storage.pull(where, elsewhere)
    storage.push(elsewhere, where, take_up=True)
    shutil.rmtree(run / "trials" / "t0001")  # the stale copy has work left, so it would start Ray
    with pytest.raises(VrsearchError, match="was taken up by another copy of this run"):
        runner.resume_study(run)
    assert RunDir(run).experiments() == ["tune"]  # no new Tune experiment: stopped before Ray


class Killed(BaseException):
    """Stands for a SIGKILL: nothing below catches it."""


def test_a_copy_killed_while_taking_its_mirror_up_still_owns_it(tmp_path, monkeypatch):
    """The new token is written to the mirror, then the push dies uploading the files: the
    same copy's next push (its resume) is its own, not a stranger's."""
    from vrsearch.results import storage_fs

    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where, take_up=True)
    upload = storage_fs._upload

    def dies_after_the_owner(fs, local, dest):
        upload(fs, local, dest)
        if dest.endswith(OWNER_FILE):
            raise Killed

    monkeypatch.setattr(storage, "_upload", dies_after_the_owner)
    monkeypatch.setattr("vrsearch.results.storage_owner._upload", dies_after_the_owner)
    with pytest.raises(Killed):
        storage.push(a, where, take_up=True)
    monkeypatch.undo()
    storage.push(a, where, take_up=True)  # accepted: the token it was taking up was kept first
    assert mirrored(Path(where)) == mirrored(a)


def test_one_mirror_spelled_two_ways_is_one_mirror(tmp_path):
    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where, take_up=True)
    b = tmp_path / "b"
    storage.pull(f"file://{where}/", b)  # how 'vrsearch resume' must name a folder mirror
    storage.push(b, f"file://{where}", take_up=True)
    storage.push(b, where)  # the study's output.storage spells it as a plain path
    assert storage.synced_with(b, where) and storage.synced_with(b, f"file://{where}/")
    with pytest.raises(VrsearchError) as err:
        storage.push(a, where)
    assert f"vrsearch resume file://{where} --into NEWDIR" in str(err.value)  # a command that works


def test_a_stale_copy_that_changed_is_not_pulled_over_but_an_unchanged_one_is(tmp_path):
    """Pulling the mirror into a copy that changed since another copy took the mirror up would
    keep the stale copy's own trials and push them beside the mirror's; a copy unchanged since
    its last sync (a clean A -> B -> A, a read-only follower) is simply brought up to date."""
    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where, take_up=True)
    b = tmp_path / "b"
    storage.pull(where, b, take_up=True)  # as 'vrsearch resume URI' does
    (b / "trials" / "t0000" / "b.json").write_text("{}")
    storage.push(b, where)
    follower = tmp_path / "follower"
    storage.pull(where, follower)  # a copy that only reads
    storage.push(b, where, take_up=True)  # B takes it up again (a later life)
    storage.pull(where, follower)  # unchanged since its sync: up to date, not refused
    assert (follower / "trials" / "t0000" / "b.json").exists()
    storage.pull(where, a)  # A stopped cleanly: unchanged too
    assert (a / "trials" / "t0000" / "b.json").exists()
    storage.pull(where, a, take_up=True)  # A takes it up; now B is the stale one
    (b / "trials" / "t0001" / "only-b.json").write_text("{}")  # ... and B changed since
    before = mirrored(b)
    with pytest.raises(VrsearchError, match="taken up by another copy.*or remove"):
        storage.pull(where, b)
    assert mirrored(b) == before


def test_taking_up_before_the_pull_stops_the_old_copys_pushes(tmp_path):
    a = synthetic_run(tmp_path / "a")
    where = str(tmp_path / "bucket" / "syn")
    storage.push(a, where, take_up=True)
    storage.pull(where, tmp_path / "b", take_up=True)  # B resumes; A is still alive
    (a / "trials" / "t0000" / "late.json").write_text("{}")
    with pytest.raises(VrsearchError, match="taken up by another copy"):
        storage.push(a, where)  # A's next push (after B's pull, before B's study pushed) is refused
    assert "trials/t0000/late.json" not in mirrored(Path(where))


def test_locations_are_one_where_the_data_is_one():
    from vrsearch.results.storage_fs import location_key, resumable

    same = [
        ("/shared/runs/x", "file:///shared/runs/x/"),
        ("/shared/my runs/x", "file:///shared/my%20runs/x"),
        ("s3://b/p/x?endpoint_override=h:9000&scheme=http", "s3://b/p/x/?scheme=https&endpoint_override=h:9000"),
    ]
    for a, b in same:
        assert location_key(a) == location_key(b), (a, b)
    assert location_key("s3://b/p/x?endpoint_override=old:9000") != location_key(
        "s3://b/p/x?endpoint_override=new:9000"
    )
    assert location_key("s3://b/p/x") != location_key("gs://b/p/x")
    assert resumable("/shared/my runs/x") == "file:///shared/my%20runs/x"


def test_growing_a_stale_copy_changes_nothing(tiny_phantom, tmp_path):
    study_file, run, where = _study_run(tiny_phantom, tmp_path)
    storage.push(run, where, take_up=True)
    storage.pull(where, tmp_path / "elsewhere", take_up=True)
    before = mirrored(run)
    with pytest.raises(VrsearchError, match="was taken up by another copy of this run"):
        runner.run_study(study_file, ["search.seeds=[0, 1]"])  # a growth: one more seed
    assert mirrored(run) == before  # study.yaml not rewritten, no trial removed
