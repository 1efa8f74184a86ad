"""Speed of the per-case metrics (vrsearch.engine.metrics.case_metrics).

``case_metrics`` takes HD95 and ASSD of every class from one MONAI surface-distance
pass per class (``get_edge_surface_distance``: surface voxels, then nearest-surface
Euclidean distances in both directions). Before, it called MONAI's
``compute_hausdorff_distance`` and ``compute_average_surface_distance``, which each
make that pass. Both arms time the whole ``case_metrics`` (one-hot maps, Dice, IoU,
distances): the second with the earlier distance function (``earlier_distances``,
its code) put in place of the current one. Cases: smoothed-noise organs
(``classes`` − 1 foreground classes of falling size) and a prediction perturbed from
them, anisotropic spacing, at the sizes given. Arms alternate; prints the median wall
time of each and the ratio, and checks that both give the same rows.

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

from vrsearch.engine import metrics

SPACING = [0.8, 0.8, 2.5]


def case(shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=shape), 3.0)
    cuts = np.quantile(field, 1 - 0.5 * 0.6 ** np.arange(classes - 1))
    label = np.digitize(field, np.sort(cuts))
    noisy = gaussian_filter(field + rng.normal(scale=0.5 * field.std(), size=shape), 1.5)
    pred = np.digitize(noisy, np.sort(np.quantile(noisy, 1 - 0.5 * 0.6 ** np.arange(classes - 1))))
    return torch.as_tensor(pred), torch.as_tensor(label)


def earlier_distances(p1, y1, both, spacing, percentile):
    """``vrsearch.engine.metrics._distances`` before 3c4ce2a: MONAI's two functions on the
    classes present in both maps, each making its own surface-distance pass."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    idx = [0] + [c + 1 for c in both]
    sub_p, sub_y = p1[:, idx], y1[:, idx]
    spacing_t = [float(s) for s in spacing]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(
            sub_p, sub_y, include_background=False, percentile=percentile, spacing=spacing_t
        )
        assd = compute_average_surface_distance(
            sub_p, sub_y, include_background=False, symmetric=True, spacing=spacing_t
        )
    return hd[0].double(), assd[0].double()


def timed(pred: torch.Tensor, label: torch.Tensor, classes: int, distances) -> tuple[float, list[dict]]:
    """Seconds of one ``case_metrics`` call with ``distances`` as its distance function, and its rows."""
    current, metrics._distances = metrics._distances, distances
    try:
        t0 = time.perf_counter()
        rows = metrics.case_metrics(pred, label, classes, SPACING)
        return time.perf_counter() - t0, rows
    finally:
        metrics._distances = current


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
        assert all(int((t == c).sum()) for t in (pred, label) for c in range(args.classes))  # every class in both
        arms = {"one pass": metrics._distances, "two functions": earlier_distances}
        times: dict[str, list[float]] = {k: [] for k in arms}
        rows_of = {k: timed(pred, label, args.classes, f)[1] for k, f in arms.items()}  # warm-up
        assert rows_of["one pass"] == rows_of["two functions"], "the two paths differ"
        for _ in range(args.repeats):  # alternating, so machine noise hits both arms alike
            for k, f in arms.items():
                times[k].append(timed(pred, label, args.classes, f)[0])
        one, two = (statistics.median(times[k]) for k in ("one pass", "two functions"))
        rows.append({"size": size, "one_pass_s": one, "two_functions_s": two, "ratio": one / two})
    print(f"{'size':>14} {'one pass (s)':>13} {'two passes (s)':>15} {'ratio':>6}   (whole case_metrics, 1 thread)")
    for r in rows:
        size = "×".join(map(str, r["size"]))
        print(f"{size:>14} {r['one_pass_s']:>13.3f} {r['two_functions_s']:>15.3f} {r['ratio']:>6.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"classes": args.classes, "spacing": SPACING, "threads": args.threads, "rows": rows}, indent=2)
        )


if __name__ == "__main__":
    main()
