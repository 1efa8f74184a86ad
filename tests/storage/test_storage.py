"""``output.storage``: push/pull of a run dir, reading results from a URI, refused URIs;
and one end-to-end run killed, resumed from the bucket on a "new machine" and reported."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from tests.e2e.test_cli import VRSEARCH
from tests.storage.conftest import FAKE_KEY_ID, FAKE_SECRET
from vrsearch.errors import VrsearchError
from vrsearch.results import fragments, io, storage
from vrsearch.study.load import build_study

STUDY = {
    "name": "syn",
    "search": {
        "design": "grid",
        "scheduler": "none",
        "space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.1, 0.2]}},
    },
}


def synthetic_run(run: Path) -> Path:
    """A run dir as a study leaves it: fragments, parquet, checkpoints, Tune state, Optuna db,
    report — and Ray's temp dir with a socket, which is never mirrored."""
    (run / io.STUDY_FILE).parent.mkdir(parents=True, exist_ok=True)
    (run / io.STUDY_FILE).write_text(yaml.safe_dump(STUDY))
    for i, lr in enumerate((0.1, 0.2)):
        tid = f"t{i:04d}"
        fragments.write_json(
            fragments.trial_dir(run, tid) / "meta.json",
            {
                "seed": 0,
                "method": "supervised",
                "cell": {"train.optimizer.lr": lr},
                "config": {"train": {"optimizer": {"lr": lr}}},
            },
        )
        history = [
            {"trial_id": tid, "iteration": it, "loss": 1.0 / (it + 1), "val_dice": 0.1 * it + lr} for it in range(4)
        ]
        cases = [
            {
                "trial_id": tid,
                "split": "test",
                "iteration": 3,
                "case_id": f"c{c}",
                "class_index": 1,
                "class_name": "liver",
                "dice": 0.5 + 0.1 * c + lr,
                "jaccard": 0.4,
                "hd95_mm": 3.0,
                "assd_mm": 1.0,
                "label_empty": False,
                "pred_empty": False,
            }
            for c in range(3)
        ]
        fragments.write_final(
            run,
            tid,
            {
                "trial_id": tid,
                "status": "completed",
                "error": "",
                "seed": 0,
                "best_val_dice": 0.3 + lr,
                "best_iteration": 3,
                "test_dice": 0.6 + lr,
            },
            history,
            cases,
        )
        ckpt = run / "checkpoints" / tid
        ckpt.mkdir(parents=True)
        (ckpt / "last.pt").write_bytes(os.urandom(200_000 + i))
    fragments.compact(run)
    (run / "tune" / "trial_a").mkdir(parents=True)
    (run / "tune" / "experiment_state-2026.json").write_text('{"trials": 2}')
    (run / "tune" / "trial_a" / "params.json").write_text('{"lr": 0.1}')
    (run / "optuna.db").write_bytes(os.urandom(4096))
    (run / "report.html").write_text("<html>report</html>")
    (run / "ray" / "session_latest").mkdir(parents=True)
    (run / "ray" / "session_latest" / "log.txt").write_text("ray log")
    if len(str(run / "ray" / "s.sock")) < 100:  # a Unix socket path's limit
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(run / "ray" / "s.sock"))
    (run / "ray_train").mkdir()
    (run / "ray_train" / "x.json").write_text("{}")
    return run


def mirrored(run: Path) -> dict[str, bytes]:
    return {rel: (run / rel).read_bytes() for rel in storage.local_files(run)}


def bucket_files(s3, prefix: str = "") -> dict[str, bytes]:
    fs = s3.fs()
    out = {}
    for info in fs.get_file_info(
        pafs.FileSelector(f"{s3.bucket}/{prefix}".rstrip("/"), recursive=True, allow_not_found=True)
    ):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path, compression=None) as f:
                out[info.path] = f.read()
    return out


def test_push_pull_round_trip(s3, tmp_path):
    run = synthetic_run(tmp_path / "run")
    uri = s3.uri("runs/syn")
    counts = storage.push(run, uri)
    expected = mirrored(run)
    assert {
        "study.yaml",
        "trials.parquet",
        "history.parquet",
        "cases.parquet",
        "report.html",
        "optuna.db",
        "trials/t0000/result.json",
        "checkpoints/t0001/last.pt",
    } <= set(expected)
    assert not any(k.startswith("tune/") for k in expected)  # Tune's logs: a resume never reads them
    assert counts["uploaded"] == len(expected)
    stored = bucket_files(s3, "runs/syn")
    assert {k.split("runs/syn/", 1)[1] for k in stored} == set(expected)  # no ray/, ray_train/, tune/, manifest
    other = tmp_path / "elsewhere"
    assert storage.pull(uri, other) == len(expected)
    assert mirrored(other) == expected  # bytes equal
    assert not (other / "ray").exists()


