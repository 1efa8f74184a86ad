"""Step time of every method over the forward+backward time of its networks alone.

For each registered method: one full training step (the method's forward
with all its losses, samplers, banks and teachers, backward, optimiser step)
against the floor it cannot avoid. **The floor** is forward+backward of every
segmentation network the method trains over every image tensor the step feeds
it, and forward-only for every pass made without a gradient (EMA teachers,
frozen copies, pseudo-labelling passes): the passes are *recorded* from a real
step (a hook on each SegNet's backbone notes the input shape and whether a
gradient flows) and replayed on random tensors of the same shapes, so
multi-view methods (SPCL's two views in one pass, MONA's student, teacher
and equivariance passes, CPS's two networks) are compared with what they
must compute. A pass is backbone + output norm + segmentation head;
training-only heads (feature/projection heads, MONA/ARCO's representation
head) are *not* in the floor: they are the machinery being measured. The two
are timed in alternation (A B A B …) in one process and the ratio is taken
pair by pair, so machine noise hits both alike; the last column is the ratio of
the means, which over whole log windows (``--repeats`` a multiple of the
study's ``train.log_every``, 10) counts work a method does once per window
(MONA/ARCO's ``contrast_spread`` draw). With two ``--patch`` sizes
the script also prints, per method, how the ratio changes from the first size
to the second (flat = the method's extra cost scales like its networks').
For MONA/ARCO a last column also divides the step by the floor *plus* the representation
head's work that MONA's Eq. 4 makes dense (the positive key of class c is the mean embedding
over every voxel of c, and ``L_nn`` pools every voxel too): its trunk (FPN sum, 3×3 conv, norm,
ReLU) over every voxel and its class sums through the 512-wide layer over every voxel, recorded
from a real step and replayed on random tensors like the floor ("+head"). What the step spends
beyond that is the sampled machinery itself (``L_contrast``, embeddings at the sampled voxels,
samplers, banks, losses). This column is context, not the issue's floor.
Both run in one process, with glibc's thresholds raised as in every training process
(``vrsearch.engine.allocator``; ``VRSEARCH_MALLOC=system`` measures glibc's defaults).
``--reference`` adds MONA/ARCO on their dense representation path
(``MONA.dense_reference``, the pre-sampling implementation) for before/after.

    .venv/bin/python benchmarks/method_step.py [--repeats 6] [--patch 48 48 32] [--patch 96 96 64]
        [--only mona arco] [--reference]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from vrsearch.engine.trainer import Trainer
from vrsearch.methods import all_methods
from vrsearch.models.embedding import SampledEmbedding
from vrsearch.models.heads import RepresentationHead
from vrsearch.models.nets import SegNet
from vrsearch.study import Study, load_study


def full_step(trainer: Trainer, batch, it: int) -> float:
    t0 = time.perf_counter()
    out = trainer.step_module(batch, it)
    trainer.optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    trainer.optimizer.step()
    trainer.method.after_step(it)
    return time.perf_counter() - t0


def record_passes(trainer: Trainer, batch, it: int) -> list[tuple[SegNet, tuple[int, ...], bool]]:
    """Run one step and return, for every segmentation-network pass it made, the
    network, its backbone input shape and whether the pass carried a gradient."""
    passes: list = []
    nets = [m for m in trainer.method.modules() if isinstance(m, SegNet)]

    def hook(net):
        def note(_m, args):
            grad = torch.is_grad_enabled() and any(p.requires_grad for p in net.parameters())
            passes.append((net, tuple(args[0].shape), grad))

        return note

    handles = [net.backbone.register_forward_pre_hook(hook(net)) for net in nets]
    try:
        full_step(trainer, batch, it)
    finally:
        for h in handles:
            h.remove()
    return passes


def record_dense_head(trainer: Trainer, batch, it: int) -> list[tuple]:
    """Run one step and return the representation head's work that MONA's Eq. 4 makes dense
    (MONA/ARCO): per ``sampled()`` call, the head, its input shapes, whether a gradient flowed,
    and the (labels shape, classes) of every class sum taken of that embedding."""
    calls: list = []
    sampled, sums = RepresentationHead.sampled, SampledEmbedding.class_sums

    def note_sampled(head, feats):
        emb = sampled(head, feats)
        calls.append((head, [tuple(f.shape) for f in feats], torch.is_grad_enabled(), emb, []))
        return emb

    def note_sums(emb, labels, num_classes):
        for call in calls:
            if call[3] is emb:
                call[4].append((tuple(labels.shape), num_classes, torch.is_grad_enabled()))
        return sums(emb, labels, num_classes)

    RepresentationHead.sampled, SampledEmbedding.class_sums = note_sampled, note_sums
    try:
        full_step(trainer, batch, it)
    finally:
        RepresentationHead.sampled, SampledEmbedding.class_sums = sampled, sums
    return [(head, shapes, grad, labels) for head, shapes, grad, _, labels in calls]


def dense_head_step(calls: list[tuple]) -> float:
    """Replay, on random tensors, the head's dense-by-definition work recorded by
    :func:`record_dense_head`: its trunk (FPN sum, 3×3 conv, norm, ReLU) over every voxel,
    the norm statistics of the 512-wide layer, and its class sums through that layer over
    every voxel (recomputed in backward, as the method does); forward+backward where the
    step had a gradient. The inputs are made before the clock starts, as the floor's are."""
    inputs = [
        ([torch.randn(s).requires_grad_(grad) for s in shapes], [torch.randint(0, c, sh) for sh, c, _ in labels])
        for _, shapes, grad, labels in calls
    ]
    t0 = time.perf_counter()
    for (head, _, grad, labels), (feats, labs) in zip(calls, inputs, strict=True):
        with torch.set_grad_enabled(grad):
            emb = head.sampled(feats)
        out = emb.a.float().mean()
        for (_, classes, sum_grad), lab in zip(labels, labs, strict=True):
            with torch.set_grad_enabled(sum_grad):
                out = out + emb.class_sums(lab, classes)[0].float().mean()
        if out.requires_grad:
            out.backward()
    return time.perf_counter() - t0


