"""Bias and variance of the voxel samplers, alone and inside ARCO (issue 17).

(a) ``rounding``: the class-mean estimate ``Σ w·f`` of a smooth field f over
    long-tailed labels (background plus 7 ellipsoid organs whose volumes span
    ~3 orders of magnitude, as in ``sampler_speed.py``), in the settings the
    methods use: LCL (3 anchors per class per image, 2 volumes of 48×64×64),
    ARCO (256 queries per class over a batch of 4 volumes of 32×64×64) and
    DVCL (256 anchors per class over the 8-volume stack of both networks,
    8 of 32×48×48). For SG and SAG with ``largest`` remainder (ARCO's),
    ``random`` (systematic) and ``auto`` rounding (the default): the largest
    |bias|/SE over the classes and the median and largest MSE relative to NS.
(b) ``arco``: ``L_contrast`` of ARCO (``MONA._contrast``: queries, keys, bank,
    negatives, with the samplers' weights in use) on a fixed batch of phantom
    patches (2 labeled + 2 unlabeled, 48×48×32, 14 classes; embedding 32,
    64 queries and 128 keys per class as in ``studies/arco_phantom.yaml``) under NS, SG and
    SAG at grid 9/16/25, ``arco-draws`` independent sampler draws each: mean ± SE
    and variance relative to NS (the paper's Fig. 5 question, one step).
    The network is ARCO's stage-2 student/teacher after ``--train-steps`` ARCO
    steps on the phantom (0 = random initialisation).

    .venv/bin/python benchmarks/sampler_variance.py [--draws 400] [--arco-draws 200] [--train-steps 20]
        [--only rounding|arco] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sampler_speed import long_tailed_labels

from vrsearch.components.samplers import sample_voxels

ROUNDINGS = ("largest", "random", "auto")
SETTINGS = {  # name: (batch, shape, per_class, per_image, grids)
    "lcl": (2, (48, 64, 64), 3, True, (16, 25)),
    "arco": (4, (32, 64, 64), 256, False, (16, 25)),
    "dvcl": (8, (32, 48, 48), 256, False, (16,)),
}


def smooth_field(shape) -> torch.Tensor:
    axes = torch.meshgrid(*[torch.arange(s, dtype=torch.float64) for s in shape], indexing="ij")
    return torch.sin(axes[0] / 5.0) + 0.03 * axes[1] + 0.8 * torch.cos(axes[2] / 7.0)


def estimates(labels, f, n, per_image, method, grid, rounding, draws, g) -> torch.Tensor:
    """[draws, units] of Σ w·f per unit (image×class or class)."""
    K, B = int(labels.max()) + 1, labels.shape[0]
    units = B * K if per_image else K
    out = torch.empty(draws, units, dtype=torch.float64)
    flat = f.reshape(-1)
    for d in range(draws):
        s = sample_voxels(labels, n, method=method, grid=grid, generator=g, per_image=per_image, rounding=rounding)
        u = s.batch * K + s.cls if per_image else s.cls
        out[d] = torch.zeros(units, dtype=torch.float64).index_add_(0, u, s.weight.double() * flat[s.index])
    return out


def truth(labels, f, per_image) -> torch.Tensor:
    K, B = int(labels.max()) + 1, labels.shape[0]
    if per_image:
        return torch.tensor(
            [f[b][labels[b] == c].mean() if (labels[b] == c).any() else math.nan for b in range(B) for c in range(K)],
            dtype=torch.float64,
        )
    return torch.tensor([f[labels == c].mean() for c in range(K)], dtype=torch.float64)


def rounding_table(draws: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(0)
    for name, (B, shape, n, per_image, grids) in SETTINGS.items():
        labels = long_tailed_labels(B=B, shape=shape, classes=8, seed=len(name))
        f = smooth_field(shape).expand(labels.shape).contiguous()
        t = truth(labels, f, per_image)
        ok = ~torch.isnan(t)
        ns = estimates(labels, f, n, per_image, "ns", 16, "auto", draws, g)
        mse_ns = ((ns - t) ** 2).mean(0)
        for grid in grids:
            for method in ("sg", "sag"):
                for rounding in ROUNDINGS:
                    e = estimates(labels, f, n, per_image, method, grid, rounding, draws, g)
                    z = ((e.mean(0) - t) / (e.std(0) / math.sqrt(draws)).clamp_min(1e-300))[ok]
                    mse = (((e - t) ** 2).mean(0) / mse_ns)[ok]
                    rows.append(
                        {
                            "setting": name,
                            "grid": grid,
                            "sampler": method,
                            "rounding": rounding,
                            "max_abs_bias_se": float(z.abs().max()),
                            "mse_vs_ns_median": float(mse.median()),
                            "mse_vs_ns_max": float(mse.max()),
                        }
                    )
                    r = rows[-1]
                    print(
                        f"{name:>5} grid {grid:>2} {method:>3} {rounding:>7}: "
                        f"max|bias|/SE {r['max_abs_bias_se']:8.1f}  "
                        f"MSE/NS median {r['mse_vs_ns_median']:.3f} max {r['mse_vs_ns_max']:.3f}",
                        flush=True,
                    )
    return rows


def phantom_batch(n_labeled=2, n_unlabeled=2, size=(48, 48, 32)):
    from vrsearch.data.phantom import PhantomConfig, generate_case
    from vrsearch.methods.base import Batch

    cfg = PhantomConfig(size=size, spacing=(7.0, 7.0, 8.0))
    images, labels = [], []
    for i in range(n_labeled + n_unlabeled):
        img, lab, _ = generate_case(i, cfg)
        images.append(np.clip((img.astype(np.float32) + 325) / 650, 0, 1))
        labels.append(lab.astype(np.int64))
    x = torch.from_numpy(np.stack(images))[:, None]
    y = torch.from_numpy(np.stack(labels))[:, None]
    return Batch(x[:n_labeled], y[:n_labeled], x[n_labeled:])


def arco_table(draws: int, train_steps: int, grids=(9, 16, 25)) -> list[dict]:
    from vrsearch.components.views import step_generator
    from vrsearch.methods import get_method
    from vrsearch.methods.base import BuildContext
    from vrsearch.study.schema import ModelConfig

    batch = phantom_batch()
    spec = get_method("arco")
    model = ModelConfig(channels=(8, 16, 32), feature_dim=16, num_res_units=0)
    # the CPU sizes of studies/arco_phantom.yaml (paper: 512-d, 256 queries / 512 keys per class)
    params = dict(stage=2, embedding_dim=32, queries=64, keys=128, negative_bank_size=128, geometric=False)
    torch.manual_seed(0)
    m = spec.build(spec.validate(params), BuildContext(model, 14, max(train_steps, 1), seed=0)).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for it in range(train_steps):
        out = m(batch, it)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        m.after_step(it)
    print(f"arco: {train_steps} training steps in {time.perf_counter() - t0:.0f} s", flush=True)
    with torch.no_grad():  # the fixed inputs of L_contrast: as MONA._stage2 computes them, views = identity
        x = torch.cat([batch.image, batch.unlabeled])
        s = m.student.run(x, rep=True)
        t = m.teacher.module.run(x, rep=True)
        prob = t["logits"].softmax(1)
        labels = torch.cat([batch.label[:, 0], prob[2:].argmax(1)])
        conf = prob.gather(1, labels.unsqueeze(1))[:, 0]
    rows = []
    for grid in grids:
        values = {}
        for sampler in ("ns", "sg", "sag"):
            m.params = m.params.model_copy(update={"sampler": sampler, "grid": grid})
            m.negatives.reset()
            vals = []
            t0 = time.perf_counter()
            with torch.no_grad():
                for d in range(draws):
                    vals.append(
                        float(m._contrast(s["rep"], t["rep"], labels, conf, step_generator(1, d, 0, x.device), d)[0])
                    )
            values[sampler] = torch.tensor(vals, dtype=torch.float64)
            v = values[sampler]
            rows.append(
                {
                    "grid": grid,
                    "sampler": sampler,
                    "mean": float(v.mean()),
                    "se": float(v.std() / math.sqrt(draws)),
                    "var": float(v.var()),
                    "ms_per_draw": 1e3 * (time.perf_counter() - t0) / draws,
                }
            )
        for r in rows[-3:]:
            r["var_vs_ns"] = r["var"] / rows[-3]["var"]
            print(
                f"arco grid {grid:>2} {r['sampler']:>3}: L_contrast {r['mean']:.4f} ± {r['se']:.4f}  "
                f"var {r['var']:.3e} ({r['var_vs_ns']:.3f} × NS)",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=400, help="sampler draws per arm in (a)")
    ap.add_argument("--arco-draws", type=int, default=200, help="L_contrast draws per sampler and grid in (b)")
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--only", choices=["rounding", "arco"], default=None)
    ap.add_argument("--grids", type=int, nargs="*", default=[9, 16, 25], help="ARCO grids in (b)")
    ap.add_argument("--quick", action="store_true", help="fewer draws, one ARCO grid, no training steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    draws, arco_draws = (60, 30) if args.quick else (args.draws, args.arco_draws)
    result = {"draws": draws, "arco_draws": arco_draws}
    if args.only in (None, "rounding"):
        result["rounding"] = rounding_table(draws)
    if args.only in (None, "arco"):
        result["arco"] = arco_table(
            arco_draws, 0 if args.quick else args.train_steps, (16,) if args.quick else tuple(args.grids)
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
