"""A method's training step, this tree's class against another revision's, side by side.

Builds one trainer as ``method_step.py`` does (registered defaults, 2 labeled +
2 unlabeled patches, two threads, past the warm-ups) and times full steps
(forward, backward, optimiser) alternating the method's class as the working
tree defines it and as ``git show REV:PATH`` does (the old module is loaded
without registering; the instance's ``__class__`` is swapped, so its methods and
the module's helpers are the revision's; the networks, losses in other modules,
samplers and the engine are this tree's in both arms, except the modules named
by ``--module``: the names the old class's module imports from them are taken
from the revision too). Pairs run in ABBA order on
fresh batches, so drift and the machine's load hit both alike; prints the medians,
the median of the paired ratios (old / new: > 1 = the working tree is faster) and
in how many pairs the working tree was faster.

    .venv/bin/python benchmarks/method_ab.py dvcl --rev HEAD~1 [--pairs 16] [--patch 48 48 32]
        [--module vrsearch.losses.dvcl] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path

from method_step import bench_study, full_step  # the sibling script (benchmarks/ is on sys.path)

from vrsearch import registry
from vrsearch.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def old_module(rev: str, name: str) -> types.ModuleType:
    """Module ``name`` as revision ``rev`` defines it (executed without registering methods)."""
    path = Path(sys.modules[name].__file__ or "").resolve().relative_to(ROOT)
    text = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True)
    old = types.ModuleType(f"_ab_{name.replace('.', '_')}")
    # sources before 3f2fc98 registered with a decorator and read MONA/ARCO's shared knobs
    # from methods/anatomical_params.py (now methods/specs/anatomical.py)
    real, registry.register_method = registry.register_method, lambda *a, **k: lambda c: c
    sys.modules.setdefault(
        "vrsearch.methods.anatomical_params", importlib.import_module("vrsearch.methods.specs.anatomical")
    )
    try:
        exec(compile(text.stdout, f"{rev}:{path}", "exec"), old.__dict__)  # noqa: S102 - this repository's own source at REV
    finally:
        registry.register_method = real
    return old


def old_class(rev: str, cls: type, helpers: list[str]) -> type:
    """``cls`` as revision ``rev`` defines it; what its module imported from the ``helpers``
    modules is replaced by their revision's definitions."""
    old = old_module(rev, cls.__module__)
    for name in helpers:
        tree, then = sys.modules[name], old_module(rev, name)
        for key, value in list(old.__dict__.items()):
            if getattr(tree, key, None) is value and hasattr(then, key):
                old.__dict__[key] = getattr(then, key)
    return getattr(old, cls.__name__)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("method")
    ap.add_argument("--rev", default="HEAD")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--patch", type=int, nargs=3, default=[48, 48, 32])
    ap.add_argument("--study", type=Path, default=ROOT / "studies" / "dvcl_vs_labeled_only.yaml")
    ap.add_argument("--threads", type=int, default=2, help="train.threads (the benchmark's default: 2)")
    ap.add_argument("--module", action="append", default=[], help="a helper module to take from REV as well")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.rev], cwd=ROOT, capture_output=True, text=True, check=True
    )
    study = bench_study(args.study, args.method, args.patch, args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(study, Path(scratch))
        src, method = trainer._source(0), trainer.method
        arms = {"old": old_class(args.rev, type(method), args.module), "new": type(method)}
        start = int(0.5 * study.train.iterations)
        for k in range(2):  # warm-up steps (lazy allocations, first bank pushes)
            full_step(trainer, src.batch(start + k), start + k)
        times: dict[str, list[float]] = {"old": [], "new": []}
        for k in range(args.pairs):
            it = start + 2 + 2 * k
            for j, arm in enumerate(("old", "new") if k % 2 == 0 else ("new", "old")):
                method.__class__ = arms[arm]
                times[arm].append(full_step(trainer, src.batch(it + j), it + j))
    ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
    old, new = (1000 * statistics.median(times[arm]) for arm in ("old", "new"))
    faster = sum(r > 1 for r in ratios)
    print(
        f"{args.method} {args.patch}, {args.pairs} pairs (ABBA): old ({rev.stdout.strip()}) {old:.0f} ms, new (tree) "
        f"{new:.0f} ms; old/new median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}); "
        f"the tree faster in {faster} of {len(ratios)} pairs"
    )
    if args.json:
        args.json.write_text(json.dumps({"rev": rev.stdout.strip(), "patch": args.patch, **times}, indent=1))


if __name__ == "__main__":
    main()
