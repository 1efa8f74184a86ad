"""The cells of an ablation table: how each raw number of its ``frame`` is written
(percent, percentage points, p-values with stars, counts), and the row order."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from vrsearch.results.table_view import Column

DASH = "-"


def stars(p: float | None) -> str:
    """Significance marker of a Holm-adjusted p-value."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def finite(x: Any) -> bool:
    """Whether ``x`` is a finite number (strings, None and NaN are not)."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def format_cell(row: pd.Series, col: Column) -> str:
    """The text of one cell: ``col.kind`` says how (percent ± CI, signed pp, p with stars, counts…)."""
    if col.kind == "text":
        return str(row[col.key])
    if col.kind == "counts":  # "pred_empty/label_empty" of one class
        flags = [row.get(f"{f}/{col.key.split('/', 1)[1]}") for f in ("pred_empty", "label_empty")]
        return "/".join(f"{float(v):.0f}" if finite(v) else "?" for v in flags)
    x = row[col.key]
    if not finite(x):
        return DASH
    if col.kind == "pair":  # paired seeds × cases of the headline test
        return f"{x:.0f} × {float(row['n_cases']):.0f}"
    x = float(x)
    if col.kind in ("pct_ci", "delta_ci"):
        half = row.get(col.key.replace("_mean", "_ci95") if col.kind == "pct_ci" else "delta_ci95", math.nan)
        value = f"{100 * x:.1f}" if col.kind == "pct_ci" else f"{100 * x:+.1f}"
        return f"{value} ± {100 * float(half):.1f}" if finite(half) else value
    if col.kind == "int":
        return f"{x:.0f}"
    if col.kind == "pct":
        return f"{100 * x:.1f}"
    if col.kind == "delta":
        return f"{100 * x:+.1f}"
    if col.kind in ("p", "p_sig"):
        text = "<0.001" if x < 0.001 else f"{x:.3f}"
        return f"{text} {stars(x)}".rstrip() if col.kind == "p_sig" else text
    if col.kind == "r":
        return f"{x:+.2f}"
    return f"{x:.2f}"  # mm, hours


def span(values: Iterable[Any]) -> str:
    """ "3" or "2–3" for the distinct finite counts in ``values``."""
    v = sorted({int(x) for x in values if finite(x)})
    return "?" if not v else str(v[0]) if len(v) == 1 else f"{v[0]}–{v[-1]}"


def pp_span(values: Iterable[Any]) -> str:
    """ "3.2" or "3.2–4.1" (percentage points) for the finite ``values``; "?" without any."""
    v = sorted(100 * float(x) for x in values if finite(x))
    return "?" if not v else f"{v[0]:.1f}" if f"{v[0]:.1f}" == f"{v[-1]:.1f}" else f"{v[0]:.1f}–{v[-1]:.1f}"


def group_order(groups: list[str], study: dict | None, baseline: str | None) -> list[str]:
    """Baseline first, then the study's ablation arms in study order, then the rest sorted."""
    search = (study or {}).get("search") or {}
    arms = [a.get("name") for a in (search.get("arms") or []) if isinstance(a, dict)]
    present = list(dict.fromkeys(groups))
    order = [baseline] if baseline in present else []
    order += [a for a in arms if a in present and a not in order]
    return order + sorted(g for g in present if g not in order)
