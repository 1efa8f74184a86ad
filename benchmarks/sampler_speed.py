"""Speed of the voxel samplers (vrsearch.components.samplers) on a FLARE-sized batch.

B=2 label volumes of 64×128×128 with 14 classes in a long-tailed layout
(background plus 13 random ellipsoid blobs whose volumes span ~3 orders of
magnitude), 256 anchors per class per image, ns/sg/sag × grid 9/16/25.
Prints the median wall time over the repeats (after one warm-up call per arm;
arms interleaved round-robin) and the ratio to NS of the same grid, measured
in the same run. The process keeps freed memory as training processes do
(``vrsearch.engine.allocator``; ``VRSEARCH_MALLOC=system`` for glibc's defaults).

    .venv/bin/python benchmarks/sampler_speed.py [--repeats 10] [--threads 2] [--device cpu] [--labels noise]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import vrsearch
from vrsearch.components.samplers import GRIDS, SAMPLERS, sample_voxels
from vrsearch.engine.allocator import keep_freed_memory


def long_tailed_labels(B=2, shape=(64, 128, 128), classes=14, seed=0, device="cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    axes = [torch.arange(s, dtype=torch.float32) for s in shape]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    labels = torch.zeros(B, *shape, dtype=torch.long)
    for b in range(B):
        # radii from ~40% of the volume down to a few voxels: long tail
        for c in range(1, classes):
            frac = 0.35 * (0.62 ** (c - 1))
            radii = torch.tensor(shape, dtype=torch.float32) * frac * (0.7 + 0.6 * torch.rand(3, generator=g))
            radii = radii.clamp(min=2.0)
            centre = torch.tensor(shape, dtype=torch.float32) * (0.2 + 0.6 * torch.rand(3, generator=g))
            d = (
                ((zz - centre[0]) / radii[0]) ** 2
                + ((yy - centre[1]) / radii[1]) ** 2
                + ((xx - centre[2]) / radii[2]) ** 2
            )
            labels[b][d <= 1] = c
    return labels.to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="1 = steadier timings on a shared machine")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--per-class", type=int, default=256)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--labels",
        choices=("blobs", "noise"),
        default="blobs",
        help="noise: every voxel an independent class (the samplers' fragmented-label path)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # as in every training process (VRSEARCH_MALLOC=system: glibc's defaults)
    labels = long_tailed_labels(device=args.device)
    if args.labels == "noise":
        labels = torch.randint(0, 14, labels.shape, generator=torch.Generator().manual_seed(0)).to(args.device)
    print(f"vrsearch from {Path(vrsearch.__file__).parent}")
    sizes = torch.bincount(labels[0].reshape(-1), minlength=14).tolist()
    print(f"labels {tuple(labels.shape)} on {args.device}; image-0 class sizes: {sizes}; freed memory kept: {kept}")
    gen = torch.Generator(device=args.device).manual_seed(0)
    sync = torch.cuda.synchronize if labels.is_cuda else (lambda: None)

    n_units = int((torch.stack([torch.bincount(x.reshape(-1), minlength=14) for x in labels]) > 0).sum())
    arms = [(method, grid) for grid in GRIDS for method in SAMPLERS]
    times: dict[tuple[str, int], list[float]] = {arm: [] for arm in arms}
    for arm in arms:  # warm-up
        sample_voxels(labels, args.per_class, method=arm[0], grid=arm[1], generator=gen)
    for _ in range(args.repeats):  # round-robin, so machine noise hits every arm alike
        for method, grid in arms:
            sync()
            t0 = time.perf_counter()
            s = sample_voxels(labels, args.per_class, method=method, grid=grid, generator=gen)
            sync()
            times[(method, grid)].append(time.perf_counter() - t0)
            assert len(s) == args.per_class * n_units
    rows = []
    for method, grid in arms:
        ms = statistics.median(times[(method, grid)]) * 1e3
        rows.append((method, grid, ms, ms / (statistics.median(times[("ns", grid)]) * 1e3)))
    print(f"{'sampler':>8} {'grid':>5} {'median ms':>10} {'× NS':>6}")
    for method, grid, ms, ratio in rows:
        print(f"{method:>8} {grid:>5} {ms:>10.1f} {ratio:>6.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "labels": list(labels.shape),
                    "per_class": args.per_class,
                    "rows": [{"sampler": m, "grid": g, "ms": ms, "x_ns": r} for m, g, ms, r in rows],
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
