"""Step time of every method over the forward+backward time of its networks alone.

For each registered method: one full training step (the method's forward
with all its losses, samplers, banks and teachers, backward, optimiser step)
against the unavoidable floor — forward+backward of each network the method
trains, once, on the same labeled+unlabeled patches. The two are timed in
alternation (A B A B …) in one process and the ratio is taken pair by pair,
so machine noise hits both alike.

    .venv/bin/python benchmarks/method_step.py [--repeats 6] [--patch 48 48 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vrsearch.engine.trainer import Trainer
from vrsearch.models.nets import SegNet
from vrsearch.methods import all_methods
from vrsearch.study import load_study


def full_step(trainer: Trainer, batch, it: int) -> float:
    t0 = time.perf_counter()
    out = trainer.step_module(batch, it)
    trainer.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    trainer.optimizer.step()
    trainer.method.after_step(it)
    return time.perf_counter() - t0


def floor_step(nets: list[SegNet], x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    for net in nets:
        logits, feats = net(x, features=True)
        (logits.float().mean() + feats.float().mean()).backward()
    return time.perf_counter() - t0


def measure(study_path: Path, name: str, patch: list[int], repeats: int, scratch: Path) -> dict:
    study = load_study(study_path, [f"method.name={name}", "method.params={}", "search.design=none",
                                    f"dataset.patch_size={patch}", "train.batch.unlabeled=2",
                                    "train.iterations=1000", "train.threads=2"])
    trainer = Trainer(study, scratch / name)
    nets = [m for m in trainer.method.modules()
            if isinstance(m, SegNet) and any(p.requires_grad for p in m.parameters())]
    src = trainer._source(0)
    # run past warm-ups (LCL's, self-training's first refresh) so every loss term is active
    start = int(0.5 * study.train.iterations)
    steps, floors = [], []
    for k in range(repeats + 2):
        batch = src.batch(start + k)
        x = batch.image if batch.unlabeled is None or not trainer.needs.unlabeled else \
            torch.cat([batch.image, batch.unlabeled])
        s = full_step(trainer, batch, start + k)
        f = floor_step(nets, x)
        if k >= 2:
            steps.append(s)
            floors.append(f)
    ratios = [s / f for s, f in zip(steps, floors)]
    return {"step_ms": 1e3 * statistics.median(steps), "floor_ms": 1e3 * statistics.median(floors),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "networks": len(nets)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=Path("studies/dvcl_vs_labeled_only.yaml"))
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="vrs-step-"))
    rows = {spec.name: measure(args.study, spec.name, args.patch, args.repeats, scratch) for spec in all_methods()}
    print(f"patch {args.patch}, batch 2 labeled + 2 unlabeled, median of {args.repeats} paired steps")
    print(f"{'method':<18} {'nets':>4} {'step ms':>9} {'floor ms':>9} {'step/floor':>10} {'(min–max)':>13}")
    for name, r in rows.items():
        print(f"{name:<18} {r['networks']:>4} {r['step_ms']:>9.0f} {r['floor_ms']:>9.0f} {r['ratio']:>10.2f} "
              f"{r['ratio_min']:>6.2f}–{r['ratio_max']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
