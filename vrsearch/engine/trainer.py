"""The pure-torch training loop (no Ray): one trial of one method.

``Trainer.fit`` runs iterations of the method's step with a schedule that is
a function of the iteration, evaluates on validation every
``train.eval.every`` iterations (sliding-window inference), keeps the best
model on validation, checkpoints everything needed to resume bit-for-bit,
and finally evaluates the selected model on the test split exactly once.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vrsearch.data.pipeline import (
    BatchSource, PatchStream, batches, cached, case_dicts, labeled_train_transform, unlabeled_train_transform,
)
from vrsearch.data.prepare import PreparedData, prepare_data
from vrsearch.engine.checkpoint import FORMAT, load_checkpoint, save_atomic
from vrsearch.engine.evaluate import evaluate, load_eval_cases
from vrsearch.engine.metrics import METRIC_COLUMNS, mean_foreground
from vrsearch.engine.schedules import lr_at
from vrsearch.methods.base import BuildContext, Method
from vrsearch.registry import get_method
from vrsearch.study.schema import Study

Reporter = Callable[[dict], None]


class TrialDiverged(RuntimeError):
    """The loss became NaN/Inf; the message says when and which terms."""


@dataclass
class FitResult:
    status: str  # "completed" | "failed"
    error: str
    iterations: int
    best_iteration: int
    best_val: dict[str, float]
    final_val: dict[str, float]
    test: dict[str, float]
    history: list[dict]
    cases: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def summarize(rows: list[dict]) -> dict[str, float]:
    return {m: mean_foreground(rows, m) for m in METRIC_COLUMNS}


def build_optimizer(study: Study, params) -> torch.optim.Optimizer:
    o = study.train.optimizer
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


class Trainer:
    """Train one configuration. ``ckpt_dir`` holds ``last.pt`` and ``best.pt``."""

    def __init__(self, study: Study, ckpt_dir: Path, *, data: PreparedData | None = None,
                 rank: int = 0, world_size: int = 1):
        self.study, self.ckpt_dir, self.rank, self.world = study, Path(ckpt_dir), rank, world_size
        t = study.train
        if t.threads:
            torch.set_num_threads(t.threads)
        seed_everything(t.seed, t.deterministic)
        self.device = pick_device(t.device)
        self.spec = get_method(study.method.name)
        self.params = self.spec.validate(study.method.params)
        self.data = data or prepare_data(
            study.dataset, method=self.spec.name, needs_unlabeled=self.spec.needs_unlabeled,
            all_labels=bool(getattr(self.params, "all_labels", False)),
        )
        ctx = BuildContext(study.model, self.data.num_classes, t.iterations, t.seed, self.data.class_names)
        self.method: Method = self.spec.build(self.params, ctx).to(self.device)
        #: what the loop calls; the orchestrator may replace it with a DDP wrapper of ``method``
        self.step_module: torch.nn.Module = self.method
        self.optimizer = build_optimizer(study, list(self.method.trainable_parameters()))
        self.roi = tuple(study.train.eval.roi_size or study.dataset.patch_size)
        self.val_cases = load_eval_cases(self.data.split.val, study.dataset)

    # -- data -------------------------------------------------------------
    def _source(self, start: int) -> BatchSource:
        d, t, split = self.study.dataset, self.study.train, self.data.split
        lab = cached(case_dicts(split.labeled, True), labeled_train_transform(d, self.data.num_classes), d)
        streams = PatchStream(lab, t.batch.labeled, t.seed, 0, self.rank)
        unl = None
        if self.method.uses_unlabeled and t.batch.unlabeled > 0:
            ds = cached(case_dicts(split.unlabeled, False), unlabeled_train_transform(d), d)
            unl = PatchStream(ds, t.batch.unlabeled, t.seed, 1, self.rank)
        return BatchSource(streams, unl, start, t.iterations)

    # -- state ------------------------------------------------------------
    def _state(self, it: int, best: dict, history: list[dict], elapsed: float) -> dict:
        return {
            "format": FORMAT, "iteration": it, "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
            "best": best, "history": history, "elapsed": elapsed,
        }

    def _restore(self) -> tuple[int, dict, list[dict], float]:
        state = load_checkpoint(self.ckpt_dir / "last.pt")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        return state["iteration"], state["best"], state["history"], state["elapsed"]

    def _evaluate(self, cases) -> list[dict]:
        """Evaluate ``cases``; with several ranks each scores a shard and all get every row."""
        mine = cases[self.rank :: self.world]
        rows = evaluate(self.method.predictor(), mine, self.data.num_classes, self.roi,
                        self.study.train.eval, self.device)
        if self.world > 1:
            parts: list = [None] * self.world
            torch.distributed.all_gather_object(parts, rows)
            order = {c.case_id: i for i, c in enumerate(cases)}
            rows = sorted((r for part in parts for r in part), key=lambda r: (order[r["case_id"]], r["class_index"]))
        return rows

    def _save(self, obj: dict, name: str) -> None:
        if self.rank == 0:
            save_atomic(obj, self.ckpt_dir / name)
        if self.world > 1:
            torch.distributed.barrier()

    def validate(self) -> list[dict]:
        return self._evaluate(self.val_cases)

    # -- loop -------------------------------------------------------------
    def fit(self, report: Reporter | None = None, resume: bool = True, stop_at: int | None = None) -> FitResult:
        """Train to ``train.iterations`` (or until the checkpoint at ``stop_at``,
        returning status ``"paused"``), resuming from ``last.pt`` if present."""
        t = self.study.train
        ckpt_every = t.checkpoint_every or t.eval.every
        start, best, history, elapsed = 0, {"score": -math.inf, "iteration": 0, "rows": []}, [], 0.0
        if resume and (self.ckpt_dir / "last.pt").exists():
            start, best, history, elapsed = self._restore()
        t0 = time.perf_counter() - elapsed
        self.history = history  # live view for reporters (rows grow as training goes)
        rows_by_it = {r["iteration"]: r for r in history}
        window: dict[str, list[float]] = {}
        status, error, it = "completed", "", start
        self.method.train()

        def row(i: int) -> dict:
            if i not in rows_by_it:
                rows_by_it[i] = {"iteration": i}
                history.append(rows_by_it[i])
            return rows_by_it[i]

        def do_eval(i: int) -> dict:
            rows = self.validate()
            val = summarize(rows)
            r = row(i)
            r.update({f"val_{k}": v for k, v in val.items()})
            r["time_s"] = time.perf_counter() - t0
            if i > 0 and val["dice"] > best["score"]:
                best.update(score=val["dice"], iteration=i, rows=rows)
                self._save({"format": FORMAT, "method": self.method.state_dict(), "iteration": i}, "best.pt")
            if report is not None:
                report({"iteration": i, **r})
            return val

        try:
            if start == 0 and t.eval.at_start:
                do_eval(0)
            for it, batch in enumerate(batches(self._source(start), self.study.dataset.num_workers), start=start):
                lr = lr_at(it, t.optimizer.lr, t.iterations, t.schedule)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                out = self.step_module(batch.to(self.device), it)
                finite = torch.isfinite(out.loss.detach()).float()
                if self.world > 1:  # every rank stops together, or DDP would hang
                    torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
                if not bool(finite):
                    terms = ", ".join(f"{k}={float(v):.4g}" for k, v in out.terms.items())
                    raise TrialDiverged(f"loss became {float(out.loss.detach())} at iteration {it + 1} ({terms})")
                self.optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                self.optimizer.step()
                self.method.after_step(it)
                for k, v in {"loss": out.loss, **{f"term_{n}": x for n, x in out.terms.items()}}.items():
                    window.setdefault(k, []).append(float(v.detach()))
                done = it + 1
                if done % t.log_every == 0 or done == t.iterations:
                    r = row(done)
                    r.update({k: float(np.mean(v)) for k, v in window.items()}, lr=lr)
                    r["time_s"] = time.perf_counter() - t0
                    window.clear()
                if done % t.eval.every == 0 or done == t.iterations:
                    do_eval(done)
                if done % ckpt_every == 0 or done == t.iterations:
                    self._save(self._state(done, best, history, time.perf_counter() - t0), "last.pt")
                    if stop_at is not None and done >= stop_at and done < t.iterations:
                        return self._finish("paused", "", done, best, history, time.perf_counter() - t0)
            it = t.iterations if t.iterations > start else start
        except TrialDiverged as exc:
            status, error = "failed", str(exc)
        return self._finish(status, error, it, best, history, time.perf_counter() - t0)

    def _finish(self, status: str, error: str, it: int, best: dict, history: list[dict], wall: float) -> FitResult:
        evals = [r for r in history if "val_dice" in r]
        final_val = {k: evals[-1][f"val_{k}"] for k in METRIC_COLUMNS} if evals else {}
        cases = [{"split": "val", "iteration": best["iteration"], **r} for r in best["rows"]]
        test: dict[str, float] = {}
        if status == "completed" and best["rows"] and self.data.split.test:
            # the selected (best-on-validation) model, evaluated on test exactly once
            state = load_checkpoint(self.ckpt_dir / "best.pt")
            self.method.load_state_dict(state["method"])
            test_cases = load_eval_cases(self.data.split.test, self.study.dataset)
            rows = self._evaluate(test_cases)
            cases += [{"split": "test", "iteration": best["iteration"], **r} for r in rows]
            test = summarize(rows)
        best_val = summarize(best["rows"]) if best["rows"] else {}
        history.sort(key=lambda r: r["iteration"])
        return FitResult(status, error, it, best["iteration"], best_val, final_val, test, history, cases, wall)