def test_second_push_uploads_only_changes(s3, tmp_path):
    run = synthetic_run(tmp_path / "run")
    uri = s3.uri("p/syn")
    first = storage.push(run, uri)
    stamps = {i.path: i.mtime_ns for i in s3.fs().get_file_info(pafs.FileSelector(f"{s3.bucket}/p", recursive=True))}
    assert storage.push(run, uri) == {"uploaded": 0, "deleted": 0, "unchanged": first["uploaded"]}
    manifest = json.loads((run / storage.MANIFEST).read_text())
    assert manifest["location"] == uri and set(manifest["files"]) == set(mirrored(run))
    after = {i.path: i.mtime_ns for i in s3.fs().get_file_info(pafs.FileSelector(f"{s3.bucket}/p", recursive=True))}
    assert after == stamps
    # one changed file, one removed trial: one upload, its files deleted remotely
    time.sleep(0.01)
    (run / "report.html").write_text("<html>new report</html>")
    shutil.rmtree(run / "checkpoints" / "t0001")
    counts = storage.push(run, uri)
    assert counts["uploaded"] == 1 and counts["deleted"] == 1
    stored = bucket_files(s3, "p/syn")
    assert stored[f"{s3.bucket}/p/syn/report.html"] == b"<html>new report</html>"
    assert f"{s3.bucket}/p/syn/checkpoints/t0001/last.pt" not in stored
    # a pull into the dir that pushed downloads nothing; into a stale copy only what changed
    assert storage.pull(uri, run) == 0


def test_pull_brings_an_older_copy_up_to_date(s3, tmp_path):
    run = synthetic_run(tmp_path / "run")
    uri = s3.uri("q/syn")
    storage.push(run, uri)
    copy = tmp_path / "copy"
    storage.pull(uri, copy)
    time.sleep(1.1)  # S3 mtimes have one-second resolution
    (run / "trials.parquet").write_bytes((run / "trials.parquet").read_bytes() + b"")
    (run / "report.html").write_text("<html>newer</html>")
    storage.push(run, uri)
    assert storage.pull(uri, copy) >= 1
    assert (copy / "report.html").read_text() == "<html>newer</html>"
    assert storage.pull(uri, copy) == 0


def test_local_path_storage_moves_whole_files(tmp_path):
    run = synthetic_run(tmp_path / "run")
    target = storage.location(str(tmp_path / "shared"), "syn")
    assert target == str(tmp_path / "shared" / "syn")
    storage.push(run, target)
    assert mirrored(Path(target)) == mirrored(run)
    assert not [p for p in Path(target).rglob("*") if p.name.endswith(".tmp")]
    uri = f"file://{tmp_path / 'shared' / 'syn'}"
    pd.testing.assert_frame_equal(io.load(uri).trials, io.load(run).trials)


def test_failed_push_warns_and_is_retried_final_push_raises(tmp_path):
    from vrsearch.orchestrate.mirror import push_results

    run = synthetic_run(tmp_path / "run")
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the storage folder should be")
    where = storage.location(str(blocker), "syn")
    lines: list[str] = []
    push_results(run, where, lines.append)  # during the study: one warning line, no exception
    assert len(lines) == 1 and lines[0].startswith("warning: results not stored") and where in lines[0]
    with pytest.raises(VrsearchError, match="cannot write to") as exc:
        push_results(run, where, lines.append, final=True)
    assert where in str(exc.value) and "\n" not in str(exc.value)
    blocker.unlink()
    push_results(run, where, lines.append)  # the next push uploads everything that failed
    assert len(lines) == 1 and mirrored(Path(where)) == mirrored(run)


def test_load_from_uri_equals_local(s3, tmp_path):
    run = synthetic_run(tmp_path / "run")
    uri = s3.uri("r/syn")
    storage.push(run, uri)
    local, remote = io.load(run), io.load(uri)
    assert len(local.trials) == 2
    pd.testing.assert_frame_equal(remote.trials, local.trials)
    pd.testing.assert_frame_equal(remote.history, local.history)
    pd.testing.assert_frame_equal(remote.cases, local.cases)
    assert remote.study == local.study == STUDY


def test_location_keeps_query_options():
    assert (
        storage.location("s3://b/runs?endpoint_override=127.0.0.1:9000&scheme=http", "tiny")
        == "s3://b/runs/tiny?endpoint_override=127.0.0.1:9000&scheme=http"
    )
    assert storage.location("gs://b", "tiny") == "gs://b/tiny"
    assert storage.location("file:///shared/runs/", "tiny") == "file:///shared/runs/tiny"
    assert storage.is_uri("s3://b/x") and storage.is_uri("file:///x")
    assert not storage.is_uri("runs/x") and not storage.is_uri(Path("/x")) and not storage.is_uri("/abs/x")


