"""``vrsearch run`` / ``resume`` through real Ray on the tiny phantom."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.e2e.test_cli import VRSEARCH, assert_one_line_error, cli
from vrsearch.orchestrate.experiment import ray_temp_dir
from vrsearch.orchestrate.local import reap_stale

pytestmark = pytest.mark.slow


def write_study(tmp_path: Path, root: Path, **sections) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(tiny_study_dict(root, tmp_path / "run", **sections)))
    return path


def finished_results(run: Path) -> dict[str, tuple[float, str]]:
    out = {}
    for f in (run / "trials").glob("*/result.json"):
        out[f.parent.name] = (f.stat().st_mtime_ns, f.read_text())
    return out


def listening_sockets() -> list[tuple[str, int]]:
    """(local address, pid) of every listening TCP socket on this machine."""
    text = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    out = []
    for line in text.splitlines():
        parts = line.split()
        local = parts[3].rsplit(":", 1)[0].strip("[]")
        for pid in [p.split("=")[1] for p in line.split(",") if p.startswith("pid=")]:
            out.append((local, int(pid)))
    return out


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def ddp_reporting(run: Path) -> bool:
    """A 2-worker trial has reported (its worker group and rendezvous are up) and is unfinished."""
    for meta in (run / "trials").glob("*/meta.json"):
        d = meta.parent
        cell = json.loads(meta.read_text()).get("cell", {})
        if (
            cell.get("resources.workers_per_trial") == 2
            and (d / "history.parquet").exists()
            and not (d / "result.json").exists()
        ):
            return True
    return False


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


#: Ray's own processes that outlive a SIGKILLed driver for up to a minute; none runs study code
RAY_AGENTS = ("DashboardAgent", "RuntimeEnvAgent", "dashboard.py", "gcs_server", "raylet", "log_monitor")


def command_line(pid: int) -> str:
    try:
        return f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return f"{pid} (gone)"


def descendants(pid: int) -> set[int]:
    """pid and every process whose ancestry reaches it (via /proc)."""
    parents = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = {pid}, [pid]
    while frontier:
        cur = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == cur and p not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def test_kill_driver_then_resume_loses_and_reruns_nothing(tiny_phantom, tmp_path):
    """The driver SIGKILLed after the 1-worker trial finished, while the 2-worker (DDP) trial
    trains: the resume keeps the finished one and runs the DDP one again. (Two DDP trials one
    after the other in one run, warm or not: tests/e2e/test_determinism.py.)"""
    grid = {"resources.workers_per_trial": {"type": "categorical", "choices": [1, 2]}}
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "grid", "scheduler": "none", "space": grid},
        resources={"concurrent_trials": 2, "cpus_per_worker": 1},
    )
    run, marker = tmp_path / "run", tmp_path / "paused"
    log = (tmp_path / "run1.log").open("w")
    # the DDP trial waits after step 4 (once, one rank; results/faults.py), so the driver is killed
    # mid-training however fast the trial would otherwise end
    pause = {"VRSEARCH_FAULT": "pause:step:4", "VRSEARCH_FAULT_WORLD": "2", "VRSEARCH_FAULT_ONCE": str(marker)}
    proc = subprocess.Popen(
        [VRSEARCH, "run", str(study)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **pause},
    )
    seen_sockets: list[tuple[str, int]] = []
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        family = descendants(proc.pid)
        seen_sockets += [s for s in listening_sockets() if s[1] in family]
        if len(finished_results(run)) == 1 and ddp_reporting(run) and marker.exists():
            break
        time.sleep(0.5)
    # the study must still run: killed after the 1-worker trial, while the DDP trial trains
    assert proc.poll() is None, "no kill while the DDP trial trained:\n" + (tmp_path / "run1.log").read_text()[-3000:]
    before = finished_results(run)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only; Ray's processes notice and exit
    proc.wait()
    # ... before the paused rank wakes (60 s) and before the resume starts: no process of the killed
    # study that could write into the run directory may be left (Ray's own agents, which write
    # only Ray's logs, may take a minute more to notice)
    left = {p for p in set(family) - {proc.pid} if not any(a in command_line(p) for a in RAY_AGENTS)}
    until = time.time() + 45
    while left and time.time() < until:
        time.sleep(0.5)
        left = {p for p in left if running(p)}
    assert not left, "processes of the killed study still alive: " + "; ".join(command_line(p) for p in sorted(left))
    # everything the local Ray listened on was loopback
    assert seen_sockets, "no Ray sockets observed"
    assert {addr for addr, _ in seen_sockets} <= LOOPBACK, seen_sockets

    resumed = cli("resume", run)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = finished_results(run)
    for tid, stamp in before.items():
        assert after[tid] == stamp, f"finished trial {tid} was re-run"
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 2 and trials.trial_id.is_unique
    assert set(trials.status) == {"completed"}, trials[["trial_id", "status", "error"]]
    assert sorted(
        trials["config.resources.workers_per_trial"]
        if "config.resources.workers_per_trial" in trials
        else [json.loads(c)["resources.workers_per_trial"] for c in trials.cell]
    ) == [1, 2]
    history = pd.read_parquet(run / "history.parquet")
    assert history.groupby("trial_id").iteration.max().eq(6).all()
    cases = pd.read_parquet(run / "cases.parquet")
    assert cases.groupby("trial_id").split.nunique().eq(2).all() and cases.trial_id.nunique() == 2
    assert (run / "study.yaml").exists()
    # the DDP trial ran under Ray Train's controller and its placement-group cleaner, without the
    # dataset manager (orchestrate/ddp.py): the actors each Ray session's worker logs name
    started = started_actors(ray_temp_dir(run))
    assert {"TrainController", "RayTrainWorker", "SynchronizationActor", "PlacementGroupCleaner"} <= started, started
    assert "DatasetManager" not in started, started


def started_actors(ray_dir: Path) -> set[str]:
    """Class names of the actors started in the Ray sessions under ``ray_dir`` (Ray writes
    ``:actor_name:<class>`` into a worker's log when an actor starts in it)."""
    names = set()
    for log in ray_dir.glob("session_*/logs/worker-*.out"):
        names |= {
            line.split(":actor_name:", 1)[1].strip()
            for line in log.read_text(errors="replace").splitlines()
            if ":actor_name:" in line
        }
    return names


@contextlib.contextmanager
def another_ray() -> Iterator[None]:
    """A second Ray on the machine while inside (another study's, another user's), started
    in a process of its own; it and every process of its Ray are killed on the way out."""
    temp = Path(tempfile.mkdtemp(prefix="vrs-o-", dir="/tmp"))  # short: Unix socket paths
    code = (
        "import sys, time; from pathlib import Path; from vrsearch.orchestrate.local import loopback_init; "
        "loopback_init(Path(sys.argv[1]), num_cpus=1); print('up', flush=True); time.sleep(3600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(temp)], stdout=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:  # 'up', or a child that dies or hangs: never a wait without end
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout=180)
        assert ready and proc.stdout.readline().strip() == b"up", "the second Ray did not start in 180 s"
        yield
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        for _ in range(3):  # its GCS, raylet and agents (one caught starting is found next time)
            if not reap_stale(temp):
                break
        shutil.rmtree(temp, ignore_errors=True)


def test_ddp_trials_go_on_after_asha_stops_one(tiny_phantom, tmp_path):
    """DDP trials under ASHA, one at a time, on 2 CPUs: a stopped trial's actor dies with Ray
    Train's controller inside ``fit()``, and Ray keeps the worker group's placement group (both
    CPUs) until the job ends; only Train's placement-group cleaner, which needs the state API
    (the local Ray's dashboard, started for studies with DDP trials), frees it. Without it the
    trial after the first stopped one waited for CPUs forever. The cleaner asks the state API
    with no address, and Ray refuses to guess when the machine runs two Rays (CI's other test
    process did: the same hang), so a second Ray runs beside the study here, and the local Ray
    tells its processes its own address (orchestrate/local.py). The stop is made certain: a grid
    of three learning rates run in order, the middle one too small to learn, so at the first rung
    (iteration 6; then 12 and 24; 48, the last, is never a stop) its validation Dice is its
    initial one, a third of the first trial's there (0.0069 against 0.021 when written), the only
    value ASHA recorded before it; ASHA (reduction factor 2: the median) stops it, and the third
    trial must run."""
    lrs = [0.02, 1e-7, 0.03]
    tiny_train = tiny_study_dict(tiny_phantom, tmp_path)["train"]
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={
            "design": "grid",
            "grace_period": 6,
            "scheduler": "asha",
            "space": {"train.optimizer.lr": {"type": "categorical", "choices": lrs}},
        },
        train={**tiny_train, "iterations": 48, "eval": {**tiny_train["eval"], "every": 6}},
        resources={"concurrent_trials": 1, "workers_per_trial": 2, "cpus_per_worker": 1},
    )
    with another_ray():
        proc = cli("run", study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet")
    history = pd.read_parquet(tmp_path / "run" / "history.parquet")
    lr = {t: json.loads(c)["train.optimizer.lr"] for t, c in zip(trials.trial_id, trials.cell)}
    status = {lr[t]: s for t, s in zip(trials.trial_id, trials.status)}
    last = {lr[t]: i for t, i in history.groupby("trial_id").iteration.max().items()}
    dice = history.dropna(subset=["val_dice"]).pivot(index="iteration", columns="trial_id", values="val_dice")
    assert set(status) == set(lrs), status
    assert status[0.02] == "completed" and status[1e-7] == "stopped_early", (status, dice)
    # the stopped trial trains on while its report at the rung travels through Train's controller
    # to Tune and the stop comes back; its history ends at its last evaluation before the stop
    # (6, 12 or 18 in the runs seen: the iterations are short, so 48 leaves room), never at its
    # end; the third ran after it
    assert last[0.02] == 48 and 6 <= last[1e-7] < 48 and last[0.03] >= 6, (last, dice)


def test_search_with_optuna_asha_and_a_diverging_trial(tiny_phantom, tmp_path):
    space = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "search", "num_samples": 4, "grace_period": 3, "space": space},
        train={**tiny_study_dict(tiny_phantom, tmp_path)["train"], "iterations": 9},
        resources={"concurrent_trials": 2},
    )
    proc = cli("run", study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    trials = pd.read_parquet(run / "trials.parquet")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "stopped_early"}
    assert trials["kernels"].str.startswith("torch ").all()  # a stopped trial's row too (from meta.json)
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}")
    assert len(ost.trials) == 4
    assert all(1e-3 <= t.params["train.optimizer.lr"] <= 1e-1 for t in ost.trials)
    # a rerun of the same study is refused (it must be resumed or started --fresh)
    assert_one_line_error(cli("run", study), "already holds a run of this study")


