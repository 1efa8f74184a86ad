"""Orchestration cost, measured side by side in one run: cold trials (every trial in a
fresh Tune actor, every file decoded by every trial — the path before warm actors) and
warm ones (reused actors, the prepared-data cache), with and without a worker group.

1. Study wall time under ``vrsearch run`` (real Ray Tune, one trial at a time) divided by
   the wall time of the same trials run back to back by the bare engine in one process.
2. Fixed cost per trial: (study wall − Ray start-up − bare-engine time) / trials, for
   ``workers_per_trial`` 1 (engine inside the Tune trial) and 2 (a Ray Train DDP group).
3. Where it goes, from each trial's ``timing.json`` (means over the trials): the gap
   between one trial's result and the next trial's start (Tune scheduling, actor/process
   start, imports — or a reused actor's reset), process start → engine imported (fresh
   processes only; since 2026-12-06 a DDP trial's Tune actor imports only the trainable, and
   its workers import the engine inside "worker group"), data (index, split), set-up (cache
   read or decode, model, eval cases), worker group start and rendezvous (DDP), training +
   evaluation, result write.

    .venv/bin/python benchmarks/orchestration.py [--trials 3] [--iterations 20]
        [--workers 1,2] [--modes cold,warm] [--json out.json]

``--iterations`` sets the trial length: ~20 for the fixed cost, a few hundred for the
ratio of ~60-s trials (``--workers 1 --modes warm``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
MODES = {"cold": {"VRSEARCH_REUSE_ACTORS": "0", "VRSEARCH_CACHE_DIR": "off"}, "warm": {}}


def study_dict(root: Path, out: Path, trials: int, iterations: int, workers: int) -> dict:
    lrs = [round(0.002 * (i + 1), 4) for i in range(trials)]
    return {
        "name": f"bench-w{workers}",
        "dataset": {
            "layout": "msd",
            "root": str(root),
            "labeled_ratio": 0.5,
            "val_fraction": 0.25,
            "test_fraction": 0.25,
            "patch_size": [32, 32, 32],
        },
        "model": {"channels": [8, 16, 32], "feature_dim": 8},
        "train": {
            "iterations": iterations,
            "batch": {"labeled": 2, "unlabeled": 0},
            "eval": {"every": iterations, "at_start": False},
            "threads": 1,
        },
        "search": {
            "design": "grid",
            "scheduler": "none",
            "space": {"train.optimizer.lr": {"type": "categorical", "choices": lrs}},
        },
        "resources": {"concurrent_trials": 1, "workers_per_trial": workers, "cpus_per_worker": 1},
        "output": {"dir": str(out)},
    }


def timed(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def bare_engine(study_path: Path, scratch: Path) -> float:
    """The same trials, back to back in this process, no Ray (with the prepared-data cache,
    in a fresh folder: the first trial builds it, as in the study)."""
    os.environ["VRSEARCH_CACHE_DIR"] = str(scratch / "cache")
    try:
        study = load_study(study_path)
        base = study.model_dump(mode="json")
        t0 = time.perf_counter()
        for i, cell in enumerate(cells_with_seeds(study)):
            seed = cell.pop("train.seed")
            run_trial(apply_cell(base, cell, seed), f"bare{i}", scratch / f"bare{i}")
        return time.perf_counter() - t0
    finally:
        del os.environ["VRSEARCH_CACHE_DIR"]


def ray_startup() -> float:
    code = (
        "from vrsearch.orchestrate.local import loopback_init; import ray, tempfile, pathlib;"
        "loopback_init(pathlib.Path(tempfile.mkdtemp(prefix='vrs-b')));ray.shutdown()"
    )
    return timed([sys.executable, "-c", code])


def imports() -> float:
    """A fresh interpreter importing what a single-process trial's actor imports: Ray Tune, the
    trainable and the engine it loads at the trial's start (a DDP trial's actor skips the engine)."""
    code = "import ray.tune, vrsearch.orchestrate.trainable as t; t.engine_imported()"
    return timed([sys.executable, "-c", code])


def breakdown(run: Path) -> dict[str, float]:
    """Mean seconds per trial of each phase, from the trials' ``timing.json``."""
    marks = sorted(
        (json.loads(p.read_text()) for p in run.glob("trials/*/timing.json")), key=lambda m: m["trial_start"]
    )
    ddp = "worker_start" in marks[0]

    def mean(values) -> float:
        values = list(values)
        return statistics.fmean(values) if values else float("nan")

    out = {
        "between trials": mean(b["trial_start"] - a["result"] for a, b in zip(marks, marks[1:])),
        "process→imported (fresh)": mean(
            m["imported"] - m["process_start"]
            for m in marks
            if m["trials_before"] == 0 and m["process_start"] < m["trial_start"]
        ),
    }
    if ddp:
        out["worker group"] = mean(m["worker_start"] - m["trial_start"] - (m["rendezvous_s"] or 0) for m in marks)
        out["rendezvous"] = mean(m["rendezvous_s"] or 0 for m in marks)
    start = "worker_start" if ddp else "trial_start"
    out["data"] = mean(m["data"] - m[start] for m in marks)
    out["set-up"] = mean(m["setup"] - m["data"] for m in marks)
    out["first report after set-up"] = mean(m["first_report"] - m["setup"] for m in marks)
    out["train+eval"] = mean(m["fit"] - m["setup"] for m in marks)
    out["result write"] = mean(m["result"] - m["fit"] for m in marks)
    return out


