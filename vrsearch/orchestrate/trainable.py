"""The Ray Tune trainable: one trial = one configuration of one method.

With ``resources.workers_per_trial == 1`` the engine runs inside the Tune
trial process (no worker group: a few seconds of fixed cost instead of ~30).
With more workers, the trial builds a Ray Train ``TorchTrainer`` (DDP; gloo
on CPU, nccl on GPU) whose workers run the same engine, and Train's
``TuneReportCallback`` forwards rank 0's reports to Tune (Train V2: a Tuner
cannot wrap a trainer, so the trainable calls ``fit()`` itself).

Checkpoints live in ``<run>/checkpoints/<config_hash>/`` — keyed by the
trial's configuration (seed included), claimed by one live trial at a time
(:func:`~vrsearch.results.lock.checkpoint_claim`) — and fragments of the
results in ``<run>/trials/<trial_id>/``: a retried trial, and any later trial
of the same configuration (a resumed study runs its unfinished trials again
under new ids), continues from the last checkpoint.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vrsearch.components.banks import sync_queue_mirrors
from vrsearch.engine.fit_state import Reporter
from vrsearch.engine.prepare import prepare_for
from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.results import faults, fragments
from vrsearch.results.lock import checkpoint_claim
from vrsearch.results.rundir import META_FILE, RESULT_FILE, TIMING_FILE, RunDir
from vrsearch.study.design import (
    ARM_KEY,
    GROUP_KEY,
    LABEL_KEYS,
    OPTUNA_KEY,
    SEED_KEY,
    apply_cell,
    config_hash,
    group_label,
)
from vrsearch.study.rules import REPORTED
from vrsearch.study.schema import Study

if TYPE_CHECKING:
    from ray.train.torch import TorchConfig, TorchTrainer

#: trials this process has started (a reused Tune actor runs several; recorded in meta.json)
_STARTED = [0]
#: when this process had the engine imported (a trial's timeline starts before it: process start)
_IMPORTED = time.time()


def _stamp(marks: dict | None, name: str) -> None:
    """Record the first time the trial reached ``name`` (``timing.json``, read by
    ``benchmarks/orchestration.py`` for the fixed-cost breakdown)."""
    if marks is not None and name not in marks:
        marks[name] = time.time()


def _start_marks() -> dict:
    import psutil

    return {
        "process_start": psutil.Process().create_time(),
        "imported": _IMPORTED,
        "trial_start": time.time(),
        "trials_before": max(_STARTED[0] - 1, 0),
    }


def trial_study(base: dict, config: dict) -> tuple[Study, dict, int]:
    """The trial's resolved study from Tune's ``config`` (fixed cell or Optuna's flat keys,
    plus ``train.seed`` from the seed-aware searcher); the cell gets its ``group``."""
    cell = dict(config.get("cell") or {})
    cell.update({k: v for k, v in config.items() if k != "cell"})
    seed = int(cell.pop(SEED_KEY, base["train"]["seed"]))
    cell.setdefault(GROUP_KEY, group_label(cell))
    return apply_cell(base, cell, seed), cell, seed


def trial_meta(study: Study, cell: dict, seed: int) -> dict[str, Any]:
    """What a trial's fragment records before training (``meta.json``)."""
    return {
        "study": study.name,
        "seed": seed,
        "arm": cell.get(ARM_KEY, ""),
        "group": cell.get(GROUP_KEY, ""),
        "optuna_trial": cell.get(OPTUNA_KEY),
        "cell": {k: v for k, v in cell.items() if k not in LABEL_KEYS},
        "config_hash": config_hash(study),
        "group_hash": config_hash(study, with_seed=False),
        "method": study.method.name,
        "labeled_ratio": study.dataset.labeled_ratio,
        "split_seed": study.dataset.split_seed,
        "config": {k: study.model_dump(mode="json")[k] for k in ("method", "dataset", "model", "train")},
        "resources": study.resources.model_dump(mode="json"),
        # the process that ran it, and how many trials it had started before (0: a fresh one)
        "process": {"pid": os.getpid(), "trials_before": max(_STARTED[0] - 1, 0)},
    }