def floor_step(passes: list[tuple[SegNet, tuple[int, ...], bool]]) -> float:
    inputs = [torch.randn(shape) for _, shape, _ in passes]
    t0 = time.perf_counter()
    for (net, _, grad), x in zip(passes, inputs, strict=True):
        with torch.set_grad_enabled(grad):
            logits = net.seg_head(net.post(net.backbone(x)))
        if grad:
            logits.float().mean().backward()
    return time.perf_counter() - t0


def bench_study(study_path: Path, name: str, patch: list[int], threads: int = 2) -> Study:
    """The benchmark's study: method ``name`` at its registered defaults on a ``patch`` patch,
    2 labeled + 2 unlabeled images, ``threads`` threads."""
    overrides = ["method.params={}", "search.design=none", "search.arms=[]", "train.batch.unlabeled=2"]
    overrides += [
        f"method.name={name}",
        f"dataset.patch_size={patch}",
        "train.iterations=1000",
        f"train.threads={threads}",
    ]
    return load_study(study_path, overrides)


def measure(study_path: Path, name: str, patch: list[int], repeats: int, scratch: Path, dense: bool = False) -> dict:
    study = bench_study(study_path, name, patch)
    trainer = Trainer(study, scratch / f"{name}-{'x'.join(map(str, patch))}-{dense}")
    if dense:
        trainer.method.dense_reference = True
    src = trainer._source(0)
    # run past warm-ups (LCL's, self-training's first refresh; MONA/ARCO's stage 1) so every loss term is active
    start = int(0.5 * study.train.iterations)
    passes = record_passes(trainer, src.batch(start), start)
    head_calls = [] if dense else record_dense_head(trainer, src.batch(start), start)
    if name in ("mona", "arco") and not dense and not head_calls:
        print(f"warning: {name} made no representation-head call at iteration {start}: no +head column")
    steps, floors, heads = [], [], []
    for k in range(1, repeats + 2):
        batch = src.batch(start + k)
        s = full_step(trainer, batch, start + k)
        f = floor_step(passes)
        h = dense_head_step(head_calls) if head_calls else 0.0
        if k >= 2:
            steps.append(s)
            floors.append(f)
            heads.append(h)
    ratios = [s / f for s, f in zip(steps, floors)]
    out = {
        "step_ms": 1e3 * statistics.median(steps),
        "floor_ms": 1e3 * statistics.median(floors),
        "ratio": statistics.median(ratios),
        # over whole log windows (--repeats a multiple of train.log_every) the mean counts the steps
        # that do extra work once per window (MONA/ARCO's contrast_spread draw)
        "ratio_mean": statistics.mean(steps) / statistics.mean(floors),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "networks": len({id(n) for n, _, g in passes if g}),
        "passes": len(passes),
        "grad_passes": sum(g for *_, g in passes),
    }
    if head_calls:  # MONA/ARCO: also against the floor plus what Eq. 4 makes dense (module doc)
        out["dense_head_ms"] = 1e3 * statistics.median(heads)
        out["ratio_exact"] = statistics.median(s / (f + h) for s, f, h in zip(steps, floors, heads))
    return out


