"""Peak memory of one MONA / ARCO training step at paper-default knobs (CPU).

Each measurement runs in a fresh child process: build the trainer, note the
resident set size (``VmRSS``), run one full step (forward with every loss
term, backward, optimiser step, teacher update), and report the process's
high-water mark (``ru_maxrss``) minus that baseline — the memory the step
itself needs. ``--dense`` also measures the dense representation path
(``MONA.dense_reference``: the full ``[B, 512, *S]`` maps the sampled path
replaces) for before/after. On a GPU machine, ``torch.cuda.max_memory_allocated``
would be the number to take; this script is for the CPU.

    .venv/bin/python benchmarks/method_memory.py [--patch 96 96 64] [--only mona arco] [--dense]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child(name: str, patch: list[int], dense: bool, study: Path) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    from method_step import bench_study, full_step

    from vrsearch.engine.trainer import Trainer

    s = bench_study(study, name, patch)
    trainer = Trainer(s, Path(tempfile.mkdtemp(prefix="vrs-mem-")) / name)
    trainer.method.dense_reference = dense
    batch = trainer._source(0).batch(500)
    base = _rss_mb()
    seconds = full_step(trainer, batch, 500)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"baseline_mb": base, "peak_mb": peak, "step_mb": peak - base, "step_s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", type=Path, default=Path("studies/dvcl_vs_labeled_only.yaml"))
    ap.add_argument("--patch", type=int, nargs=3, default=[96, 96, 64])
    ap.add_argument("--only", nargs="+", default=["mona", "arco"])
    ap.add_argument("--dense", action="store_true", help="also the dense representation path (before)")
    ap.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.patch, args.child[1] == "dense", args.study)))
        return
    rows = {}
    for name in args.only:
        for path in ["sampled", "dense"] if args.dense else ["sampled"]:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                name,
                path,
                "--patch",
                *map(str, args.patch),
                "--study",
                str(args.study),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                rows[f"{name} ({path})"] = {"error": proc.stderr.strip().splitlines()[-1:]}
            else:
                rows[f"{name} ({path})"] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"patch {args.patch}, batch 2 labeled + 2 unlabeled, one step at paper-default knobs")
    for key, r in rows.items():
        if "error" in r:
            print(f"{key:<18} failed: {r['error']}")
        else:
            print(
                f"{key:<18} step peak {r['step_mb']:>8.0f} MB over a {r['baseline_mb']:.0f} MB baseline "
                f"({r['step_s']:.1f} s)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