def ray_nodes(world: int = 1) -> list[str]:
    """The Ray node id of every training worker, in rank order (gathered over the DDP
    group when ``world`` > 1): where this attempt of the trial runs. A retried trial
    records the nodes of its last attempt."""
    import ray

    node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    if world <= 1:
        return [node]
    import torch.distributed as dist

    nodes: list[Any] = [None] * world
    dist.all_gather_object(nodes, node)
    return [str(n) for n in nodes]


def _metrics(r: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"iteration": int(r["iteration"])}
    for k in REPORTED:
        if k in r:
            v = float(r[k])
            out[k] = v if math.isfinite(v) else float("nan")
    return out


def _engine(
    study: Study,
    cell: dict[str, Any],
    seed: int,
    run_dir: Path,
    trial_id: str,
    report_fn: Reporter,
    ckpt: Path,
    rank: int = 0,
    world: int = 1,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    marks: dict[str, Any] | None = None,
) -> None:
    """Train one trial with the engine (checkpoints in ``ckpt``); rank 0 writes the fragments
    (and, given ``marks``, the trial's timeline in ``timing.json``)."""
    data = prepare_for(study, check=False)
    nodes = ray_nodes(world)
    if rank == 0:
        meta = {**trial_meta(study, cell, seed), "node_id": nodes[0], "worker_nodes": ",".join(nodes)}
        fragments.write_json(fragments.trial_dir(run_dir, trial_id) / META_FILE, meta)
    _stamp(marks, "data")
    trainer = Trainer(study, ckpt, data=data, rank=rank, world_size=world)
    if wrap is not None:
        trainer.step_module = wrap(trainer.method)
    _stamp(marks, "setup")

    reported = []

    def report(r: dict) -> None:
        if rank == 0:  # everything logged so far, so an early-stopped trial keeps its curve
            fragments.write_history(run_dir, trial_id, [{"trial_id": trial_id, **h} for h in trainer.history])
        reported.append(r["iteration"])
        _stamp(marks, "first_report")
        report_fn(_metrics(r))

    out = run_trial(study, trial_id, trainer.ckpt_dir, report=report, trainer=trainer)
    _stamp(marks, "fit")
    faults.point("final")  # the final checkpoint is written, the result not yet
    if rank == 0:
        out.trial.update(arm=cell.get(ARM_KEY, ""), group=cell.get(GROUP_KEY, ""))
        fragments.write_final(run_dir, trial_id, out.trial, out.history, out.cases)
        if marks is not None:
            _stamp(marks, "result")
            fragments.write_json(fragments.trial_dir(run_dir, trial_id) / TIMING_FILE, marks)
    if out.trial["status"] == "failed":
        report_fn({"iteration": int(out.trial["iterations"]), "val_dice": float("nan"), "diverged": 1})
    elif not reported:
        # continued from a checkpoint at the last iteration, nothing left to train: Tune must
        # still get the metric (a trial that never reports stops the study on Tune's strict
        # metric check), and so must the searcher
        report_fn(final_metrics(out.trial))


def train_worker(cfg: dict) -> None:
    """Ray Train ``train_loop_per_worker``: the engine under DDP on each worker."""
    import ray.train
    from torch.nn.parallel import DistributedDataParallel as DDP

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(cfg["threads"])))
    study, cell, seed = trial_study(cfg["base"], cfg["config"])
    marks = None
    if rank == 0:
        from vrsearch.orchestrate.ddp import rendezvous_seconds

        marks = {**cfg["marks"], "worker_start": time.time(), "rendezvous_s": rendezvous_seconds()}

    def wrap(method: torch.nn.Module) -> DDP:
        # DDP overwrites every rank's buffers with rank 0's before each forward; queues keep
        # host mirrors of their pointers, refreshed by a pre-hook that runs after the broadcast
        method.register_forward_pre_hook(sync_queue_mirrors)
        # find_unused_parameters: heads unused by some methods; gradient_as_bucket_view: the
        # gradients are views into DDP's all-reduce buckets (no copy, less memory)
        return DDP(method, find_unused_parameters=True, gradient_as_bucket_view=True)

    _engine(
        study,
        cell,
        seed,
        Path(cfg["run_dir"]),
        cfg["trial_id"],
        ray.train.report,
        Path(cfg["ckpt"]),
        rank,
        world,
        wrap,
        marks,
    )