@pytest.mark.parametrize(
    "uri",
    [
        "s3://b/p?endpoint_override=h:1&access_key=AKXYZ&secret_key=SKXYZ",
        "s3://b/p?Secret_Key=SKXYZ",
        "s3://AKXYZ:SKXYZ@b/p",
    ],
)
def test_uri_with_keys_is_refused(uri):
    with pytest.raises(VrsearchError) as exc:
        storage.parse(uri)
    text = str(exc.value)
    assert "\n" not in text and "environment" in text and "SKXYZ" not in text and "AKXYZ" not in text
    with pytest.raises(VrsearchError) as exc:
        build_study({"name": "x", "output": {"storage": uri}})
    assert str(exc.value).startswith("output: storage:") and "SKXYZ" not in str(exc.value)


def _cli(s3, *args, cwd=None):
    return subprocess.run([VRSEARCH, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=s3.env, timeout=300)


def test_missing_location_is_one_line_error(s3, tmp_path):
    for uri in (s3.uri("nothing/here"), f"s3://no-such-bucket-vrs/x?endpoint_override={s3.endpoint}&scheme=http"):
        with pytest.raises(VrsearchError, match="no such run directory") as exc:
            io.load(uri)
        assert "\n" not in str(exc.value)
        if "no-such-bucket" in uri:
            continue
        for command in ("report", "table", "resume"):
            proc = _cli(s3, command, uri, cwd=tmp_path)
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
            assert "no such run directory" in lines[0] or "not a vrsearch run" in lines[0], lines[0]
    proc = _cli(s3, "report", "s3://b/p?secret_key=SKXYZ", cwd=tmp_path)
    assert proc.returncode == 2 and "environment" in proc.stderr and "SKXYZ" not in proc.stderr


def test_report_and_table_from_uri(s3, tmp_path):
    run = synthetic_run(tmp_path / "run")
    uri = s3.uri("t/syn")
    storage.push(run, uri)
    (tmp_path / "out").mkdir()
    proc = _cli(s3, "report", uri, cwd=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "out" / "report.html").read_bytes()
    assert b"syn" in page and uri.encode().replace(b"&", b"&amp;") in page
    assert bucket_files(s3, "t/syn")[f"{s3.bucket}/t/syn/report.html"] == page
    proc = _cli(s3, "table", uri, cwd=tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "out" / "table.md").read_bytes()
    assert bucket_files(s3, "t/syn")[f"{s3.bucket}/t/syn/table.md"] == table


# --- end to end: real CLI, real Ray --------------------------------------------------------


def _remote_results(s3, prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in bucket_files(s3, prefix).items() if k.endswith("/result.json")}


def _no_credentials_in(files: dict[str, bytes], where: str) -> None:
    for name, data in files.items():
        for secret in (FAKE_KEY_ID, FAKE_SECRET):
            assert secret.encode() not in data, f"credential written to {where}: {name}"


@pytest.mark.slow
def test_killed_run_resumes_from_the_bucket_on_another_machine(s3, tiny_phantom, tmp_path):
    from tests.e2e.test_run import write_study

    grid = {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 0.02, 0.03]}}
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "grid", "scheduler": "none", "space": grid},
        resources={"concurrent_trials": 1},
        output={"storage": s3.uri("studies")},
    )
    run, uri = tmp_path / "run", s3.uri("studies/tiny")
    log = (tmp_path / "run1.log").open("w")
    proc = subprocess.Popen(
        [VRSEARCH, "run", str(study)], stdout=log, stderr=subprocess.STDOUT, env=s3.env, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not _remote_results(s3, "studies/tiny"):
        time.sleep(0.5)
    assert proc.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
    before = _remote_results(s3, "studies/tiny")
    assert len(before) == 1, (tmp_path / "run1.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the driver (and its session); nothing more is pushed
    proc.wait()
    log.close()
    time.sleep(2)
    shutil.rmtree(run)  # "another machine": only the bucket is left

    resumed = _cli(s3, "resume", uri, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "pulled" in resumed.stdout and uri in resumed.stdout
    after = _remote_results(s3, "studies/tiny")
    for key, text in before.items():
        assert after[key] == text, f"finished trial {key} was re-run"
        assert (run / key.split("studies/tiny/", 1)[1]).read_bytes() == text
    assert len(after) == 3

    (tmp_path / "out").mkdir()
    rep = _cli(s3, "report", uri, cwd=tmp_path / "out")
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (
        bucket_files(s3, "studies/tiny")[f"{s3.bucket}/studies/tiny/report.html"]
        == (tmp_path / "out" / "report.html").read_bytes()
    )

    res = io.load(uri)
    assert len(res.trials) == 3 and res.trials.trial_id.is_unique
    assert set(res.trials.status) == {"completed"}, res.trials[["trial_id", "status", "error"]]
    assert res.history.groupby("trial_id").iteration.max().eq(6).all()
    assert res.study["output"]["storage"] == s3.uri("studies")
    pd.testing.assert_frame_equal(res.trials, io.load(run).trials)

    _no_credentials_in(bucket_files(s3), "the bucket")
    _no_credentials_in(
        {str(p): p.read_bytes() for p in run.rglob("*") if p.is_file() and not p.is_symlink()}, "the run dir"
    )


def test_a_proposal_told_during_a_push_never_reaches_the_mirror_without_its_trial(tmp_path, monkeypatch):
    """The race a killed driver exposed: a trial ends and Optuna is told *while* a push runs
    (after its listing). The mirrored database must then not hold that proposal as finished
    unless the trial's files are mirrored too — else a resume from the mirror keeps the
    proposal closed and never runs it (lost). The database goes last, as a snapshot taken
    before the listing."""
    import sqlite3

    from vrsearch.results import storage_fs

    run = tmp_path / "run"
    run.mkdir()
    db = run / "optuna.db"
    with sqlite3.connect(db) as con:
        con.execute("create table told (trial text)")
        con.execute("insert into told values ('t0')")
    fragments.write_json(fragments.trial_dir(run, "t0") / "result.json", {"status": "completed"})
    real_listing = storage_fs.local_files

    def listing_then_a_trial_ends(run_dir):
        out = real_listing(run_dir)
        fragments.write_json(fragments.trial_dir(run, "t1") / "result.json", {"status": "completed"})
        with sqlite3.connect(db) as con:  # the driver tells Optuna after the trial's files exist
            con.execute("insert into told values ('t1')")
        return out

    monkeypatch.setattr(storage, "local_files", listing_then_a_trial_ends)
    target = tmp_path / "mirror"
    storage.push(run, str(target))
    with sqlite3.connect(target / "optuna.db") as con:
        told = {row[0] for row in con.execute("select trial from told")}
    mirrored_trials = {p.parent.name for p in (target / "trials").rglob("result.json")}
    assert told <= mirrored_trials, (told, mirrored_trials)
    assert told == {"t0"}
    monkeypatch.setattr(storage, "local_files", real_listing)
    storage.push(run, str(target))  # the next push brings both
    with sqlite3.connect(target / "optuna.db") as con:
        assert {row[0] for row in con.execute("select trial from told")} == {"t0", "t1"}
    assert {p.parent.name for p in (target / "trials").rglob("result.json")} == {"t0", "t1"}


def test_a_pull_brings_optunas_database_last_and_drops_its_stale_journal(tmp_path, monkeypatch):
    """A pull cut off midway must leave the local database behind the trials (a resume
    restores the proposals it lacks), never ahead of them (a proposal it holds as closed
    without its trial's files would never run again). A rollback journal a killed driver
    left beside the local database belongs to the file a pull replaces: SQLite would roll
    it into the new one, so it goes; with the database unchanged remotely, it stays."""
    import sqlite3

    mirror, run = tmp_path / "mirror", tmp_path / "run"
    mirror.mkdir()
    with sqlite3.connect(mirror / "optuna.db") as con:
        con.execute("create table told (trial text)")
    (mirror / "study.yaml").write_text("name: tiny\n")
    for t in ("t0", "t1"):
        fragments.write_json(fragments.trial_dir(mirror, t) / "result.json", {"status": "completed"})
    real, order = storage._download, []

    def cut_after(n):
        def download(fs, src, dest):
            if len(order) == n:
                raise OSError("connection reset")
            order.append(Path(dest).relative_to(run).as_posix())
            real(fs, src, dest)

        return download

    monkeypatch.setattr(storage, "_download", cut_after(2))
    with pytest.raises(VrsearchError, match="cannot read"):
        storage.pull(str(mirror), run)
    assert "optuna.db" not in order and not (run / "optuna.db").exists(), order
    journal = run / "optuna.db-journal"
    journal.write_bytes(b"a hot journal of the database replaced below")
    monkeypatch.setattr(storage, "_download", cut_after(len(order) + 1))  # cut before the database
    with pytest.raises(VrsearchError, match="cannot read"):
        storage.pull(str(mirror), run)
    assert journal.exists() and order[-1] == "trials/t1/result.json"  # no database replaced: journal kept
    order.clear()
    monkeypatch.setattr(storage, "_download", cut_after(-1))
    assert storage.pull(str(mirror), run) == 1  # the rest: the database
    assert order[-1] == "optuna.db" and not journal.exists()
    journal.write_bytes(b"a journal of the database as it is")
    assert storage.pull(str(mirror), run) == 0 and journal.exists()  # nothing replaced: left alone
