"""Each arm's share of the label headroom, from a ``vrsearch table`` CSV.

The headroom is the upper-bound arm's Δ over the baseline (fully supervised −
labeled-only); an arm's share is its Δ over that headroom, with its 95 % CI
bounds divided by the same headroom. The headroom's own uncertainty is *not*
propagated (the interval is conditional on the observed headroom; its relative
half-width is printed beside it so a reader can judge how much that matters).

    .venv/bin/python benchmarks/headroom_share.py benchmarks/benchmark_phantom/table_val.csv [--upper fully_supervised]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def headroom(t: pd.DataFrame, upper: str) -> tuple[float, float]:
    """The upper-bound arm's Δ and its CI half-width (fractions) in the table indexed by group;
    one line and exit 1 when the arm has none."""
    if upper not in t.index or pd.isna(t.loc[upper, "delta"]):
        raise SystemExit(f"error: no arm {upper!r} with a Δ in the table (arms: {', '.join(t.index)})")
    return float(t.loc[upper, "delta"]), float(t.loc[upper, "delta_ci95"])


def shares(table: pd.DataFrame, upper: str) -> pd.DataFrame:
    """Δ, its CI and Holm p (percentage points) and the share of the headroom (%) per arm."""
    t = table.set_index("group")
    head = headroom(t, upper)[0]
    arms = t[t["delta"].notna() & (t.index != upper)]
    return pd.DataFrame(
        {
            "dice_%": 100 * arms["dice_mean"],
            "delta_pp": 100 * arms["delta"],
            "ci_low_pp": 100 * arms["delta_low"],
            "ci_high_pp": 100 * arms["delta_high"],
            "p_holm": arms["p_holm"],
            "share_%": 100 * arms["delta"] / head,
            "share_low_%": 100 * arms["delta_low"] / head,
            "share_high_%": 100 * arms["delta_high"] / head,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--upper", default="fully_supervised")
    args = ap.parse_args()
    table = pd.read_csv(args.csv)
    head, half = (100 * v for v in headroom(table.set_index("group"), args.upper))
    out = shares(table, args.upper)
    print(f"headroom ({args.upper} − baseline): {head:+.1f} ± {half:.1f} pp (relative half-width {half / head:.0%})")
    print(out.to_string(formatters={"p_holm": "{:.3f}".format}, float_format=lambda v: f"{v:.1f}"))


if __name__ == "__main__":
    main()
