"""One seed or two? The noisy-objective check of a tabular benchmark (issue 21, the
``seeds``/``aggregate`` defaults of ``search``).

A configuration's recorded value is its true quality plus seed noise. From the
configurations a table holds on its two lowest seeds — by default their **final
report**, the score a seed-aware search tells Optuna (``--value best``: the best
report, what a search keeps):

* the noise: σ² = var(seed b − seed a) / 2, the seeds' rank agreement (Spearman) and
  their mean shift (a shift common to every configuration does not change a ranking);
* the direct check: the configuration best on one seed, and where it ranks on the other;
* the spread of the true values: var(two-seed mean) − σ²/2 (a method-of-moments estimate);
* a parametric simulation at **equal compute** (a budget of N trials): N configurations
  × 1 seed, or N/2 × 2 seeds kept by their mean, or by ``lcb`` (mean − s/√2, as
  ``search.aggregate: lcb``), each judged by the *true* value it keeps, fresh
  N(0, σ²) seeds drawn per trial, under three models of the true values — the
  two-seed means shrunk toward the grand mean by spread / (spread + σ²/2) (the
  posterior means: too narrow a field), the same deviations rescaled to the estimated
  spread, and the raw two-seed means (too wide). Printed: the expected regret and the
  chance of keeping one within ``target`` of the best. The model assumes Gaussian
  noise of one size for every configuration; the script prints what speaks against it.

    .venv/bin/python benchmarks/seed_policy.py [--table benchmarks/tabular/dvcl_table] [--target 0.01]
        [--value final|best]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import shapiro, spearmanr

from vrsearch.errors import VrsearchError
from vrsearch.orchestrate.tabular import CurveTable, load_curves

#: the models of the configurations' true values the simulation is run under
MODELS = ("shrunk", "matched", "raw")

TABLE = Path(__file__).resolve().parent / "tabular" / "dvcl_table"


def paired(run_dir: Path, value: str = "final") -> tuple[CurveTable, np.ndarray, np.ndarray]:
    """The final (or best) report of every configuration recorded on the run's two lowest
    seeds, in the same order; a one-line error when it has fewer than two seeds."""
    from vrsearch.results import io

    seeds = sorted(set(io.load(run_dir).trials.seed.astype(int)))
    if len(seeds) < 2:
        raise VrsearchError(f"{run_dir}: trials of {len(seeds)} seed(s); the check needs two (search.seeds: [0, 1])")
    a, b = (load_curves(run_dir, seed=s) for s in seeds[:2])
    pick = (lambda v: float(v[-1])) if value == "final" else (lambda v: float(np.max(a.sign * v)))
    other = {json.dumps(p, sort_keys=True): pick(v) for p, v in zip(b.params, b.values)}
    keys = [json.dumps(p, sort_keys=True) for p in a.params]
    keep = [i for i, k in enumerate(keys) if k in other]
    if len(keep) < 3:
        raise VrsearchError(f"{run_dir}: {len(keep)} configuration(s) finished on both seeds; the check needs 3")
    y0 = np.array([pick(a.values[i]) for i in keep])
    y1 = np.array([other[keys[i]] for i in keep])
    if value == "final":  # larger is better from here on
        y0, y1 = a.sign * y0, a.sign * y1
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
        "mean_shift": float(np.mean(y1 - y0)),
        **_model_checks(y1 - y0, mean),
    }


def _model_checks(d: np.ndarray, mean: np.ndarray) -> dict:
    """Gaussian differences (Shapiro p) and noise unrelated to the level (Spearman of |d|
    with the mean); NaN where undefined (identical seeds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "shapiro_p_differences": float(shapiro(d).pvalue) if np.ptp(d) > 0 else float("nan"),
            "spearman_noise_vs_mean": float(spearmanr(np.abs(d), mean).statistic) if np.ptp(d) > 0 else float("nan"),
        }


def true_values(y0: np.ndarray, y1: np.ndarray, model: str) -> tuple[np.ndarray, float]:
    """The configurations' true values under ``model`` (see the module doc) and σ."""
    est = noise(y0, y1)
    sigma, spread2 = est["sigma"], est["true_sd"] ** 2
    mean = (y0 + y1) / 2
    dev = mean - mean.mean()
    if model == "raw":
        return mean, sigma
    if model == "shrunk":
        shrink = spread2 / (spread2 + sigma**2 / 2) if spread2 > 0 else 0.0
        return mean.mean() + shrink * dev, sigma
    sd = float(np.std(dev, ddof=1))
    return mean.mean() + (dev * (spread2**0.5 / sd) if sd > 0 else dev), sigma


def simulate(y0: np.ndarray, y1: np.ndarray, target: float, sims: int = 20000, seed: int = 0) -> dict:
    """The three policies at equal compute under every model of the true values."""
    return {m: policies(*true_values(y0, y1, m), target, sims, seed) for m in MODELS}


def lower_bound(scores: np.ndarray) -> np.ndarray:
    """``lcb`` of each row of seed scores (larger is better): mean − sample sd / √k."""
    return scores.mean(1) - scores.std(1, ddof=1) / np.sqrt(scores.shape[1])


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
        lcb = lower_bound(mu[sub, None] + e)
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
    ap.add_argument("--value", choices=["final", "best"], default="final")
    ap.add_argument("--sims", type=int, default=20000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    try:
        table, y0, y1 = paired(args.table, args.value)
    except VrsearchError as exc:
        sys.exit(f"error: {exc}")
    est = noise(y0, y1)
    print(f"table {args.table.name}: {est['configurations']} configurations on two seeds ({args.value} {table.metric})")
    print(
        f"seed noise sigma {est['sigma']:.4f}; spread of the true values (sd) {est['true_sd']:.4f}; "
        f"Spearman between the seeds {est['spearman_seeds']:.2f}; mean shift {est['mean_shift']:+.4f}"
    )
    print(
        f"best on the first seed ranks {est['best0_rank_on_seed1']} on the second "
        f"({est['best0_seed1_gap']:.4f} below its best); best on the second ranks {est['best1_rank_on_seed0']} "
        f"on the first ({est['best1_seed0_gap']:.4f} below)"
    )
    print(
        f"model checks: Shapiro p of the differences {est['shapiro_p_differences']:.3f}; Spearman of |difference| "
        f"with the mean {est['spearman_noise_vs_mean']:.2f} (> 0: better configurations are noisier)"
    )
    sim = simulate(y0, y1, args.target, args.sims)
    print(f"\nequal compute, N = {len(y0)} trials, {args.sims} simulations; P(within {args.target}) and mean regret")
    print(f"{'policy':<24}" + "".join(f"{m + ' values':>22}" for m in MODELS))
    for name in ("1 seed x N", "2 seeds x N/2, mean", "2 seeds x N/2, lcb"):
        cells = "".join(
            f"{100 * sim[m][name]['p_within_target']:>12.0f}% {sim[m][name]['regret_mean']:>8.4f}" for m in MODELS
        )
        print(f"{name:<24}{cells}")
    if args.json:
        out = {"table": args.table.name, "value": args.value, "target": args.target, **est, "simulation": sim}
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
