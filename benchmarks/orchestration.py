"""Orchestration cost, measured side by side in one run.

1. Study wall time under ``vrsearch run`` (real Ray Tune, one trial at a time)
   divided by the wall time of the same trials run back to back by the bare
   engine in one process.
2. Fixed per-trial overhead with and without a Ray Train worker group:
   (study wall − Ray start-up − bare-engine time of the same trials) / trials,
   for ``workers_per_trial`` 1 (engine inside the Tune trial) and 2 (DDP).

    .venv/bin/python benchmarks/orchestration.py [--trials 3] [--iterations 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from vrsearch.data.phantom import PhantomConfig, write_phantom
from vrsearch.engine.trial import run_trial
from vrsearch.study import load_study
from vrsearch.study.design import apply_cell, cells_with_seeds

VRSEARCH = str(Path(sys.executable).with_name("vrsearch"))


def study_dict(root: Path, out: Path, trials: int, iterations: int, workers: int) -> dict:
    lrs = [round(0.002 * (i + 1), 4) for i in range(trials)]
    return {
        "name": f"bench-w{workers}",
        "dataset": {"layout": "msd", "root": str(root), "labeled_ratio": 0.5, "val_fraction": 0.25,
                    "test_fraction": 0.25, "patch_size": [32, 32, 32]},
        "model": {"channels": [8, 16, 32], "feature_dim": 8},
        "train": {"iterations": iterations, "batch": {"labeled": 2, "unlabeled": 0},
                  "eval": {"every": iterations, "at_start": False}, "threads": 1},
        "search": {"design": "grid", "scheduler": "none",
                   "space": {"train.optimizer.lr": {"type": "categorical", "choices": lrs}}},
        "resources": {"concurrent_trials": 1, "workers_per_trial": workers, "cpus_per_worker": 1},
        "output": {"dir": str(out)},
    }


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def bare_engine(study_path: Path, scratch: Path) -> float:
    """The same trials, back to back in this process, no Ray."""
    study = load_study(study_path)
    base = study.model_dump(mode="json")
    t0 = time.perf_counter()
    for i, cell in enumerate(cells_with_seeds(study)):
        seed = cell.pop("train.seed")
        run_trial(apply_cell(base, cell, seed), f"bare{i}", scratch / f"bare{i}")
    return time.perf_counter() - t0


def ray_startup() -> float:
    code = ("from vrsearch.orchestrate.local import loopback_init; import ray, tempfile, pathlib;"
            "loopback_init(pathlib.Path(tempfile.mkdtemp(prefix='vrs-b')));ray.shutdown()")
    return timed([sys.executable, "-c", code])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vrs-bench-"))
    try:
        root = write_phantom(work / "ds", PhantomConfig(cases=8, unlabeled=0, size=(48, 48, 32), spacing=(7, 7, 8)))
        startup = ray_startup()
        rows = {}
        for workers in (1, 2):
            path = work / f"study{workers}.yaml"
            path.write_text(yaml.safe_dump(study_dict(root, work / f"run{workers}", args.trials, args.iterations, workers)))
            bare = bare_engine(path, work / f"bare{workers}")
            study = timed([VRSEARCH, "run", str(path)])
            rows[workers] = {"study_s": study, "bare_s": bare, "ray_startup_s": startup,
                             "ratio": study / bare, "overhead_per_trial_s": (study - startup - bare) / args.trials}
        print(f"{args.trials} trials × {args.iterations} iterations; Ray start-up {startup:.1f}s")
        print(f"{'workers/trial':>13} {'vrsearch s':>11} {'bare engine s':>14} {'ratio':>7} {'overhead/trial s':>17}")
        for w, r in rows.items():
            print(f"{w:>13} {r['study_s']:>11.1f} {r['bare_s']:>14.1f} {r['ratio']:>7.2f} {r['overhead_per_trial_s']:>17.1f}")
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
