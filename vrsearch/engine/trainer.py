"""The pure-torch training loop (no Ray): one trial of one method.

``Trainer.fit`` runs iterations of the method's step with a schedule that is
a function of the iteration, evaluates on validation every
``train.eval.every`` iterations (sliding-window inference), keeps the best
model on validation, checkpoints everything needed to resume bit-for-bit,
and finally evaluates the selected model on the test split exactly once.

The step never waits for the device: losses, terms and a NaN/Inf flag stay
on it (:class:`~vrsearch.engine.monitor.LossMonitor`) until a log, evaluation
or checkpoint point.
``train.precision``/``channels_last``/``compile`` are in
:mod:`vrsearch.engine.performance`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from vrsearch.core.step import Batch
from vrsearch.data.pipeline import (
    BatchSource,
    PatchStream,
    batches,
    cached,
    case_dicts,
    labeled_train_transform,
    unlabeled_train_transform,
)
from vrsearch.data.prepare import PreparedData
from vrsearch.engine.allocator import keep_freed_memory
from vrsearch.engine.checkpoint import FORMAT, load_checkpoint, save_atomic
from vrsearch.engine.evaluate import EvalCase, evaluate, load_eval_cases
from vrsearch.engine.fit_state import FitResult, Reporter, RunState, summarize
from vrsearch.engine.metrics import METRIC_COLUMNS
from vrsearch.engine.monitor import LossMonitor, TrialDiverged
from vrsearch.engine.performance import (
    compile_failure,
    compile_networks,
    grad_scaler,
    is_compile_error,
    resolve_precision,
    to_channels_last,
)
from vrsearch.engine.prepare import prepare_for, prepared_store
from vrsearch.engine.schedules import lr_at
from vrsearch.engine.setup import build_optimizer, pick_device, seed_everything
from vrsearch.methods import get_method
from vrsearch.methods.base import BuildContext, Method
from vrsearch.results import faults
from vrsearch.study.schema import Study


class Trainer:
    """Train one configuration. ``ckpt_dir`` holds ``last.pt`` and ``best.pt``."""

    def __init__(
        self, study: Study, ckpt_dir: Path, *, data: PreparedData | None = None, rank: int = 0, world_size: int = 1
    ):
        self.study, self.ckpt_dir, self.rank, self.world = study, Path(ckpt_dir), rank, world_size
        t = study.train
        keep_freed_memory()  # reuse a step's freed temporaries instead of new pages (engine/allocator.py)
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed, t.deterministic)
        self.device = pick_device(t.device)
        self.precision = resolve_precision(t.precision, self.device)  # a bad choice fails before data work
        self.spec = get_method(study.method.name)
        self.params = self.spec.validate(study.method.params)
        #: what the method's step reads (unlabeled batches are drawn only when it reads them)
        self.needs = self.spec.data_needs(self.params)
        self.data = data or prepare_for(study)
        #: the node's prepared-data cache (None: ``VRSEARCH_CACHE_DIR=off``, every file decoded here)
        self.store = prepared_store(study)
        if self.device.type == "cuda" and not t.deterministic:
            torch.backends.cudnn.benchmark = True  # fixed patch shapes: autotuning pays off
        ctx = BuildContext(study.model, self.data.num_classes, t.iterations, t.seed, self.data.class_names, t.log_every)
        self.method: Method = self.spec.build(self.params, ctx).to(self.device)
        #: memory format of input batches (None: as they come)
        self.input_format: torch.memory_format | None = None
        if t.channels_last:
            to_channels_last(self.method)
            # a 2D model's batches are [B, C, X, Y, 1] (5D): their slices take the weights' layout
            self.input_format = torch.channels_last_3d if study.model.spatial_dims == 3 else None
        if t.compile:
            compile_networks(self.method, self.device)  # checks the toolchain first: one-line error
        #: what the loop calls; the orchestrator may replace it with a DDP wrapper of ``method``
        self.step_module: torch.nn.Module = self.method
        self.optimizer = build_optimizer(study.train.optimizer, list(self.method.trainable_parameters()))
        self.scaler = grad_scaler(self.precision, self.device)  # fp16 only
        self.roi = tuple(study.train.eval.roi_size or study.dataset.patch_size)
        self.val_cases = load_eval_cases(self.data.split.val, self.data.dataset, self.store)

    # -- data -------------------------------------------------------------
    def _source(self, start: int) -> BatchSource:
        d, t, split = self.data.dataset, self.study.train, self.data.split
        lab = cached(case_dicts(split.labeled, True), labeled_train_transform(d, self.data.num_classes, self.store), d)
        streams = PatchStream(lab, t.batch.labeled, t.seed, 0, self.rank)
        unl = None
        if self.needs.unlabeled and t.batch.unlabeled > 0:
            ds = cached(case_dicts(split.unlabeled, False), unlabeled_train_transform(d, self.store), d)
            unl = PatchStream(ds, t.batch.unlabeled, t.seed, 1, self.rank)
        return BatchSource(streams, unl, start, t.iterations)

    # -- state ------------------------------------------------------------
    def _state(self, it: int, best: dict[str, Any], history: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "iteration": it,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": best,
            "history": history,
            "elapsed": elapsed,
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def _restore(self) -> tuple[int, dict[str, Any], list[dict[str, Any]], float]:
        state = load_checkpoint(self.ckpt_dir / "last.pt")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        return state["iteration"], state["best"], state["history"], state["elapsed"]

    def _evaluate(self, cases: Sequence[EvalCase]) -> list[dict[str, Any]]:
        """Evaluate ``cases``; with several ranks each scores a shard and all get every row."""
        mine = cases[self.rank :: self.world]
        rows = evaluate(
            self.method.predictor(),
            mine,
            self.data.num_classes,
            self.roi,
            self.study.train.eval,
            self.device,
            amp_dtype=self.precision.dtype,
        )
        if self.world > 1:
            parts: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(parts, rows)
            order = {c.case_id: i for i, c in enumerate(cases)}
            rows = sorted((r for part in parts for r in part), key=lambda r: (order[r["case_id"]], r["class_index"]))
        return rows

    def _save(self, obj: dict[str, Any], name: str) -> None:
        if self.rank == 0:
            save_atomic(obj, self.ckpt_dir / name)
        if self.world > 1:
            torch.distributed.barrier()

    def validate(self) -> list[dict[str, Any]]:
        return self._evaluate(self.val_cases)

    # -- loop -------------------------------------------------------------
    def fit(self, report: Reporter | None = None, resume: bool = True, stop_at: int | None = None) -> FitResult:
        """Train to ``train.iterations`` (or until the checkpoint at ``stop_at``,
        returning status ``"paused"``), resuming from ``last.pt`` if present."""
        t = self.study.train
        run = self._begin(resume, report)
        status, error, it = "completed", "", run.start
        self.method.train()
        pin = self.device.type == "cuda"
        try:
            if run.start == 0 and t.eval.at_start:
                self._evaluate_at(run, 0)
            source = batches(self._source(run.start), self.study.dataset.num_workers, pin)
            for it, batch in enumerate(source, start=run.start):
                lr = lr_at(it, t.optimizer.lr, t.iterations, t.schedule)
                self._guarded_step(batch, it, lr, run.monitor)
                faults.point("step", it + 1, world=self.world)
                if self._at_points(run, it + 1, lr, stop_at):
                    return self._finish("paused", "", it + 1, run.best, run.history, run.elapsed())
            it = t.iterations if t.iterations > run.start else run.start
        except TrialDiverged as exc:
            status, error = "failed", str(exc)
            if exc.completed is not None:
                it = exc.completed
        return self._finish(status, error, it, run.best, run.history, run.elapsed())

    def _begin(self, resume: bool, report: Reporter | None) -> RunState:
        """The loop's state: fresh, or restored from ``last.pt``."""
        best: dict[str, Any] = {"score": -math.inf, "iteration": 0, "rows": []}
        history: list[dict[str, Any]] = []
        start, elapsed = 0, 0.0
        if resume and (self.ckpt_dir / "last.pt").exists():
            start, best, history, elapsed = self._restore()
        self.resumed_from = start
        self.history = history  # live view for reporters (rows grow as training goes)
        return RunState(start, best, history, time.perf_counter() - elapsed, LossMonitor(self.device), report)

    def _guarded_step(self, batch: Batch, it: int, lr: float, monitor: LossMonitor) -> None:
        """:meth:`_step`; a step that fails after an earlier non-finite loss (NaN weights)
        is reported as that divergence, a compile error as one line."""
        try:
            self._step(batch, it, lr, monitor)
        except TrialDiverged:
            raise
        except Exception as exc:
            monitor.check(world=1)
            if self.study.train.compile and is_compile_error(exc):
                raise compile_failure(exc, self.device) from None
            raise

    def _at_points(self, run: RunState, done: int, lr: float, stop_at: int | None) -> bool:
        """Log, evaluate and checkpoint where iteration ``done`` calls for it; True when
        the loop pauses here (``stop_at``)."""
        t = self.study.train
        last = done == t.iterations
        log = done % t.log_every == 0 or last
        evaluate_now = done % t.eval.every == 0 or last
        checkpoint = done % (t.checkpoint_every or t.eval.every) == 0 or last
        if log or evaluate_now or checkpoint:
            # the loop's only wait for the device (besides fp16's GradScaler, which reads its
            # overflow flag every step): never log, evaluate or save a diverged model
            run.monitor.check(self.world)
        if log:
            run.row(done).update(run.monitor.row(), lr=lr, time_s=run.elapsed())
        if evaluate_now:
            self._evaluate_at(run, done)
        if checkpoint:
            self._save(self._state(done, run.best, run.history, run.elapsed()), "last.pt")
            return stop_at is not None and stop_at <= done < t.iterations
        return False

    def _evaluate_at(self, run: RunState, i: int) -> dict[str, float]:
        """Validate at iteration ``i``: record it, keep the best model, report."""
        rows = self.validate()
        val = summarize(rows)
        r = run.row(i)
        r.update({f"val_{k}": v for k, v in val.items()})
        r["time_s"] = run.elapsed()
        if i > 0 and val["dice"] > run.best["score"]:
            run.best.update(score=val["dice"], iteration=i, rows=rows)
            self._save({"format": FORMAT, "method": self.method.state_dict(), "iteration": i}, "best.pt")
        if run.report is not None:
            run.report({"iteration": i, **r})
        return val

    def _step(self, batch: Batch, it: int, lr: float, monitor: LossMonitor) -> None:
        """One optimiser step, without waiting for the device.

        A non-finite loss is only recorded here (on the device); the loop fails the
        trial at its next log/evaluation/checkpoint point, naming the first such
        iteration. The optimiser steps in between are not skipped: the trial is
        lost anyway, a skip would need a host sync or a copy of the weights every
        step, and no NaN weights are ever evaluated, reported or saved, because
        the check comes first. (With fp16 the ``GradScaler`` skips them anyway.)"""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        batch = batch.to(self.device)
        if self.input_format is not None:
            fmt = self.input_format
            batch.image = batch.image.contiguous(memory_format=fmt)
            if batch.unlabeled is not None:
                batch.unlabeled = batch.unlabeled.contiguous(memory_format=fmt)
        with self.precision.autocast(self.device):  # the forward only; backward runs in the forward's dtypes
            out = self.step_module(batch, it)
        monitor.add(it + 1, out.loss, out.terms)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(out.loss).backward()
            self.scaler.step(self.optimizer)  # skips the step if a gradient overflowed
            self.scaler.update()
        else:
            out.loss.backward()
            self.optimizer.step()
        self.method.after_step(it)

    def _finish(
        self, status: str, error: str, it: int, best: dict[str, Any], history: list[dict[str, Any]], wall: float
    ) -> FitResult:
        evals = [r for r in history if "val_dice" in r]
        final_val = {k: evals[-1][f"val_{k}"] for k in METRIC_COLUMNS} if evals else {}
        cases = [{"split": "val", "iteration": best["iteration"], **r} for r in best["rows"]]
        test: dict[str, float] = {}
        if status == "completed" and best["rows"] and self.data.split.test:
            # the selected (best-on-validation) model, evaluated on test exactly once
            state = load_checkpoint(self.ckpt_dir / "best.pt")
            self.method.load_state_dict(state["method"])
            test_cases = load_eval_cases(self.data.split.test, self.data.dataset, self.store)
            rows = self._evaluate(test_cases)
            cases += [{"split": "test", "iteration": best["iteration"], **r} for r in rows]
            test = summarize(rows)
        best_val = summarize(best["rows"]) if best["rows"] else {}
        history.sort(key=lambda r: r["iteration"])
        return FitResult(
            status,
            error,
            it,
            best["iteration"],
            best_val,
            final_val,
            test,
            history,
            cases,
            wall,
            resumed_from=getattr(self, "resumed_from", 0),
        )
