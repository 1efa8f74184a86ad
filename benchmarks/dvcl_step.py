"""DVCL: step time over its networks' floor, and the DVCL term's memory vs |U_R|.

(a) Step time. The registered ``dvcl`` method (paper defaults; ModelConfig
channels (8,16,32,64), feature_dim 32, C=14) and, as the reference, plain
``cps``: one full forward+backward of the method on 2 labeled + 2 unlabeled
patches, against its floor — forward+backward of the method's two networks
with a plain supervised loss (½(Dice+CE) on the labeled patches; the
networks still see all four patches, and DVCL's floor runs its feature
heads too). The four arms are timed round-robin (dvcl, dvcl floor, cps, cps
floor) in one process and each ratio is taken pair by pair; medians reported,
plus min(step)/min(floor) (load from other processes only adds wall time)
and the same ratio in this process's CPU time (steady on a shared machine).

(b) Memory. Peak allocation (``vrsearch.engine.memory.peak_allocation``) of
the step's DVCL term — ``DVCL._dvcl`` (select_queries on the unreliable
mask of A ∪ B, gather, ``dvcl_terms`` on a Q×L matrix, queue push) plus its
backward — on fixed dense maps of 10⁶ voxels (A and B 1×100×100×50 each),
with 10³ … 10⁶ of them unreliable. For contrast, the peak of a naive
all-pairs |U_R|×|U_R| cosine matrix (+ top-K per row) at the two smallest
counts only: it grows quadratically (10⁶ would need 4 TB).

    .venv/bin/python benchmarks/dvcl_step.py [--repeats 8] [--patch 48 48 32] [--threads 1]
        [--json benchmarks/results/dvcl_step.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from vrsearch.engine.memory import peak_allocation
from vrsearch.losses import SupervisedLoss
from vrsearch.methods import get_method
from vrsearch.methods.base import Batch, BuildContext
from vrsearch.study.schema import ModelConfig

C = 14
MODEL = ModelConfig(channels=(8, 16, 32, 64), feature_dim=32)
ITERATIONS = 1000  # steps are timed at iteration 500: the ECPS ramp-up is on
MEM_SHAPE = (100, 100, 50)  # per network; A ∪ B = 10⁶ voxels
MEM_COUNTS = (1_000, 10_000, 100_000, 1_000_000)
NAIVE_COUNTS = MEM_COUNTS[:2]
MB = 2**20


def make_batch(patch: list[int], labeled: int = 2, unlabeled: int = 2, seed: int = 0) -> Batch:
    """Blocky random label maps (8-voxel cells) and images that carry them plus noise."""
    g = torch.Generator().manual_seed(seed)
    n = labeled + unlabeled
    coarse = torch.randint(0, C, (n, 1, *[max(1, s // 8) for s in patch]), generator=g)
    label = F.interpolate(coarse.float(), size=patch, mode="nearest").long()
    image = label.float() / C + 0.3 * torch.randn(n, 1, *patch, generator=g)
    return Batch(image[:labeled], label[:labeled], image[labeled:])


def build(name: str, **params):
    spec = get_method(name)
    torch.manual_seed(0)
    return spec.build(spec.validate(params), BuildContext(MODEL, C, ITERATIONS, seed=0)).train()


def timed(fn) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one call."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def summarise(steps: list[tuple[float, float]], floors: list[tuple[float, float]]) -> dict:
    wall = [s[0] / f[0] for s, f in zip(steps, floors)]
    cpu = [s[1] / f[1] for s, f in zip(steps, floors)]
    return {
        "step_ms": 1e3 * statistics.median(s[0] for s in steps),
        "floor_ms": 1e3 * statistics.median(f[0] for f in floors),
        "ratio": statistics.median(wall),
        "ratio_min": min(wall),
        "ratio_max": max(wall),
        # fastest over fastest: load from other processes only ever adds wall time
        "ratio_of_mins": min(s[0] for s in steps) / min(f[0] for f in floors),
        # CPU seconds of this process: barely moved by other processes on a shared machine
        "step_cpu_ms": 1e3 * statistics.median(s[1] for s in steps),
        "floor_cpu_ms": 1e3 * statistics.median(f[1] for f in floors),
        "cpu_ratio": statistics.median(cpu),
        "cpu_ratio_min": min(cpu),
        "cpu_ratio_max": max(cpu),
    }


def method_step(method, batch: Batch, it: int) -> None:
    method.zero_grad(set_to_none=True)
    method(batch, it).loss.backward()


def floor_step(method, sup: SupervisedLoss, batch: Batch, features: bool) -> None:
    """The method's two networks, forward+backward, supervised loss only."""
    method.zero_grad(set_to_none=True)
    x, n_l = torch.cat([batch.image, batch.unlabeled]), batch.image.shape[0]
    for net in (method.net_a, method.net_b):
        if features:  # the feature head runs (and back-propagates) as in the method's step
            logits, feats = net(x, features=True)
            loss = sup(logits[:n_l], batch.label) + 0.0 * feats.float().mean()
        else:
            loss = sup(net(x)[:n_l], batch.label)
        loss.backward()


