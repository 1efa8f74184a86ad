"""Speed of the per-case distance metrics (vrsearch.engine.metrics.case_metrics).

HD95 and ASSD of every class, from one MONAI surface-distance pass per class
(``get_edge_surface_distance``: edges, then a Euclidean distance transform, both
directions), against what the engine did before: MONAI's
``compute_hausdorff_distance`` and ``compute_average_surface_distance``, which each
make that pass. Cases: smoothed-noise organs (``classes`` − 1 foreground classes of
falling size) and a prediction perturbed from them, anisotropic spacing, at the
sizes given. Arms alternate; prints the median wall time of each and the ratio, and
checks both give the same values.

    .venv/bin/python benchmarks/metrics_speed.py [--repeats 5] [--size 64 64 48 --size 128 128 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from vrsearch.engine.metrics import case_metrics

SPACING = [0.8, 0.8, 2.5]


def case(shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), 3.0)
    cuts = np.quantile(field, 1 - 0.5 * 0.6 ** np.arange(classes - 1))
    label = np.digitize(field, np.sort(cuts))
    noisy = gaussian_filter(field + rng.normal(scale=0.5 * field.std(), size=shape), 1.5)
    pred = np.digitize(noisy, np.sort(np.quantile(noisy, 1 - 0.5 * 0.6 ** np.arange(classes - 1))))
    return torch.as_tensor(pred), torch.as_tensor(label)


def two_functions(pred: torch.Tensor, label: torch.Tensor, classes: int) -> tuple[list[float], list[float]]:
    """HD95 and ASSD as the engine computed them before: MONAI's two functions."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    p1, y1 = (one_hot(t.reshape(1, 1, *t.shape).long(), classes, dim=1) for t in (pred, label))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p1, y1, include_background=False, percentile=95.0, spacing=SPACING)[0]
        assd = compute_average_surface_distance(p1, y1, include_background=False, symmetric=True, spacing=SPACING)[0]
    return hd.double().tolist(), assd.double().tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--size", type=int, nargs=3, action="append", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.size or [[64, 64, 48], [128, 128, 64]]:
        pred, label = case(tuple(size), args.classes)
        times: dict[str, list[float]] = {"one pass": [], "two functions": []}
        got = case_metrics(pred, label, args.classes, SPACING)
        want = two_functions(pred, label, args.classes)
        assert ([r["hd95_mm"] for r in got], [r["assd_mm"] for r in got]) == want, "the two paths differ"
        for _ in range(args.repeats):  # alternating, so machine noise hits both arms alike
            t0 = time.perf_counter()
            case_metrics(pred, label, args.classes, SPACING)
            times["one pass"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            two_functions(pred, label, args.classes)
            times["two functions"].append(time.perf_counter() - t0)
        one, two = (statistics.median(times[k]) for k in ("one pass", "two functions"))
        rows.append({"size": size, "one_pass_s": one, "two_functions_s": two, "ratio": one / two})
    print(f"{'size':>14} {'case_metrics (s)':>17} {'MONAI HD + ASSD (s)':>20} {'ratio':>6}")
    for r in rows:
        size = "×".join(map(str, r["size"]))
        print(f"{size:>14} {r['one_pass_s']:>17.3f} {r['two_functions_s']:>20.3f} {r['ratio']:>6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"classes": args.classes, "spacing": SPACING, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
