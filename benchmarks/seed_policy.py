"""One seed or two? The noisy-objective check of a tabular benchmark (issue 21, the
``seeds``/``aggregate`` defaults of ``search``).

A configuration's recorded value is its true quality plus seed noise. From the
configurations a table holds on two seeds (their **best report**, the value a search
keeps, as in :mod:`vrsearch.orchestrate.tabular`):

* the noise: σ² = var(seed-1 − seed-0) / 2, and the seeds' rank agreement (Spearman);
* the direct check: the configuration best on one seed, and where it ranks on the other;
* the spread of the true values: var(two-seed mean) − σ²/2 (a method-of-moments estimate);
* a parametric simulation at **equal compute** (a budget of N trials): N configurations
  × 1 seed, or N/2 × 2 seeds kept by their mean, or by ``lcb`` (mean − s/√2), each
  judged by the *true* value it keeps — the configurations' two-seed means shrunk
  toward the grand mean by the factor spread / (spread + σ²/2), fresh N(0, σ²) seeds
  drawn per trial. Printed: the expected regret (best true value − the kept one) and
  the chance of keeping one within ``target`` of the best.

    .venv/bin/python benchmarks/seed_policy.py [--table benchmarks/tabular/dvcl_table] [--target 0.01]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from vrsearch.orchestrate.tabular import CurveTable, load_curves

TABLE = Path(__file__).resolve().parent / "tabular" / "dvcl_table"


def paired(run_dir: Path, seeds: tuple[int, int] = (0, 1)) -> tuple[CurveTable, np.ndarray, np.ndarray]:
    """The best report of every configuration recorded on both seeds (same order)."""
    a, b = (load_curves(run_dir, seed=s) for s in seeds)
    other = {json.dumps(p, sort_keys=True): float(np.max(a.sign * v)) for p, v in zip(b.params, b.values)}
    keys = [json.dumps(p, sort_keys=True) for p in a.params]
    keep = [i for i, k in enumerate(keys) if k in other]
    y0 = np.array([float(np.max(a.sign * a.values[i])) for i in keep])
    y1 = np.array([other[keys[i]] for i in keep])
    return a, y0, y1


def noise(y0: np.ndarray, y1: np.ndarray) -> dict:
    """σ, the seeds' rank agreement, the spread of the true values, and the direct check."""
    sigma2 = float(np.var(y1 - y0, ddof=1) / 2)
    mean = (y0 + y1) / 2
    spread2 = max(float(np.var(mean, ddof=1)) - sigma2 / 2, 0.0)
    b0, b1 = int(np.argmax(y0)), int(np.argmax(y1))
    rank = lambda y, i: int(np.sum(y > y[i])) + 1  # noqa: E731 - 1 = the best
    return {
        "configurations": len(y0),
        "sigma": sigma2**0.5,
        "spearman_seeds": float(spearmanr(y0, y1).statistic),
        "true_sd": spread2**0.5,
        "best0_rank_on_seed1": rank(y1, b0),
        "best0_seed1_gap": float(y1.max() - y1[b0]),
        "best1_rank_on_seed0": rank(y0, b1),
        "best1_seed0_gap": float(y0.max() - y0[b1]),
    }


def simulate(y0: np.ndarray, y1: np.ndarray, target: float, sims: int = 20000, seed: int = 0) -> dict:
    """The three policies at equal compute on the table's estimated true values and noise."""
    est = noise(y0, y1)
    sigma, spread2 = est["sigma"], est["true_sd"] ** 2
    mean = (y0 + y1) / 2
    shrink = spread2 / (spread2 + sigma**2 / 2) if spread2 > 0 else 0.0
    mu = mean.mean() + shrink * (mean - mean.mean())
    return {"shrink": shrink, **policies(mu, sigma, target, sims, seed)}


def policies(mu: np.ndarray, sigma: float, target: float, sims: int = 20000, seed: int = 0) -> dict:
    """Expected regret and P(regret <= ``target``) of keeping the best-looking of: every
    configuration on 1 seed; a random half on 2 seeds by their mean; the same by ``lcb``."""
    n, half = len(mu), len(mu) // 2
    rng = np.random.default_rng(seed)
    regrets: dict[str, list[float]] = {"1 seed x N": [], "2 seeds x N/2, mean": [], "2 seeds x N/2, lcb": []}
    for _ in range(sims):
        one = mu + rng.normal(0, sigma, n)
        sub = rng.permutation(n)[:half]
        e = rng.normal(0, sigma, (half, 2))
        m2 = mu[sub] + e.mean(1)
        lcb = m2 - e.std(1, ddof=1) / np.sqrt(2)
        best = mu.max()
        regrets["1 seed x N"].append(best - mu[np.argmax(one)])
        regrets["2 seeds x N/2, mean"].append(best - mu[sub][np.argmax(m2)])
        regrets["2 seeds x N/2, lcb"].append(best - mu[sub][np.argmax(lcb)])
    return {
        name: {"regret_mean": float(np.mean(r)), "p_within_target": float(np.mean(np.array(r) <= target))}
        for name, r in regrets.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=TABLE)
    ap.add_argument("--target", type=float, default=0.01)
    ap.add_argument("--sims", type=int, default=20000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    table, y0, y1 = paired(args.table)
    est = noise(y0, y1)
    n = est["configurations"]
    print(f"table {args.table.name}: {n} configurations on seeds 0 and 1 ({table.metric}, best report)")
    print(
        f"seed noise sigma {est['sigma']:.4f}; spread of the true values (sd) {est['true_sd']:.4f}; "
        f"Spearman between the seeds {est['spearman_seeds']:.2f}"
    )
    print(
        f"best on seed 0 ranks {est['best0_rank_on_seed1']} on seed 1 ({est['best0_seed1_gap']:.4f} below its best); "
        f"best on seed 1 ranks {est['best1_rank_on_seed0']} on seed 0 ({est['best1_seed0_gap']:.4f} below)"
    )
    sim = simulate(y0, y1, args.target, args.sims)
    print(f"\nequal compute, N = {len(y0)} trials ({args.sims} simulations, shrinkage {sim['shrink']:.2f}):")
    print(f"{'policy':<24} {'mean regret':>12} {'P(within ' + str(args.target) + ')':>18}")
    for name in ("1 seed x N", "2 seeds x N/2, mean", "2 seeds x N/2, lcb"):
        r = sim[name]
        print(f"{name:<24} {r['regret_mean']:>12.4f} {100 * r['p_within_target']:>17.0f}%")
    if args.json:
        args.json.write_text(json.dumps({"table": args.table.name, **est, "simulation": sim}, indent=2))


if __name__ == "__main__":
    main()