def worker_resources(res: dict) -> dict:
    """What one training worker asks Ray for: its CPUs, GPUs and ``custom_per_worker``."""
    gpus = {"GPU": res["gpus_per_worker"]} if res["gpus_per_worker"] else {}
    return {"CPU": res["cpus_per_worker"], **gpus, **res.get("custom_per_worker", {})}


def trial_resources(base: dict, config: dict) -> dict:
    """Tune-side resource request of one trial (resources may differ per cell)."""
    res = trial_study(base, config)[0].resources.model_dump()
    if res["workers_per_trial"] <= 1:
        return worker_resources(res)
    # the Train workers reserve CPUs/GPUs and the custom resources; this process must not (on a
    # cluster whose head advertises CPU 0 it waits there for them)
    return {"CPU": 0, "memory": 256 * 2**20}


def final_metrics(result: dict) -> dict:
    """What a trial that ends without a new evaluation reports: its final validation Dice."""
    val = fragments.finite(result.get("final_val_dice"))
    return {"iteration": int(result.get("iterations", 0)), "val_dice": float("nan") if val is None else val}


def _replay_finished(run_dir: Path, trial_id: str, report_fn: Reporter) -> bool:
    """A trial whose result is already written is never trained again (e.g. after a
    driver crash that Tune's experiment state did not record): report and return."""
    result = fragments.read_json(fragments.trial_dir(run_dir, trial_id) / RESULT_FILE)
    if result is None:
        return False
    report_fn(final_metrics(result))
    return True


def _torch_config(use_gpu: bool) -> TorchConfig:
    from ray.train.torch import TorchConfig

    if use_gpu:
        return TorchConfig(backend="nccl")
    if os.environ.get("VRSEARCH_LOCAL_RAY") == "1":  # our own loopback-only Ray
        from vrsearch.orchestrate.ddp import LoopbackTorchConfig

        return LoopbackTorchConfig(backend="gloo")
    return TorchConfig(backend="gloo")


def vrsearch_trial(config: dict[str, Any], base: dict[str, Any] | None = None, run_dir: str = "") -> None:
    """Tune function trainable (``tune.with_parameters(vrsearch_trial, base=..., run_dir=...)``)."""
    from ray import tune

    if base is None:
        raise TypeError("vrsearch_trial needs base= (the resolved study; tune.with_parameters passes it)")

    trial_id = tune.get_context().get_trial_id()
    _STARTED[0] += 1
    marks = _start_marks()
    if _replay_finished(Path(run_dir), trial_id, tune.report):
        return
    study, cell, seed = trial_study(base, config)
    res = study.resources.model_dump()
    threads = max(1, int(res["cpus_per_worker"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    with checkpoint_claim(RunDir(Path(run_dir)), config_hash(study), trial_id) as ckpt:
        if res["workers_per_trial"] <= 1:
            torch.set_num_threads(threads)
            _engine(study, cell, seed, Path(run_dir), trial_id, tune.report, ckpt, marks=marks)
        else:
            _torch_trainer(config, base, run_dir, trial_id, threads, res, ckpt, marks).fit()


def _torch_trainer(
    config: dict[str, Any],
    base: dict[str, Any],
    run_dir: str,
    trial_id: str,
    threads: int,
    res: dict[str, Any],
    ckpt: Path,
    marks: dict[str, Any],
) -> TorchTrainer:
    """Ray Train's DDP worker group for one trial (its workers run :func:`train_worker`)."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    use_gpu = res["gpus_per_worker"] > 0
    worker_res = worker_resources(res)
    return TorchTrainer(
        train_worker,
        train_loop_config={
            "base": base,
            "config": config,
            "run_dir": run_dir,
            "trial_id": trial_id,
            "threads": threads,
            "ckpt": str(ckpt),
            "marks": marks,
        },
        torch_config=_torch_config(use_gpu),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res["workers_per_trial"], use_gpu=use_gpu, resources_per_worker=worker_res
        ),
        run_config=ray.train.RunConfig(
            name=trial_id,
            storage_path=str(RunDir(Path(run_dir)).ray_train),
            callbacks=[TuneReportCallback()],  # type: ignore[list-item]  # ray: a ray.train Callback, typed as ray.tune's
            failure_config=ray.train.FailureConfig(max_failures=res["max_failures"]),
        ),
    )
