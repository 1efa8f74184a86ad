"""Shared pieces of the report's figures: the "no data" figure, knob labels and
values, stable colours, category ordering (used by :mod:`vrsearch.report.figures`,
:mod:`vrsearch.report.run_figures`, :mod:`vrsearch.report.trial_curves` and
:mod:`vrsearch.report.importance`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative

NO_DATA = "no data"
PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24


def no_data(title: str, reason: str = "") -> go.Figure:
    """An empty figure whose only content is the annotation "no data" (+ reason)."""
    fig = go.Figure()
    text = f"{NO_DATA}: {reason}" if reason else NO_DATA
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16})
    fig.update_layout(title=title, height=280, xaxis={"visible": False}, yaxis={"visible": False})
    return fig


def label(knob: str) -> str:
    """Short axis label of a knob: ``method.params.k`` → ``k``; other keys stay dotted."""
    return knob.removeprefix("config.").removeprefix("method.params.")


def colors(keys: Iterable[Any]) -> dict[Any, str]:
    """A stable colour per key (in order of first appearance)."""
    return {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(dict.fromkeys(keys))}


def rgba(color: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def fmt(x: object) -> str:
    return f"{x:.4g}" if isinstance(x, (float, np.floating)) else str(x)


def knob_values(trials: pd.DataFrame, knob: str) -> tuple[pd.Series, bool]:
    """``(values, categorical)`` of a knob's ``config.<knob>`` column.

    Categorical (strings, booleans, lists as JSON) → string labels, missing as
    ``"None"``; otherwise floats (NaN where missing). An absent column gives all-NaN."""
    column = knob if knob in trials.columns else f"config.{knob}"
    if column not in trials.columns:
        return pd.Series(np.nan, index=trials.index, dtype=float), False
    raw = trials[column]
    present = raw.dropna()
    textual = present.map(lambda v: isinstance(v, (str, bool, np.bool_))).any()
    numbers = pd.to_numeric(raw, errors="coerce")
    if textual or numbers.notna().sum() < len(present):
        return raw.map(lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v)), True
    return numbers.astype(float), False


def log_axis(values: pd.Series) -> bool:
    v = values.dropna()
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() >= 50


def categories(values: pd.Series) -> list[str]:
    """Category labels sorted numerically where they look like numbers, else alphabetically."""
    uniq = list(dict.fromkeys(values))
    nums = pd.to_numeric(pd.Series(uniq, dtype=object), errors="coerce")
    if nums.notna().all():
        return [u for _, u in sorted(zip(nums, uniq))]
    return sorted(uniq, key=str)


def status_of(trials: pd.DataFrame) -> pd.Series:
    return trials["status"].astype(str) if "status" in trials.columns else pd.Series("completed", index=trials.index)


def subplot_grid(n: int, per_row: int = 3) -> tuple[int, int]:
    cols = min(per_row, max(n, 1))
    return math.ceil(n / cols), cols
