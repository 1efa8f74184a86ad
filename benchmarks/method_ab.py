"""A method's training step, this tree's ``forward`` against another revision's, side by side.

Builds one trainer as ``method_step.py`` does (registered defaults, 2 labeled +
2 unlabeled patches, two threads, past the warm-ups) and times full steps
(forward, backward, optimiser) alternating the method's ``forward`` from the
working tree and from ``git show REV:PATH`` (A B A B …, fresh batches), so
the machine's load hits both alike; prints the medians and the median of the
paired ratios (old / new: > 1 = the working tree is faster). Only ``forward``
is swapped: a change elsewhere (losses, samplers, networks) is in both arms.

    .venv/bin/python benchmarks/method_ab.py dvcl --rev HEAD~1 [--pairs 16] [--patch 48 48 32]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from method_step import bench_study, full_step  # the sibling script (benchmarks/ is on sys.path)

from vrsearch import registry
from vrsearch.engine.trainer import Trainer


def old_forward(rev: str, cls: type):
    """``cls.forward`` as revision ``rev`` defines it (its module loaded without registering)."""
    module = sys.modules[cls.__module__]
    path = Path(module.__file__).resolve().relative_to(Path(__file__).resolve().parents[1])
    text = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True, check=True).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location(f"_ab_{cls.__module__.replace('.', '_')}", f.name)
    old = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    real, registry.register_method = registry.register_method, lambda *a, **k: lambda c: c
    try:
        spec.loader.exec_module(old)  # type: ignore[union-attr]
    finally:
        registry.register_method = real
    return getattr(old, cls.__name__).forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--study", type=Path, default=Path("studies/dvcl_vs_labeled_only.yaml"))
    args = ap.parse_args()
    study = bench_study(args.study, args.method, args.patch)
    trainer = Trainer(study, Path(tempfile.mkdtemp()))
    src, method = trainer._source(0), trainer.method
    arms = {"old": old_forward(args.rev, type(method)), "new": type(method).forward}
    start = int(0.5 * study.train.iterations)
    for k in range(2):  # warm-up steps (lazy allocations, first bank pushes)
        full_step(trainer, src.batch(start + k), start + k)
    times: dict[str, list[float]] = {"old": [], "new": []}
    for k in range(args.pairs):
        for arm, forward in arms.items():
            method.forward = types.MethodType(forward, method)  # type: ignore[method-assign]
            times[arm].append(full_step(trainer, src.batch(start + 2 + k), start + 2 + k))
    ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
    old, new = (1000 * statistics.median(times[arm]) for arm in ("old", "new"))
    print(
        f"{args.method} {args.patch}, {args.pairs} pairs: old ({args.rev}) {old:.0f} ms, new {new:.0f} ms; "
        f"old/new median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
