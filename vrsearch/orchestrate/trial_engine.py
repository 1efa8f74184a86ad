"""One trial inside its process: the resolved study from Tune's ``config``, the engine,
and the trial's fragments (what :mod:`vrsearch.orchestrate.trainable` runs, on one
worker or on every rank of a Ray Train group).

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

from vrsearch.engine.prepare import prepare_for
from vrsearch.results import faults, fragments
from vrsearch.results.rundir import META_FILE, RESULT_FILE, TIMING_FILE
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

if TYPE_CHECKING:  # annotations only: the driver imports this module without torch
    import torch

    from vrsearch.engine.fit_state import Reporter

#: trials this process has started (a reused Tune actor runs several; recorded in meta.json)
STARTED = [0]
#: when this process imported this module: all that a DDP trial's Tune actor needs (it trains nothing)
LOADED = time.time()
#: when this process had the training engine imported; set by the first trial (or DDP worker)
#: that trains in it, since the study's driver imports this module without the engine
IMPORTED: list[float] = []


def engine_imported() -> float:
    """Import the training engine (torch, MONAI, the trainer) into this process if it is not
    yet there, and return when that was done. A method's own module is imported when the
    trainer builds it (:meth:`vrsearch.registry.MethodSpec.build`), after this mark."""
    if not IMPORTED:
        import vrsearch.engine.trainer
        import vrsearch.engine.trial  # noqa: F401

        IMPORTED.append(time.time())
    return IMPORTED[0]


def stamp(marks: dict | None, name: str) -> None:
    """Record the first time the trial reached ``name`` (``timing.json``, read by
    ``benchmarks/orchestration.py`` for the fixed-cost breakdown)."""
    if marks is not None and name not in marks:
        marks[name] = time.time()


def start_marks(engine: bool = True) -> dict:
    """A trial's first marks: its process's start, when the process had imported what the trial
    runs in it (the engine; with ``engine=False``, a DDP trial's Tune actor: this module only),
    and the trial's start."""
    import psutil

    from vrsearch.engine.allocator import marks

    return {
        "process_start": psutil.Process().create_time(),
        "imported": engine_imported() if engine else LOADED,
        "trial_start": time.time(),
        "trials_before": max(STARTED[0] - 1, 0),
        **marks(),  # how this process's malloc runs (engine/allocator.py); a DDP trial's rank 0 overwrites it
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
        "process": {"pid": os.getpid(), "trials_before": max(STARTED[0] - 1, 0)},
    }


def worker_facts(study: Study, world: int = 1) -> tuple[list[str], str]:
    """The Ray node id of every training worker, in rank order, and the numeric kernels they
    train on (``engine.setup.kernels``; several, "; "-joined, where the ranks' nodes differ),
    gathered over the DDP group when ``world`` > 1: where and on what this attempt of the trial
    runs. A retried trial records those of its last attempt."""
    import ray

    from vrsearch.engine.setup import kernels, pick_device

    mine = (
        ray.get_runtime_context().get_node_id() if ray.is_initialized() else "",
        kernels(pick_device(study.train.device)),
    )
    facts: list[Any] = [mine]
    if world > 1:
        import torch.distributed as dist

        facts = [None] * world
        dist.all_gather_object(facts, mine)
    return [str(n) for n, _ in facts], "; ".join(dict.fromkeys(str(k) for _, k in facts))


def _metrics(r: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"iteration": int(r["iteration"])}
    for k in REPORTED:
        if k in r:
            v = float(r[k])
            out[k] = v if math.isfinite(v) else float("nan")
    return out


def run_engine(
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
    nodes, kernels = worker_facts(study, world)
    if rank == 0:
        meta = {**trial_meta(study, cell, seed), "node_id": nodes[0], "worker_nodes": ",".join(nodes)}
        meta["kernels"] = kernels  # in every row, a stopped or failed trial's too
        fragments.write_json(fragments.trial_dir(run_dir, trial_id) / META_FILE, meta)
    stamp(marks, "data")
    # the engine here, not at the top: the study's driver imports this module (the trainable), not MONAI
    from vrsearch.engine.trainer import Trainer
    from vrsearch.engine.trial import run_trial

    trainer = Trainer(study, ckpt, data=data, rank=rank, world_size=world)
    if wrap is not None:
        trainer.step_module = wrap(trainer.method)
    stamp(marks, "setup")

    reported = []

    def report(r: dict) -> None:
        if rank == 0:  # everything logged so far, so an early-stopped trial keeps its curve
            fragments.write_history(run_dir, trial_id, [{"trial_id": trial_id, **h} for h in trainer.history])
        reported.append(r["iteration"])
        stamp(marks, "first_report")
        report_fn(_metrics(r))

    out = run_trial(study, trial_id, trainer.ckpt_dir, report=report, trainer=trainer)
    stamp(marks, "fit")
    faults.point("final", world=world)  # the final checkpoint is written, the result not yet
    if rank == 0:
        out.trial.update(arm=cell.get(ARM_KEY, ""), group=cell.get(GROUP_KEY, ""), kernels=kernels)
        fragments.write_final(run_dir, trial_id, out.trial, out.history, out.cases)
        if marks is not None:
            stamp(marks, "result")
            fragments.write_json(fragments.trial_dir(run_dir, trial_id) / TIMING_FILE, marks)
    if out.trial["status"] == "failed":
        report_fn({"iteration": int(out.trial["iterations"]), "val_dice": float("nan"), "diverged": 1})
    elif not reported:
        # continued from a checkpoint at the last iteration, nothing left to train: Tune must
        # still get the metric (a trial that never reports stops the study on Tune's strict
        # metric check), and so must the searcher
        report_fn(final_metrics(out.trial))


def final_metrics(result: dict) -> dict:
    """What a trial that ends without a new evaluation reports: its final validation Dice."""
    val = fragments.finite(result.get("final_val_dice"))
    return {"iteration": int(result.get("iterations", 0)), "val_dice": float("nan") if val is None else val}


def replay_finished(run_dir: Path, trial_id: str, report_fn: Reporter) -> bool:
    """A trial whose result is already written is never trained again (e.g. after a
    driver crash that Tune's experiment state did not record): report and return."""
    result = fragments.read_json(fragments.trial_dir(run_dir, trial_id) / RESULT_FILE)
    if result is None:
        return False
    report_fn(final_metrics(result))
    return True
