"""Error rates of candidate headline tests on simulated ablation studies: the numbers
behind the choice documented in ``vrsearch/results/stats.py``.

Model (per simulated study): y[arm, seed, case] = μ_arm + u_case + r_(arm, seed)
+ e_(arm, seed, case) (+ s_seed shared by both arms of a seed, for the power
table), all normal. Under the null μ_arm = μ_base. Compared, at α = 0.05:

* paired t over shared seeds of per-seed means (``stats.seed_test``, the chosen one);
* two-sample t over per-seed means (ignores the seed pairing);
* hierarchical bootstrap: resample seeds (``scipy.stats.bootstrap``), then cases within each,
  percentile p;
* the old pairing: Wilcoxon over (seed, case) pairs as if independent;
* the case-level view: Wilcoxon over cases of seed-averaged differences.

    .venv/bin/python benchmarks/stats_error_rates.py [--studies 20000] [--boot-studies 2000]

Prints the tables and writes ``benchmarks/results/stats_error_rates.json``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

from vrsearch.results.stats import min_detectable, seed_test

CASE_SD, RES_SD, RUN_SD, ALPHA = 0.10, 0.03, 0.02, 0.05
SETTINGS = [(3, 5, 0.0), (3, 20, 0.0), (5, 20, 0.0), (3, 5, RUN_SD), (3, 20, RUN_SD), (5, 5, RUN_SD), (5, 20, RUN_SD)]


def simulate(rng, n, seeds, cases, run_sd, shared_sd=0.0, delta=0.0):
    """y[study, arm (0) / baseline (1), seed, case]."""
    y = (
        rng.normal(0, CASE_SD, (n, 1, 1, cases))
        + rng.normal(0, shared_sd, (n, 1, seeds, 1))
        + rng.normal(0, run_sd, (n, 2, seeds, 1))
        + rng.normal(0, RES_SD, (n, 2, seeds, cases))
    )
    y[:, 0] += delta
    return y


def paired_t(y):
    return seed_test(y[:, 0].mean(-1) - y[:, 1].mean(-1))["p"]


def two_sample_t(y):
    means = y.mean(-1)
    return sps.ttest_ind(means[:, 0], means[:, 1], axis=-1).pvalue


def old_pairing(y):
    return sps.wilcoxon((y[:, 0] - y[:, 1]).reshape(len(y), -1), axis=-1).pvalue


def case_level(y):
    return sps.wilcoxon((y[:, 0] - y[:, 1]).mean(1), axis=-1).pvalue


def hierarchical_bootstrap(y, rng, n_boot=999):
    """Two-level percentile bootstrap of the mean difference: :func:`scipy.stats.bootstrap`
    resamples the seeds (its percentile machinery gives the bootstrap distribution); the
    statistic resamples the cases within each drawn seed (scipy has no nested resampling).
    p = twice the smaller tail of the distribution beyond 0."""
    d = y[:, 0] - y[:, 1]
    n, seeds, cases = d.shape
    p = np.empty(n)
    for i in range(n):

        def mean_of_resampled_cases(idx, axis=-1, di=d[i]):
            idx = np.asarray(idx, dtype=int)
            ci = rng.integers(0, cases, idx.shape + (cases,))
            return di[idx[..., None], ci].mean(axis=(-2, -1))

        res = sps.bootstrap(
            (np.arange(seeds),),
            mean_of_resampled_cases,
            n_resamples=n_boot,
            vectorized=True,
            method="percentile",
            rng=rng,
        )
        dist = res.bootstrap_distribution
        p[i] = min(1.0, 2 * min((dist <= 0).mean(), (dist >= 0).mean()))
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=20000)
    ap.add_argument("--boot-studies", type=int, default=2000)
    args = ap.parse_args()
    rng = np.random.default_rng(20261122)
    out = {
        "studies": args.studies,
        "boot_studies": args.boot_studies,
        "alpha": ALPHA,
        "case_sd": CASE_SD,
        "res_sd": RES_SD,
        "run_sd": RUN_SD,
        "false_positive": {},
        "power": {},
    }
    print(
        f"false-positive rate, {args.studies} null studies per setting (bootstrap: {args.boot_studies}); "
        f"MC sd {math.sqrt(ALPHA * (1 - ALPHA) / args.studies):.4f}"
    )
    print("seeds×cases run_sd | paired_t two_sample_t hier_boot old_pairing case_level")
    for seeds, cases, run_sd in SETTINGS:
        y = simulate(rng, args.studies, seeds, cases, run_sd)
        rates = {
            name: float((f(y) < ALPHA).mean())
            for name, f in (
                ("paired_t", paired_t),
                ("two_sample_t", two_sample_t),
                ("old_pairing", old_pairing),
                ("case_level", case_level),
            )
        }
        rates["hier_boot"] = float((hierarchical_bootstrap(y[: args.boot_studies], rng) < ALPHA).mean())
        out["false_positive"][f"{seeds}x{cases},r={run_sd}"] = rates
        print(
            f"{seeds}×{cases:<3} r={run_sd:<5}| "
            + "  ".join(
                f"{rates[k]:.3f}" for k in ("paired_t", "two_sample_t", "hier_boot", "old_pairing", "case_level")
            )
        )
    y = simulate(rng, args.studies, 3, 20, RUN_SD, delta=0.03)
    m = y.mean(-1)
    res = seed_test(m[:, 0] - m[:, 1])
    two = sps.ttest_ind(m[:, 0], m[:, 1], axis=-1).confidence_interval(0.95)
    out["coverage_3x20"] = {
        "paired_t": float(((res["ci_low"] <= 0.03) & (0.03 <= res["ci_high"])).mean()),
        "two_sample_t": float(((two.low <= 0.03) & (0.03 <= two.high)).mean()),
    }
    print("95 % CI coverage at 3×20, r=0.02:", out["coverage_3x20"])
    print("power at Δ = 0.04, r = 0.02, 20 cases; shared = sd of a component both runs of a seed share")
    for shared in (0.0, 0.02, 0.04):
        for seeds in (3, 5):
            y = simulate(rng, args.studies, seeds, 20, RUN_SD, shared_sd=shared, delta=0.04)
            power = {
                "paired_t": float((paired_t(y) < ALPHA).mean()),
                "two_sample_t": float((two_sample_t(y) < ALPHA).mean()),
            }
            out["power"][f"shared={shared},seeds={seeds}"] = power
            print(f"shared={shared:<5} seeds={seeds}: {power}")
    out["mdd_multiplier"] = {n: float(min_detectable(1.0, n) * math.sqrt(n)) for n in (2, 3, 5, 10)}
    print("k in MDD = k·sd/√n (80 % power, α = 0.05):", {n: round(k, 2) for n, k in out["mdd_multiplier"].items()})
    path = Path(__file__).parent / "results" / "stats_error_rates.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
