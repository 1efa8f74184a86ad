"""Studies on a simulated autoscaling Ray cluster (issue 23), through the real CLI:
``vrsearch run STUDY --address <cluster>``.

The cluster (:mod:`tests.e2e.cluster`: Ray's ``AutoscalingCluster``, its real
autoscaler and fake multi-node provider) has a head with no CPUs for trials and
one worker node type ``{CPU: 1, trial_slot: 1}``, 0 to 2 nodes, idle nodes
removed after 6 s. The studies ask for ``resources.custom_per_worker:
{trial_slot: 1}``, so every training worker runs on a worker node. All nodes
share this machine's filesystem — the shared volume (``output.dir``) a real
cluster mounts on every node. Each test prints what it saw, for the record.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pandas as pd
import pytest

from tests.e2e.cluster import LoopbackAutoscalingCluster
from tests.e2e.conftest import actor_marks
from tests.e2e.test_cli import VRSEARCH
from tests.e2e.test_run import finished_results, write_study
from tests.storage.conftest import _moto, s3  # noqa: F401 - the local S3 server, for the mirror test

pytestmark = pytest.mark.slow
SLOT = {"CPU": 1, "trial_slot": 1}
ON_WORKERS = {"cpus_per_worker": 1, "custom_per_worker": {"trial_slot": 1}}
SEARCH = {
    "design": "search",
    "searcher": "random",
    "scheduler": "none",
    "num_samples": 3,
    "space": {"train.optimizer.lr": {"type": "float", "low": 0.005, "high": 0.05, "log": True}},
}
HANG = "hang:step:4"  # once armed, a training process that passes step 4 (checkpoint at 3) stops there
#: armed, the first two trials to pass step 4 go on and the third stops there: with 2 concurrent trials
#: it starts only after one of the first two finished, whatever the machine's speed
SKIP = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    marker = tmp_path_factory.mktemp("fault") / "fired"
    marker.write_text("disarmed")
    c = LoopbackAutoscalingCluster(
        {"CPU": 0}, {"slot": {"resources": SLOT, "node_config": {}, "min_workers": 0, "max_workers": 2}}
    )
    c.start(override_env={"VRSEARCH_FAULT": HANG, "VRSEARCH_FAULT_ONCE": str(marker), "VRSEARCH_FAULT_SKIP": str(SKIP)})
    c.fault_marker = marker
    try:
        yield c
    finally:
        c.shutdown()


@contextlib.contextmanager
def hang_armed(cluster) -> Iterator[None]:
    """Inside: the third trial to pass step 4 stops there (until its node or driver is killed);
    on exit the fault is disarmed for the next tests unless it fired."""
    for slot in cluster.fault_marker.parent.glob(f"{cluster.fault_marker.name}.pass*"):
        slot.unlink()  # pass slots an earlier arming left
    cluster.fault_marker.unlink()
    try:
        yield
    finally:
        if not cluster.fault_marker.exists():
            cluster.fault_marker.write_text("disarmed")


def record(capsys, *lines: str) -> None:
    with capsys.disabled():
        print("", *(f"[cluster] {line}" for line in lines), sep="\n")


def short(node: str) -> str:
    return f"node …{node[-5:]}"


def launch(cluster, *args, env: dict | None = None, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [VRSEARCH, *map(str, args), "--address", cluster.address],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**cluster.env, **(env or {})},
        start_new_session=True,
    )


def alive(proc: subprocess.Popen, log: Path) -> bool:
    assert proc.poll() is None, f"the driver exited with {proc.returncode}: {log.read_text()[-3000:]}"
    return True


def optuna_consistent(run: Path, trials: pd.DataFrame) -> None:
    """Every proposal COMPLETE, told the score its (single-seed) trial reported last."""
    ost = optuna.load_study(study_name="tiny", storage=f"sqlite:///{run / 'optuna.db'}")
    assert [t.state.name for t in ost.trials] == ["COMPLETE"] * len(trials)
    told = {t.number: t.value for t in ost.trials}
    assert sorted(told) == sorted(trials.optuna_trial.astype(int))
    for row in trials.itertuples():
        assert told[int(row.optuna_trial)] == pytest.approx(row.final_val_dice, abs=1e-9)


def test_a_study_scales_up_survives_a_lost_node_and_scales_down(cluster, tiny_phantom, tmp_path, capsys):
    study = write_study(
        tmp_path, tiny_phantom, search=SEARCH, resources={"concurrent_trials": 2, "max_failures": 1, **ON_WORKERS}
    )
    run, log = tmp_path / "run", tmp_path / "run.log"
    start = time.monotonic()
    with hang_armed(cluster):
        proc = launch(cluster, "run", study, log=log)
        try:
            pid = cluster.wait_for(
                lambda: alive(proc, log) and cluster.fault_marker.exists() and cluster.fault_marker.read_text().strip(),
                300,
                "the third trial to reach step 4",
            )
        except BaseException:  # no driver (nor its stopped trial) left holding the cluster's slots
            proc.kill()
            raise
    lost = cluster.node_of(int(pid))
    assert lost, "the stopped training process is not on a worker node"
    metas = {m.parent.name: json.loads(m.read_text()) for m in run.glob("trials/*/meta.json")}
    victim = next(
        t for t, m in metas.items() if m["node_id"] == lost and not (run / "trials" / t / "result.json").exists()
    )
    before = finished_results(run)
    assert before, "no trial had finished when the third reached step 4"
    launched_before = cluster.workers()
    assert cluster.kill_node(lost), "no process of the node was found"
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    study_s = time.monotonic() - start

    trials = pd.read_parquet(run / "trials.parquet").set_index("trial_id", drop=False)
    after = finished_results(run)
    rerun = [t for t, stamp in before.items() if after.get(t) != stamp]
    assert len(trials) == 3 and set(trials.status) == {"completed"}, trials[["status", "error"]]
    assert not rerun, f"finished trials re-run: {rerun}"
    workers = cluster.workers()
    head = next(k for k, v in cluster.nodes().items() if v["head"])
    assert set(trials.node_id) <= set(workers) and head not in set(trials.node_id)  # never on the head
    assert (trials.worker_nodes == trials.node_id).all()
    assert len(launched_before) >= 2 and lost in workers  # the autoscaler launched the nodes it ran on
    retried = trials.loc[victim]
    assert retried.node_id != lost and retried.resumed_from == 3  # continued from its checkpoint elsewhere
    history = pd.read_parquet(run / "history.parquet")
    assert history.groupby("trial_id").iteration.apply(lambda s: s.is_unique and s.max() == 6).all()
    optuna_consistent(run, trials)

    down = cluster.wait_for(
        lambda: (w := cluster.workers()) and not any(w.values()) and w, 180, "the idle worker nodes to be removed"
    )
    down_s = time.monotonic() - start - study_s
    # every attempt: where each trial had started when the node was killed, and where it ended
    attempts = Counter(m["node_id"] for m in metas.values())
    attempts.update(node for t, node in trials.node_id.items() if metas.get(t, {}).get("node_id") != node)
    placed = Counter(trials.node_id)
    record(
        capsys,
        f"nodes launched by the autoscaler: {len(workers)} ({', '.join(short(n) for n in sorted(workers))})",
        "trials per node (last attempt): "
        + ", ".join(f"{short(n)}: {k}" for n, k in sorted(placed.items()))
        + "; attempts per node: "
        + ", ".join(f"{short(n)}: {k}" for n, k in sorted(attempts.items())),
        f"killed {short(lost)} while trial {victim} trained (after step 4); retried on {short(retried.node_id)} "
        f"from iteration {int(retried.resumed_from)}",
        f"trials lost: {3 - int((trials.status == 'completed').sum())}, re-run: {len(rerun)} "
        f"({len(before)} finished before the kill, unchanged)",
        f"worker nodes alive after scale-down: {sum(down.values())}; the study took {study_s:.0f} s "
        f"(3 trials, one held at step 4 until its node was killed), the scale-down {down_s:.0f} s more",
    )
    assert sum(down.values()) == 0


#: rank 0's results of the 2-node and the 1-node DDP run may differ by at most this much (see the test)
DDP_TOL = 1e-6


def test_a_ddp_trial_spans_two_nodes_and_matches_a_one_node_run(cluster, tiny_phantom, ddp_twins_run, tmp_path, capsys):
    """``workers_per_trial: 2`` with one ``trial_slot`` per worker and one per node: the
    two DDP workers must sit on two nodes (gloo between them, Ray's own ``TorchConfig``
    rendezvous). The same trial on a local Ray (one node, two workers, the loopback
    rendezvous: the first of the session's :data:`~tests.e2e.conftest.DDP_TWINS`, which
    differ from this study only in when they save a checkpoint and in the resources they
    ask for) must give rank 0 the same curve and scores: each rank trains on the same
    seeded shard either way, every kernel runs single-threaded, and the only cross-rank
    arithmetic — gloo's all-reduce of the gradients over two ranks — adds two numbers per
    element, which no placement can reorder. So the runs should agree to the bit;
    ``DDP_TOL`` (1e-6, a few float32 ulps of values near 1) would still let through a
    reduction that reassociated sums, and nothing bigger."""
    start = time.monotonic()
    study = write_study(
        tmp_path,
        tiny_phantom,
        search={"design": "none", "scheduler": "none"},
        resources={"workers_per_trial": 2, **ON_WORKERS},
    )
    proc = launch(cluster, "run", study, log=tmp_path / "cluster.log")
    assert proc.wait(timeout=600) == 0, (tmp_path / "cluster.log").read_text()[-3000:]
    took = time.monotonic() - start
    runs = {"cluster": tmp_path / "run", "local": ddp_twins_run / "run"}
    local = pd.read_parquet(runs["local"] / "trials.parquet")
    first = next(
        t for t in local.trial_id if actor_marks(runs["local"], t)["trials_before"] == 0
    )  # a fresh actor, as here
    trials = {
        "cluster": pd.read_parquet(runs["cluster"] / "trials.parquet").iloc[0],
        "local": local.set_index("trial_id").loc[first],
    }
    nodes = trials["cluster"].worker_nodes.split(",")
    assert len(nodes) == 2 and len(set(nodes)) == 2 and set(nodes) <= set(cluster.workers()), nodes
    assert len(set(trials["local"].worker_nodes.split(","))) == 1
    assert trials["cluster"].status == trials["local"].status == "completed"
    hist = {w: pd.read_parquet(r / "history.parquet") for w, r in runs.items()}
    hist["local"] = hist["local"][hist["local"].trial_id == first]
    hist = {w: h.set_index("iteration") for w, h in hist.items()}
    assert list(hist["cluster"].index) == list(hist["local"].index) and hist["cluster"].index.max() == 6
    diffs = {col: (hist["cluster"][col] - hist["local"][col]).abs().max() for col in ("loss", "val_dice")}
    for col in ("best_val_dice", "final_val_dice", "test_dice", "test_hd95_mm"):
        diffs[col] = abs(float(trials["cluster"][col]) - float(trials["local"][col]))
    record(
        capsys,
        f"DDP trial's workers on {', '.join(short(n) for n in nodes)} (gloo across nodes)",
        "2 nodes vs 1 node, rank 0, largest |difference|: "
        + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items())
        + f" (tolerance {DDP_TOL:g}); took {took:.0f} s on the cluster (nodes launched)",
    )
    assert all(v <= DDP_TOL for v in diffs.values()), diffs


def mirrored_results(s3) -> dict[str, str]:  # noqa: F811 - the imported fixture
    """``{trial id: result.json}`` of the trials whose results are in the mirror."""
    import pyarrow.fs as pafs

    fs = s3.fs()
    found = fs.get_file_info(pafs.FileSelector(f"{s3.bucket}/runs/tiny/trials", recursive=True, allow_not_found=True))
    return {
        Path(f.path).parent.name: fs.open_input_stream(f.path).read().decode()
        for f in found
        if f.path.endswith("/result.json")
    }


def test_a_study_whose_driver_is_lost_resumes_from_its_storage_mirror(cluster, tiny_phantom, tmp_path, s3, capsys):  # noqa: F811
    """The driver's machine goes away mid-study (SIGKILL: its Tune trials on the cluster
    end with it); from another directory — another machine — ``vrsearch resume
    s3://…`` pulls the mirror (``output.storage`` on a local S3 server), runs what is
    missing on the cluster and pushes the finished run back."""
    uri = s3.uri("runs")
    study = write_study(
        tmp_path, tiny_phantom, search=SEARCH, output={"storage": uri}, resources={"concurrent_trials": 2, **ON_WORKERS}
    )
    run, log = tmp_path / "run", tmp_path / "run.log"
    env = {**cluster.env, **{k: v for k, v in s3.env.items() if k.startswith("AWS_")}}
    start = time.monotonic()
    with hang_armed(cluster):  # the third trial stops at step 4: the study cannot end before the kill
        proc = launch(cluster, "run", study, env=env, log=log)
        try:
            cluster.wait_for(
                lambda: alive(proc, log) and mirrored_results(s3) and len(finished_results(run)) < 3,
                300,
                "a first trial to finish and be pushed",
            )
        finally:
            proc.kill()  # the driver only (its trials on the cluster, the stopped one too, are ended by Ray)
            proc.wait()
    before = mirrored_results(s3)  # a trial that finished after the last push is not there: it runs again
    mirror = f"s3://{s3.bucket}/runs/tiny?endpoint_override={s3.endpoint}&scheme=http"
    elsewhere = tmp_path / "elsewhere"
    resumed = subprocess.run(
        [VRSEARCH, "resume", mirror, "--into", str(elsewhere), "--address", cluster.address],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    took = time.monotonic() - start
    assert f"{len(before)} finished trials kept" in resumed.stdout

    trials = pd.read_parquet(elsewhere / "trials.parquet").set_index("trial_id", drop=False)
    assert len(trials) == 3 and set(trials.status) == {"completed"}
    rerun = [t for t, text in before.items() if (elsewhere / "trials" / t / "result.json").read_text() != text]
    assert not rerun, f"finished trials re-run: {rerun}"
    optuna_consistent(elsewhere, trials)
    stored = pd.read_parquet(s3.fs().open_input_file(f"{s3.bucket}/runs/tiny/trials.parquet"))
    assert sorted(stored.trial_id) == sorted(trials.trial_id) and set(stored.status) == {"completed"}
    new = trials[~trials.trial_id.isin(list(before))]
    record(
        capsys,
        f"driver killed with {len(before)} of 3 trials in the mirror; resumed from the S3 mirror into another "
        f"directory: {len(new)} trials run there (resumed_from: {sorted(new.resumed_from.astype(int))}), "
        f"lost 0, re-run {len(rerun)}; the mirror holds all 3; run, kill and resume took {took:.0f} s",
    )
