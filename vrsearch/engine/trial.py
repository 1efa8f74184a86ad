"""One trial end to end, without Ray: train, evaluate, and build result rows.

``run_trial`` is what ``vrsearch train`` calls directly and what the Ray
orchestration calls inside a Tune trial; it returns plain rows so the
caller decides where and when they are written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vrsearch.engine.fit_state import FitResult, Reporter
from vrsearch.engine.metrics import METRIC_COLUMNS, conventions
from vrsearch.engine.setup import kernels
from vrsearch.engine.trainer import Trainer
from vrsearch.results.fragments import device_hours_row
from vrsearch.results.io import flatten
from vrsearch.study.design import config_hash
from vrsearch.study.schema import Study


def device_hours(study: Study, wall_time_s: float) -> dict:
    """Compute a trial used: GPU-hours if it had GPUs, else CPU-core-hours."""
    return device_hours_row({"resources": study.resources.model_dump()}, wall_time_s)


@dataclass
class TrialOutput:
    trial: dict
    history: list[dict]
    cases: list[dict]


def trial_row(study: Study, trial_id: str, fit: FitResult, trainer: Trainer) -> dict:
    resolved = study.model_dump(mode="json")
    config = {k: resolved[k] for k in ("method", "dataset", "model", "train")}
    split = trainer.data.split
    row = {
        "trial_id": trial_id,
        "study": study.name,
        "method": study.method.name,
        "status": fit.status,
        "error": fit.error,
        "seed": study.train.seed,
        "labeled_ratio": study.dataset.labeled_ratio,
        "split_seed": study.dataset.split_seed,
        "iterations": fit.iterations,
        "resumed_from": fit.resumed_from,
        "best_iteration": fit.best_iteration,
        "best_val_dice": fit.best_val.get("dice", float("nan")),
        "final_val_dice": fit.final_val.get("dice", float("nan")),
        "wall_time_s": fit.wall_time_s,
        "n_labeled": len(split.labeled),
        "n_unlabeled": len(split.unlabeled),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "config_json": json.dumps(config, sort_keys=True),
        "config_hash": config_hash(study),
        "group_hash": config_hash(study, with_seed=False),
        **device_hours(study, fit.wall_time_s),
        "kernels": kernels(trainer.device),
        "metric_conventions": json.dumps(conventions(study.train.eval.both_empty), sort_keys=True),
    }
    for k in METRIC_COLUMNS:
        row[f"test_{k}"] = fit.test.get(k, float("nan"))
    row.update({f"config.{k}": v for k, v in flatten(config).items()})
    return row


def run_trial(
    study: Study,
    trial_id: str,
    ckpt_dir: Path,
    *,
    report: Reporter | None = None,
    resume: bool = True,
    trainer: Trainer | None = None,
) -> TrialOutput:
    """Train and evaluate one configuration; rows carry ``trial_id``."""
    trainer = trainer or Trainer(study, ckpt_dir)
    fit = trainer.fit(report=report, resume=resume)
    names = trainer.data.class_names
    history = [{"trial_id": trial_id, **r} for r in fit.history]
    cases = [{"trial_id": trial_id, "class_name": names[r["class_index"]], **r} for r in fit.cases]
    return TrialOutput(trial_row(study, trial_id, fit, trainer), history, cases)
