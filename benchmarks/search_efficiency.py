"""Search efficiency on the phantom: how much compute TPE + ASHA needs to come
within one Dice point of the best cell of a grid over the same space, as a
fraction of the grid's compute.

One ``vrsearch run`` of a full grid (every cell trained to the end), then
``--repeats`` runs of a TPE + ASHA search over the same categorical space
with different searcher seeds (the trials' own seeds are fixed). Compute is
counted in training iterations (what ASHA saves; wall time is reported
too). For a search run, trials are taken in the order Optuna recorded them
finishing; the cost to target is the iterations spent until the best-so-far
validation Dice first reaches ``grid best − tolerance`` (∞ if never).
Printed and written: the grid's best and cost, and per searcher seed the
fraction, with median and range.
    .venv/bin/python benchmarks/search_efficiency.py [--repeats 3] [--iterations 60] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from vrsearch.data.phantom import PhantomConfig, write_phantom

VRSEARCH = str(Path(sys.executable).with_name("vrsearch"))
SPACE = {
    "train.optimizer.lr": {"type": "categorical", "choices": [0.001, 0.003, 0.01, 0.03]},
    "method.params.loss": {"type": "categorical", "choices": ["dice_ce", "ce", "dice"]},
}


def study_dict(root: Path, out: Path, iterations: int, search: dict) -> dict:
    return {
        "name": out.name,
        "dataset": {"layout": "msd", "root": str(root), "labeled_ratio": 0.5, "val_fraction": 0.25,
                    "test_fraction": 0.25, "patch_size": [32, 32, 32]},
        "model": {"channels": [8, 16, 32], "feature_dim": 8, "num_res_units": 0},
        "train": {"iterations": iterations, "batch": {"labeled": 2, "unlabeled": 0}, "seed": 0,
                  "optimizer": {"name": "adam", "lr": 0.01},
                  "eval": {"every": max(1, iterations // 4), "at_start": False}, "threads": 1, "log_every": 5},
        "search": {"space": SPACE, "seeds": [0], **search},
        "resources": {"concurrent_trials": 2, "workers_per_trial": 1, "cpus_per_worker": 1},
        "output": {"dir": str(out)},
    }


def run(study: dict, path: Path) -> pd.DataFrame:
    path.write_text(yaml.safe_dump(study))
    proc = subprocess.run([VRSEARCH, "run", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vrsearch run {path} failed:\n{proc.stderr[-2000:]}")
    return pd.read_parquet(Path(study["output"]["dir"]) / "trials.parquet")


def finish_order(run_dir: Path, trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order Optuna saw them complete (matched on their parameters)."""
    with sqlite3.connect(run_dir / "optuna.db") as db:
        rows = db.execute("select t.trial_id, t.datetime_complete, p.param_name, p.param_value "
                          "from trials t join trial_params p using (trial_id)").fetchall()
    done: dict[int, dict] = {}
    for tid, when, name, value in rows:
        done.setdefault(tid, {"when": when or "9999"})[name] = value
    def matches(cell: dict, params: dict) -> bool:  # Optuna stores a categorical as its choice index
        return all(SPACE[k]["choices"].index(v) == params.get(k) for k, v in cell.items() if k in SPACE)

    order = [min((d["when"] for d in done.values() if matches(cell, d)), default="9999")
             for cell in trials.cell.map(json.loads)]
    return trials.assign(_when=order).sort_values("_when")


def cost_to_target(trials: pd.DataFrame, target: float) -> float:
    best, spent = -math.inf, 0.0
    for _, t in trials.iterrows():
        spent += float(t.iterations or 0)
        if pd.notna(t.best_val_dice):
            best = max(best, float(t.best_val_dice))
        if best >= target:
            return spent
    return math.inf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=60)
    ap.add_argument("--samples", type=int, default=6, help="TPE configurations per search (grid has 12 cells)")
    ap.add_argument("--tolerance", type=float, default=0.01)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vrs-search-"))
    try:
        root = write_phantom(work / "ds", PhantomConfig(cases=8, unlabeled=0, size=(48, 48, 32), spacing=(7, 7, 8)))
        grid = run(study_dict(root, work / "grid", args.iterations, {"design": "grid", "scheduler": "none"}),
                   work / "grid.yaml")
        grid_best, grid_cost = float(grid.best_val_dice.max()), float(grid.iterations.sum())
        target = grid_best - args.tolerance
        rows = []
        for rep in range(args.repeats):
            out = work / f"tpe{rep}"
            search = {"design": "search", "searcher": "tpe", "scheduler": "asha", "num_samples": args.samples,
                      "grace_period": max(1, args.iterations // 4), "seeds": [rep]}
            study = study_dict(root, out, args.iterations, search)
            study["train"]["seed"] = 0
            trials = finish_order(out, run(study, work / f"tpe{rep}.yaml"))
            cost = cost_to_target(trials, target)
            rows.append({"searcher_seed": rep, "best": float(trials.best_val_dice.max()),
                         "iterations_to_target": cost, "fraction": cost / grid_cost,
                         "iterations_total": float(trials.iterations.sum()),
                         "wall_s": float(trials.wall_time_s.sum())})
        fractions = [r["fraction"] for r in rows]
        result = {"grid": {"cells": len(grid), "best": grid_best, "iterations": grid_cost,
                           "wall_s": float(grid.wall_time_s.sum())}, "tolerance": args.tolerance,
                  "searches": rows, "fraction_median": statistics.median(fractions),
                  "fraction_min": min(fractions), "fraction_max": max(fractions)}
        print(f"grid: {len(grid)} cells, best val Dice {grid_best:.4f}, {grid_cost:.0f} iterations")
        print(f"{'searcher seed':>13} {'best':>7} {'iters to target':>16} {'fraction of grid':>17}")
        for r in rows:
            print(f"{r['searcher_seed']:>13} {r['best']:>7.4f} {r['iterations_to_target']:>16.0f} "
                  f"{r['fraction']:>17.2f}")
        print(f"fraction of the grid's compute to come within {args.tolerance} Dice of its best: median "
              f"{result['fraction_median']:.2f} (range {result['fraction_min']:.2f}-{result['fraction_max']:.2f})")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