def measure(work: Path, root: Path, args, workers: int, startup: float) -> dict:
    path = work / f"study{workers}.yaml"
    rows: dict = {"bare_s": None}
    for mode in args.modes:
        run = work / f"run{workers}-{mode}"
        path.write_text(yaml.safe_dump(study_dict(root, run, args.trials, args.iterations, workers)))
        if rows["bare_s"] is None:
            rows["bare_s"] = bare_engine(path, work / f"bare{workers}")
        study = timed([VRSEARCH, "run", str(path)], MODES[mode])
        rows[mode] = {
            "study_s": study,
            "ratio": study / rows["bare_s"],
            "fixed_per_trial_s": (study - startup - rows["bare_s"]) / args.trials,
            "breakdown_s": breakdown(run),
        }
        print(f"workers {workers} {mode}: {json.dumps(rows[mode])} (bare {rows['bare_s']:.1f}s)", flush=True)
    return rows


def show(rows: dict, args, startup: float, imported: float) -> None:
    print(
        f"{args.trials} trials × {args.iterations} iterations, one at a time; Ray start-up {startup:.1f}s; "
        f"fresh-process imports {imported:.1f}s"
    )
    print(f"{'workers':>7} {'mode':>5} {'study s':>8} {'bare s':>7} {'ratio':>6} {'fixed/trial s':>14}")
    for w, r in rows.items():
        for mode in args.modes:
            m = r[mode]
            print(
                f"{w:>7} {mode:>5} {m['study_s']:>8.1f} {r['bare_s']:>7.1f} {m['ratio']:>6.2f} "
                f"{m['fixed_per_trial_s']:>14.1f}"
            )
    for w, r in rows.items():
        print(f"\nbreakdown, workers_per_trial {w} (mean s per trial)")
        phases = list(r[args.modes[0]]["breakdown_s"])
        print(f"{'phase':>28} " + " ".join(f"{mode:>7}" for mode in args.modes))
        for p in phases:
            print(f"{p:>28} " + " ".join(f"{r[mode]['breakdown_s'].get(p, float('nan')):>7.2f}" for mode in args.modes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--workers", default="1,2", help="workers_per_trial values, comma-separated")
    ap.add_argument("--modes", default="cold,warm", help="cold and/or warm, comma-separated")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.modes = [m for m in args.modes.split(",") if m]
    if not set(args.modes) <= set(MODES):
        raise SystemExit(f"--modes: choose from {', '.join(MODES)}")
    work = Path(tempfile.mkdtemp(prefix="vrs-bench-"))
    try:
        root = write_phantom(work / "ds", PhantomConfig(cases=8, unlabeled=0, size=(48, 48, 32), spacing=(7, 7, 8)))
        startup, imported = ray_startup(), imports()
        rows = {w: measure(work, root, args, w, startup) for w in map(int, args.workers.split(","))}
        show(rows, args, startup, imported)
        if args.json:
            args.json.write_text(json.dumps({"startup_s": startup, "imports_s": imported, "rows": rows}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
