"""The Ray Tune trainable: one trial = one configuration of one method.

With ``resources.workers_per_trial == 1`` the engine runs inside the Tune
trial process (no worker group: a few seconds of fixed cost instead of ~30).
With more workers, the trial builds a Ray Train ``TorchTrainer`` (DDP; gloo
on CPU, nccl on GPU) whose workers run the same engine, and Train's
``TuneReportCallback`` forwards rank 0's reports to Tune (Train V2: a Tuner
cannot wrap a trainer, so the trainable calls ``fit()`` itself).

The trial's own work (study, engine, fragments, checkpoints keyed by the
configuration) is :mod:`vrsearch.orchestrate.trial_engine`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vrsearch.orchestrate import trial_engine
from vrsearch.orchestrate.trial_engine import engine_imported, replay_finished, run_engine, start_marks, trial_study
from vrsearch.results.lock import checkpoint_claim
from vrsearch.results.rundir import RunDir
from vrsearch.study.design import config_hash

if TYPE_CHECKING:
    import torch
    from ray.train.torch import TorchConfig

    from vrsearch.orchestrate.ddp import LeanTorchTrainer

__all__ = ["trial_resources", "trial_study", "train_worker", "vrsearch_trial", "worker_resources"]


def train_worker(cfg: dict) -> None:
    """Ray Train ``train_loop_per_worker``: the engine under DDP on each worker."""
    import ray.train
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from vrsearch.components.banks import sync_queue_mirrors

    engine_imported()  # before the worker's first mark, as when unpickling this function imported it
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(cfg["threads"])))
    study, cell, seed = trial_study(cfg["base"], cfg["config"])
    marks = None
    if rank == 0:
        from vrsearch.engine.allocator import marks as malloc_marks
        from vrsearch.orchestrate.ddp import rendezvous_seconds

        # the malloc marks of the process that trains (rank 0), not of the Tune actor that waits
        marks = {**cfg["marks"], "worker_start": time.time(), "rendezvous_s": rendezvous_seconds(), **malloc_marks()}

    def wrap(method: torch.nn.Module) -> DDP:
        # DDP overwrites every rank's buffers with rank 0's before each forward; queues keep
        # host mirrors of their pointers, refreshed by a pre-hook that runs after the broadcast
        method.register_forward_pre_hook(sync_queue_mirrors)
        # find_unused_parameters: heads unused by some methods; gradient_as_bucket_view: the
        # gradients are views into DDP's all-reduce buckets (no copy, less memory)
        return DDP(method, find_unused_parameters=True, gradient_as_bucket_view=True)

    run_engine(
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
    trial_engine.STARTED[0] += 1
    if replay_finished(Path(run_dir), trial_id, tune.report):
        return
    study, cell, seed = trial_study(base, config)
    res = study.resources.model_dump()
    # a DDP trial's Tune actor trains nothing: its workers import the engine, the actor does not
    marks = start_marks(engine=res["workers_per_trial"] <= 1)
    threads = max(1, int(res["cpus_per_worker"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    with checkpoint_claim(RunDir(Path(run_dir)), config_hash(study), trial_id) as ckpt:
        if res["workers_per_trial"] <= 1:
            import torch  # here: the driver imports this module without torch

            torch.set_num_threads(threads)
            run_engine(study, cell, seed, Path(run_dir), trial_id, tune.report, ckpt, marks=marks)
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
) -> LeanTorchTrainer:
    """Ray Train's DDP worker group for one trial (its workers run :func:`train_worker`)."""
    import ray.train.v2.api.config as v2  # = ray.train's configs in 2.60, typed as Train V2's
    from ray.tune.integration.ray_train import TuneReportCallback

    from vrsearch.orchestrate.ddp import LeanTorchTrainer

    use_gpu = res["gpus_per_worker"] > 0
    worker_res = worker_resources(res)
    return LeanTorchTrainer(
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
        scaling_config=v2.ScalingConfig(
            num_workers=res["workers_per_trial"], use_gpu=use_gpu, resources_per_worker=worker_res
        ),
        run_config=v2.RunConfig(
            name=trial_id,
            storage_path=str(RunDir(Path(run_dir)).ray_train),
            callbacks=[TuneReportCallback()],
            failure_config=v2.FailureConfig(max_failures=res["max_failures"]),
        ),
    )