def test_nan_trial_fails_alone_with_its_reason(tiny_phantom, tmp_path):
    grid = {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 1.0e12]}}
    train = {**tiny_study_dict(tiny_phantom, tmp_path)["train"], "optimizer": {"name": "sgd", "lr": 0.01}}
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "grid", "scheduler": "none", "space": grid},
        train=train,
        resources={"concurrent_trials": 2},
    )
    proc = cli("run", study)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = pd.read_parquet(tmp_path / "run" / "trials.parquet").set_index("config.train.optimizer.lr")
    assert trials.loc[0.01, "status"] == "completed"
    assert trials.loc[1.0e12, "status"] == "failed"
    assert "loss became nan" in trials.loc[1.0e12, "error"]


def test_misspelt_searched_knob_is_rejected_before_ray(tiny_phantom, tmp_path):
    space = {"method.params.los": {"type": "categorical", "choices": ["ce"]}}
    study = write_study(tmp_path, tiny_phantom, search={"design": "grid", "space": space})
    proc = cli("run", study)
    assert_one_line_error(proc, "search.space.method.params.los", "did you mean 'loss'")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_stops_cleanly_and_resume_finishes(tiny_phantom, tmp_path):
    grid = {"train.optimizer.lr": {"type": "categorical", "choices": [0.01, 0.02, 0.03]}}
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "grid", "scheduler": "none", "space": grid},
        resources={"concurrent_trials": 1},
    )
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [VRSEARCH, "run", str(study)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not finished_results(run):
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, out[-2000:] + err[-2000:]
    assert "continue with 'vrsearch resume" in err and "Traceback" not in err
    trials = pd.read_parquet(run / "trials.parquet")  # intact and readable
    done = set(trials[trials.status == "completed"].trial_id)
    assert 1 <= len(done) < 3
    # the report was rebuilt when the study stopped (not only every 30 s): after every finished trial
    newest = max(stamp for stamp, _ in finished_results(run).values())
    assert (run / "report.html").stat().st_mtime_ns >= newest
    resumed = cli("resume", run)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    final = pd.read_parquet(run / "trials.parquet")
    assert len(final) == 3 and set(final.status) == {"completed"} and done <= set(final.trial_id)
