"""Phantom generation speed: the cohort population against the classic one, side by side.

Generates the same subjects with both populations in one process, alternating
population by subject (so machine noise hits both alike), and writes one full
dataset of each (``write_phantom``: generation plus NIfTI/gzip) into a
temporary folder. Prints seconds per subject, seconds per dataset and the
cohort / classic ratios.

    .venv/bin/python benchmarks/phantom_speed.py [--cases 24 --unlabeled 24] [--size 96 96 64 --spacing 3.5 3.5 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vrsearch.data.phantom import POPULATIONS, PhantomConfig, generate_case, write_phantom


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--unlabeled", type=int, default=24)
    ap.add_argument("--subjects", type=int, default=12, help="subjects timed one by one per population")
    ap.add_argument("--size", type=int, nargs=3, default=(96, 96, 64))
    ap.add_argument("--spacing", type=float, nargs=3, default=(3.5, 3.5, 4.0))
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args()
    configs = {
        p: PhantomConfig(
            cases=args.cases, unlabeled=args.unlabeled, size=tuple(args.size), spacing=tuple(args.spacing), population=p
        )
        for p in POPULATIONS
    }
    per_subject = {p: 0.0 for p in POPULATIONS}
    for index in range(args.subjects):
        for p in POPULATIONS if index % 2 else reversed(POPULATIONS):
            t0 = time.perf_counter()
            generate_case(index, configs[p])
            per_subject[p] += (time.perf_counter() - t0) / args.subjects
    dataset = {}
    with tempfile.TemporaryDirectory(prefix="vrsearch-phantom-speed-") as tmp:
        for p in POPULATIONS:
            t0 = time.perf_counter()
            write_phantom(Path(tmp) / p, configs[p])
            dataset[p] = time.perf_counter() - t0
    result = {
        "size": list(args.size),
        "spacing": list(args.spacing),
        "subjects": args.cases + args.unlabeled,
        "per_subject_s": per_subject,
        "dataset_s": dataset,
        "ratio_per_subject": per_subject["cohort"] / per_subject["classic"],
        "ratio_dataset": dataset["cohort"] / dataset["classic"],
    }
    for p in POPULATIONS:
        print(
            f"{p:>8}: {per_subject[p]:.3f} s per subject, {dataset[p]:.1f} s for {result['subjects']} subjects on disk"
        )
    print(f"cohort / classic: {result['ratio_per_subject']:.2f} per subject, {result['ratio_dataset']:.2f} per dataset")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
