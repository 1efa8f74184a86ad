"""Kill/resume fault injection: SIGKILL the ``vrsearch`` driver at random moments
of a small grid study, ``vrsearch resume`` it, repeat, and count what was lost.

Each cycle starts ``vrsearch resume`` (``vrsearch run`` until a run has got
as far as claiming its directory), waits a random time drawn from
``--kill-after`` (seeded: the same ``--seed`` kills at the same offsets),
SIGKILLs the driver, and checks that the parquet files present read back. Kills
land wherever the driver is: Ray start-up, trial start, mid-trial, parquet
compaction, report writing. After the cycles the
study is resumed once more without a kill and must finish. Printed (and
returned as JSON):

* completed — trials with a result at the end (must equal the grid's cells,
  or ``--cells`` proposals with ``--design search``, where Optuna's study must
  also hold exactly that many COMPLETE trials);
* lost — results that existed after some cycle and later vanished or changed;
* re-run — cells trained more than once after they had finished (two trial
  fragments with a result for one ``config_hash``, or a rewritten result);
* continued — trials that an interruption cut short and a resume continued
  from their checkpoints (``resumed_from`` > 0);
* for a search, Optuna's states: every proposal COMPLETE, none left RUNNING or FAIL.

    .venv/bin/python benchmarks/fault_injection.py [--cycles 10] [--seed 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import yaml

from vrsearch.data.phantom import PhantomConfig, write_phantom
from vrsearch.results.io import load

VRSEARCH = str(Path(sys.executable).with_name("vrsearch"))


def study_dict(root: Path, out: Path, cells: int, iterations: int, design: str = "grid") -> dict:
    lrs = [round(0.002 * (i + 1), 4) for i in range(cells)]
    search = {
        "design": "grid",
        "scheduler": "none",
        "space": {"train.optimizer.lr": {"type": "categorical", "choices": lrs}},
    }
    if design == "search":  # Optuna TPE proposes ``cells`` configurations
        search = {
            "design": "search",
            "num_samples": cells,
            "scheduler": "none",
            "space": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        }
    return {
        "name": "faults",
        "dataset": {
            "layout": "msd",
            "root": str(root),
            "labeled_ratio": 0.5,
            "val_fraction": 0.25,
            "test_fraction": 0.25,
            "patch_size": [16, 16, 16],
        },
        "model": {"channels": [4, 8], "feature_dim": 4, "num_res_units": 0},
        "train": {
            "iterations": iterations,
            "batch": {"labeled": 2, "unlabeled": 0},
            "threads": 1,
            "log_every": 1,
            "eval": {"every": max(1, iterations // 2), "sw_batch_size": 4},
        },
        "search": search,
        "resources": {"concurrent_trials": 2, "cpus_per_worker": 1},
        "output": {"dir": str(out)},
    }


def results(run: Path) -> dict[str, tuple[str, int, str]]:
    """trial id -> (config_hash, result mtime, result text) for every finished trial."""
    out = {}
    for res in (run / "trials").glob("*/result.json"):
        meta = json.loads((res.parent / "meta.json").read_text())
        out[res.parent.name] = (meta.get("config_hash", ""), res.stat().st_mtime_ns, res.read_text())
    return out


def command(study: Path, run: Path) -> list[str]:
    """``vrsearch resume RUN``, or ``vrsearch run STUDY`` while no run has claimed its dir yet."""
    if (run / "study.yaml").exists():
        return [VRSEARCH, "resume", str(run)]
    return [VRSEARCH, "run", str(study)]


def optuna_states(run: Path) -> dict[str, int]:
    """Trial states in the run's Optuna study (search designs): COMPLETE must equal the trials."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{run / 'optuna.db'}")
    return dict(Counter(t.state.name for t in study.trials))


def inject(
    cycles: int,
    seed: int,
    kill_after: tuple[float, float],
    cells: int,
    iterations: int,
    work: Path,
    design: str = "grid",
) -> dict:
    rng = random.Random(seed)
    root = write_phantom(
        work / "ds", PhantomConfig(cases=8, unlabeled=0, test=2, seed=3, size=(40, 32, 24), spacing=(8.5, 8.5, 10.5))
    )
    path, run = work / "study.yaml", work / "run"
    path.write_text(yaml.safe_dump(study_dict(root, run, cells, iterations, design)))
    seen: dict[str, tuple[str, int, str]] = {}
    lost, rewritten, kills = set(), set(), []
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    for cycle in range(cycles):
        cmd = command(path, run)
        with open(logs / f"cycle-{cycle}.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        wait = rng.uniform(*kill_after)
        try:
            proc.wait(timeout=wait)
            kills.append(None)  # finished before the kill
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills.append(round(wait, 1))
        time.sleep(1.0)  # Ray's orphaned processes notice the driver is gone
        if run.is_dir():
            load(run)  # every parquet file present must read back
        now = results(run)
        lost |= {t for t in seen if t not in now}
        rewritten |= {t for t, v in seen.items() if t in now and now[t][1:] != v[1:]}
        seen.update(now)
        if proc.returncode == 0:
            break
    final = subprocess.run(command(path, run), capture_output=True, text=True)
    (logs / "final.log").write_text(final.stdout + final.stderr)
    if final.returncode != 0 and "already" not in final.stderr:
        shown = "\n".join(
            f"--- {p.name} (last lines)\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
            for p in sorted(logs.glob("*.log"))
        )
        raise SystemExit(f"final resume failed: {final.stderr[-2000:]}\n{shown}")
    now = results(run)
    lost |= {t for t in seen if t not in now}
    rewritten |= {t for t, v in seen.items() if t in now and now[t][1:] != v[1:]}
    per_cell = Counter(h for h, _, _ in now.values())
    trials = pd.read_parquet(run / "trials.parquet")
    out = {
        "design": design,
        "cells": cells,
        "cycles": len(kills),
        "kills_s": kills,
        "completed": int((trials.status == "completed").sum()),
        "distinct_cells_completed": len(per_cell),
        "lost": len(lost),
        "rerun": len(rewritten) + sum(n - 1 for n in per_cell.values()),
        "continued": int((pd.to_numeric(trials.get("resumed_from"), errors="coerce") > 0).sum()),
    }
    if design == "search":
        out["optuna"] = optuna_states(run)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kill-after", type=float, nargs=2, default=[5.0, 40.0], metavar=("MIN_S", "MAX_S"))
    ap.add_argument("--cells", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument(
        "--design",
        choices=["grid", "search"],
        default="grid",
        help="grid: one cell per learning rate; search: Optuna TPE proposes --cells configurations",
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir (run dir, per-cycle logs) and print it")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vrs-faults-"))
    try:
        out = inject(args.cycles, args.seed, tuple(args.kill_after), args.cells, args.iterations, work, args.design)
    finally:
        if args.keep:
            print(f"work dir: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"{out['cycles']} kill/resume cycles (kills at {out['kills_s']} s): {out['completed']} of {out['cells']} "
        f"trials completed, {out['lost']} lost, {out['rerun']} re-run, {out['continued']} continued from a checkpoint"
        + (f"; Optuna trials {out['optuna']}" if "optuna" in out else "")
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if (
        out["lost"]
        or out["rerun"]
        or out["distinct_cells_completed"] != out["cells"]
        or out.get("optuna", {}).get("COMPLETE", out["cells"]) != out["cells"]
        or set(out.get("optuna", {})) - {"COMPLETE"}
    ):
        sys.exit(1)


if __name__ == "__main__":
    main()