def step_times(patch: list[int], repeats: int) -> dict:
    batch, sup = make_batch(patch), SupervisedLoss("dice_ce")
    methods = {"dvcl": (build("dvcl"), True), "cps": (build("cps"), False)}
    times = {f"{n}{s}": [] for n in methods for s in ("", "_floor")}
    start = ITERATIONS // 2
    for k in range(repeats + 2):  # 2 warm-up rounds (DVCL's queue fills in the first)
        for name, (method, features) in methods.items():
            s = timed(functools.partial(method_step, method, batch, start + k))
            f = timed(functools.partial(floor_step, method, sup, batch, features))
            if k >= 2:
                times[name].append(s)
                times[f"{name}_floor"].append(f)
    rows = {name: summarise(times[name], times[f"{name}_floor"]) for name in methods}
    dvcl = methods["dvcl"][0]
    with torch.no_grad():
        terms = dvcl(batch, start + repeats + 2).terms
    rows["dvcl"]["active_terms"] = {k: float(terms[k]) for k in ("hqc", "dvcl", "queries", "anchors")}
    return rows


# -- (b) memory of the DVCL term ------------------------------------------------------------


def reliable_masks(n_unreliable: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    total = 2 * MEM_SHAPE[0] * MEM_SHAPE[1] * MEM_SHAPE[2]
    rel = torch.ones(total, dtype=torch.bool)
    rel[torch.randperm(total, generator=g)[:n_unreliable]] = False
    rel = rel.reshape(2, 1, *MEM_SHAPE)
    return rel[0], rel[1]


def dvcl_term(method, rel, r, p) -> torch.Tensor:
    out = method._dvcl(rel[0], rel[1], r[0], r[1], p[0], p[1], torch.Generator().manual_seed(0))
    out["dvcl"].backward()
    return out["dvcl"].detach()


def naive_all_pairs(feats: torch.Tensor, k: int) -> torch.Tensor:
    """What the ruling forbids: the |U_R|×|U_R| cosine matrix and its row-wise top-K."""
    f = F.normalize(feats, dim=1)
    return (f @ f.T).topk(k, dim=1).indices


def term_memory() -> dict:
    method = build("dvcl")
    D, prm = method.dim, method.params
    g = torch.Generator().manual_seed(1)
    method.queue.push(
        torch.cat(
            [
                F.normalize(torch.randn(prm.queue_size, D, generator=g), dim=1),
                torch.softmax(torch.randn(prm.queue_size, C, generator=g), 1),
            ],
            1,
        )
    )
    r = [torch.randn(1, D, *MEM_SHAPE, generator=g).requires_grad_() for _ in range(2)]
    p = [torch.randn(1, C, *MEM_SHAPE, generator=g).requires_grad_() for _ in range(2)]  # logits
    flat_r = torch.cat([t.detach().flatten(2)[0].T for t in r])  # [10⁶, D], row i = voxel i of A ∪ B
    dvcl_term(method, reliable_masks(MEM_COUNTS[0]), r, p)  # warm-up
    rows = []
    for n in MEM_COUNTS:
        rel = reliable_masks(n)
        for t in (*r, *p):
            t.grad = None
        t0 = time.perf_counter()
        dvcl_term(method, rel, r, p)
        ms = 1e3 * (time.perf_counter() - t0)
        for t in (*r, *p):
            t.grad = None
        _, peak = peak_allocation(dvcl_term, method, rel, r, p)
        row = {"unreliable": n, "dvcl_peak_mb": peak / MB, "dvcl_ms": ms, "naive_peak_mb": None}
        if n in NAIVE_COUNTS:
            unrel = flat_r[~torch.cat([rel[0].reshape(-1), rel[1].reshape(-1)])]
            _, row["naive_peak_mb"] = peak_allocation(naive_all_pairs, unrel, prm.k)
            row["naive_peak_mb"] /= MB
        rows.append(row)
    return {
        "voxels": 2 * MEM_SHAPE[0] * MEM_SHAPE[1] * MEM_SHAPE[2],
        "feature_dim": D,
        "classes": C,
        "queries": prm.queries,
        "queue": prm.queue_size,
        "k": prm.k,
        "k_prime": prm.k_prime,
        "form": prm.form,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--threads", type=int, default=1, help="1 = steadier timings on a shared machine")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/dvcl_step.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    steps = step_times(args.patch, args.repeats)
    print(
        f"(a) patch {args.patch}, 2 labeled + 2 unlabeled, channels {MODEL.channels}, feature_dim "
        f"{MODEL.feature_dim}, C={C}, {args.threads} threads; median of {args.repeats} paired steps"
    )
    print(
        f"{'method':<8} {'step ms':>9} {'floor ms':>9} {'step/floor':>10} {'(min–max)':>13} {'min/min':>8} "
        f"{'CPU step/floor':>15} {'(min–max)':>13}"
    )
    for name, r in steps.items():
        print(
            f"{name:<8} {r['step_ms']:>9.0f} {r['floor_ms']:>9.0f} {r['ratio']:>10.2f} "
            f"{r['ratio_min']:>6.2f}–{r['ratio_max']:<6.2f} {r['ratio_of_mins']:>8.2f} "
            f"{r['cpu_ratio']:>15.2f} {r['cpu_ratio_min']:>6.2f}–{r['cpu_ratio_max']:.2f}"
        )
    print(
        f"DVCL/CPS step/floor: wall {steps['dvcl']['ratio'] / steps['cps']['ratio']:.2f}, "
        f"CPU {steps['dvcl']['cpu_ratio'] / steps['cps']['cpu_ratio']:.2f}; "
        f"dvcl terms at the timed iterations: {steps['dvcl']['active_terms']}"
    )

    mem = term_memory()
    print(
        f"\n(b) DVCL term (+ backward) among {mem['voxels']:,} voxels: Q={mem['queries']}, L={mem['queue']}, "
        f"K={mem['k']}, K'={mem['k_prime']}, D={mem['feature_dim']}, C={mem['classes']}, form {mem['form']}"
    )
    print(f"{'|U_R|':>10} {'DVCL peak MiB':>14} {'DVCL ms':>8} {'naive |U_R|² peak MiB':>22}")
    for r in mem["rows"]:
        naive = "—" if r["naive_peak_mb"] is None else f"{r['naive_peak_mb']:.1f}"
        print(f"{r['unreliable']:>10,} {r['dvcl_peak_mb']:>14.1f} {r['dvcl_ms']:>8.0f} {naive:>22}")
    peaks = [r["dvcl_peak_mb"] for r in mem["rows"]]
    print(f"DVCL peak at 10⁶ / at 10³ unreliable: {peaks[-1] / peaks[0]:.3f}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "config": {
                    "patch": args.patch,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "channels": list(MODEL.channels),
                    "feature_dim": MODEL.feature_dim,
                    "classes": C,
                },
                "step": steps,
                "memory": mem,
            },
            indent=2,
        )
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
