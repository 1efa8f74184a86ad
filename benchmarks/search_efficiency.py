"""Search efficiency on the shipped tabular benchmark (issue 21, target P4): how much of
the exhaustive compute a search needs to come within one Dice point of the table's best.

The table is benchmarks/tabular/dvcl_table/ (a finished random-design study of DVCL's
knobs on the phantom, 48 configurations x 2 seeds, with every configuration's learning
curve; regenerate it with ``vrsearch run benchmarks/tabular/dvcl_table.yaml``); ``--seed``
picks whose curves are replayed (default: the lowest seed). Every search setting below is
replayed ``--repeats`` times (searcher seeds 0 ..) by the engine of ``vrsearch replay``:
real Optuna samplers, real Ray Tune schedulers, the table's curves instead of training,
``--concurrency`` trials at once (the shipped studies run 2). Compute is counted in
training iterations. Printed and written (``--json``): the fidelity check (rank
correlation of each rung with the end), the seed-to-seed noise of the final metric
where the table has two seeds, and per setting the median and quartiles of the
fraction of exhaustive compute to target, and the share of searches that got there.
    .venv/bin/python benchmarks/search_efficiency.py [--repeats 20] [--json benchmarks/results/search_efficiency.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from vrsearch.orchestrate import replay as rp
from vrsearch.orchestrate.tabular import fidelity, load_curves, recommended_grace

TABLE = Path(__file__).resolve().parent / "tabular" / "dvcl_table"
TPE = rp.ReplayConfig(searcher="tpe", multivariate=True, constant_liar=True, n_startup_trials=10)
#: the searchers crossed with every scheduler
SEARCHERS = [TPE, replace(TPE, multivariate=False), rp.ReplayConfig(searcher="random")]
if importlib.util.find_spec("cmaes"):  # Optuna's CMA-ES needs it (a vrsearch dependency; absent in older installs)
    SEARCHERS.append(rp.ReplayConfig(searcher="cmaes", n_startup_trials=10))
#: TPE's own knobs, with no scheduler and with ASHA at its default grace
TPE_VARIANTS = [replace(TPE, constant_liar=False), replace(TPE, n_startup_trials=5), replace(TPE, n_startup_trials=20)]


def schedulers(first: int) -> list[dict]:
    """none; ASHA at 1, 2 and 4 first rungs (rf 2) and rf 3; Hyperband at 1 and 2; the median rule."""
    return [
        {"scheduler": "none"},
        *({"scheduler": "asha", "grace": g * first} for g in (1, 2, 4)),
        {"scheduler": "asha", "grace": first, "reduction_factor": 3},
        *({"scheduler": "hyperband", "grace": g * first} for g in (1, 2)),
        {"scheduler": "median", "grace": 2 * first},
    ]


def settings(first: int, concurrency: int) -> list[rp.ReplayConfig]:
    out = [replace(s, concurrency=concurrency, **sch) for s in SEARCHERS for sch in schedulers(first)]
    for v in TPE_VARIANTS:
        out += [
            replace(v, concurrency=concurrency, **sch)
            for sch in ({"scheduler": "none"}, {"scheduler": "asha", "grace": 2 * first})
        ]
    return out


def one(args: tuple) -> dict:
    table, cfg, repeats, target = args
    t0 = time.perf_counter()
    cfg = rp.check(cfg, table)
    _, runs = rp.repeat(table, cfg, repeats, target)
    return {**rp.summarize(cfg, runs, table, target), "seconds": time.perf_counter() - t0}


def seed_noise(run_dir: Path) -> dict:
    """Final metric of the configurations recorded with two seeds: their seed-to-seed
    differences (the noise a single-seed search ranks through; pairing as in seed_policy.py)."""
    from seed_policy import paired  # the sibling script (benchmarks/ is on sys.path when run)

    from vrsearch.errors import VrsearchError

    try:
        _, y0, y1 = paired(run_dir)
    except VrsearchError:  # one seed, or fewer than 3 configurations on both
        return {"pairs": 0}
    d = y1 - y0
    return {
        "pairs": len(d),
        "mean_abs_diff": float(np.mean(np.abs(d))),
        "sd_diff": float(np.std(d, ddof=1)),
        "max_abs_diff": float(np.max(np.abs(d))),
    }


def fmt(x: float) -> str:
    return "never" if math.isinf(x) else f"{100 * x:.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--seed", type=int, default=None, help="whose curves (trial seed; default: the lowest)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--target", type=float, default=0.01)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="processes replaying settings side by side")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    table = load_curves(args.table, seed=args.seed)
    first = int(min(it[0] for it in table.iterations))
    fid = fidelity(table, args.target)
    grace = recommended_grace(fid)
    print(
        f"table {args.table.name} (seed {table.seed}): {len(table)} configurations, "
        f"best {table.metric} {table.best():.4f}, "
        f"final values {np.min(table.final()):.3f}-{np.max(table.final()):.3f}, exhaustive compute "
        f"{table.cost().sum():.0f} iterations; within {args.target} of the best: "
        f"{int(np.sum(np.array([np.max(v) for v in table.values]) >= table.best() - args.target))} configurations"
    )
    print(fid.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"recommended grace period (Spearman >= 0.8 from there on): {grace}")
    noise = seed_noise(args.table)
    print(f"seed-to-seed noise of the final {table.metric}: {noise}")
    t0 = time.perf_counter()
    jobs = [(table, cfg, args.repeats, args.target) for cfg in settings(first, args.concurrency)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(one, jobs))
    wall = time.perf_counter() - t0
    rows.sort(key=lambda r: (r["fraction_median"], r["fraction_q3"]))
    print(f"\n{'search':<74} {'median':>7} {'q1-q3':>12} {'reached':>8} {'best med':>9}")
    for r in rows:
        print(
            f"{r['search']:<74} {fmt(r['fraction_median']):>7} "
            f"{fmt(r['fraction_q1']) + '-' + fmt(r['fraction_q3']):>12} {100 * r['reached']:>7.0f}% "
            f"{r['best_median']:>9.4f}"
        )
    top = rows[0]
    print(
        f"\n{len(rows)} settings x {args.repeats} searcher seeds in {wall:.0f} s ({args.workers} processes). "
        f"P4 (median <= 30 % of the exhaustive compute to within {args.target}): "
        f"{'met' if top['fraction_median'] <= 0.30 else 'not met'} by {top['search']} "
        f"({fmt(top['fraction_median'])})"
    )
    if args.json:
        out = {
            "table": str(args.table.name),
            "seed": table.seed,
            "configurations": len(table),
            "best": table.best(),
            "exhaustive_compute": float(table.cost().sum()),
            "target": args.target,
            "concurrency": args.concurrency,
            "repeats": args.repeats,
            "fidelity": fid.to_dict("records"),
            "recommended_grace": grace,
            "seed_noise": noise,
            "settings": rows,
            "wall_s": wall,
        }
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
