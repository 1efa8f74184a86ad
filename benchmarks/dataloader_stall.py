"""Data-loader stall on the phantom: the fraction of step time spent waiting for data.

Runs the real training step of the DVCL vs labeled-only study (the former quickstart) for a few iterations
under several loader settings, side by side in one process (so machine noise
hits every arm alike), and prints for each: mean wait for the next batch,
mean compute time, and stall = wait / (wait + compute).

    .venv/bin/python benchmarks/dataloader_stall.py [--iterations 20] [--study studies/dvcl_vs_labeled_only.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from vrsearch.data.pipeline import batches
from vrsearch.engine.trainer import Trainer
from vrsearch.study import load_study

ARMS = [
    ("memory cache, 0 workers", {"dataset.cache": "memory", "dataset.num_workers": 0}),
    ("memory cache, 2 workers", {"dataset.cache": "memory", "dataset.num_workers": 2}),
    ("no cache, 0 workers", {"dataset.cache": "none", "dataset.num_workers": 0}),
]


def measure(study_path: Path, overrides: dict, iterations: int, scratch: Path) -> dict:
    study = load_study(study_path, [f"{k}={v}" for k, v in overrides.items()] + [f"train.iterations={iterations + 2}"])
    trainer = Trainer(study, scratch)
    method, opt = trainer.method, trainer.optimizer
    it = batches(trainer._source(0), study.dataset.num_workers)
    waits, steps = [], []
    for i in range(iterations + 2):
        t0 = time.perf_counter()
        batch = next(it)
        t1 = time.perf_counter()
        out = method(batch.to(trainer.device), i)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 2:  # skip warm-up (worker start, first allocation)
            waits.append(t1 - t0)
            steps.append(t2 - t1)
    wait, step = sum(waits) / len(waits), sum(steps) / len(steps)
    return {"wait_s": wait, "compute_s": step, "stall": wait / (wait + step)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=Path("studies/dvcl_vs_labeled_only.yaml"))
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for name, overrides in ARMS:
        results[name] = measure(args.study, overrides, args.iterations, Path("/tmp/vrsearch-bench-ckpt"))
    base = results[ARMS[0][0]]["wait_s"] + results[ARMS[0][0]]["compute_s"]
    print(f"{'loader':<26} {'wait/step ms':>12} {'compute ms':>11} {'stall':>7} {'step time vs arm 1':>19}")
    for name, r in results.items():
        ratio = (r["wait_s"] + r["compute_s"]) / base
        print(f"{name:<26} {1e3 * r['wait_s']:>12.1f} {1e3 * r['compute_s']:>11.1f} {r['stall']:>7.1%} {ratio:>19.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