def _row(name: str, r: dict) -> str:
    return (
        f"{name:<18} {r['networks']:>4} {r['grad_passes']:>2}+{r['passes'] - r['grad_passes']:<2} "
        f"{r['step_ms']:>9.0f} {r['floor_ms']:>9.0f} {r['ratio']:>10.2f} {r['ratio_min']:>6.2f}–{r['ratio_max']:.2f}"
        f" {r['ratio_mean']:>7.2f}"
        + (f"   +head {r['dense_head_ms']:.0f} ms: {r['ratio_exact']:.2f}" if "ratio_exact" in r else "")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=Path("studies/dvcl_vs_labeled_only.yaml"))
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--patch", type=int, nargs=3, action="append", default=None)
    ap.add_argument("--only", nargs="+", default=None, help="methods to measure (default: every registered one)")
    ap.add_argument("--reference", action="store_true", help="also MONA/ARCO on the dense representation path")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    patches = args.patch or [[48, 48, 32]]
    names = args.only or [spec.name for spec in all_methods()]
    runs = [(n, False) for n in names] + [(n, True) for n in names if args.reference and n in ("mona", "arco")]
    scratch = Path(tempfile.mkdtemp(prefix="vrs-step-"))
    table: dict[str, dict] = {}
    for patch in patches:
        key = "x".join(map(str, patch))
        print(f"patch {patch}, batch 2 labeled + 2 unlabeled, median of {args.repeats} paired steps")
        print(
            f"{'method':<18} {'nets':>4} {'passes':>6} {'step ms':>9} {'floor ms':>9} {'step/floor':>10} "
            f"{'(min–max)':>13} {'mean':>7}",
            flush=True,
        )
        table[key] = {}
        for n, d in runs:
            name = f"{n} (dense)" if d else n
            table[key][name] = measure(args.study, n, patch, args.repeats, scratch, d)
            print(_row(name, table[key][name]), flush=True)
    if len(patches) > 1:
        first, last = ("x".join(map(str, p)) for p in (patches[0], patches[-1]))
        print(f"flatness: step/floor at {last} over step/floor at {first} (≤ 1: the extra cost does not grow)")
        for name in table[first]:
            print(
                f"{name:<18} {table[first][name]['ratio']:>6.2f} → {table[last][name]['ratio']:>6.2f}  "
                f"({table[last][name]['ratio'] / table[first][name]['ratio']:.2f})"
            )
    if args.json:
        args.json.write_text(json.dumps(table if len(patches) > 1 else table[next(iter(table))], indent=2))


if __name__ == "__main__":
    main()
