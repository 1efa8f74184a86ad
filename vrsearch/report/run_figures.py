"""Per-run figures by group: per-class Dice heatmap, per-case Dice boxes and the
sampler panel (ARCO Fig. 5 style); the per-trial curves (learning curves, loss
terms) are :mod:`vrsearch.report.trial_curves`. Pure functions of the frames of
:func:`vrsearch.results.io.load` (or an ablation table's ``frame``), as in
:mod:`vrsearch.report.figures`, which re-exports them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vrsearch.report.plotting import colors, no_data, numeric, rgba
from vrsearch.results.stats import case_values


def class_heatmap(table_frame: pd.DataFrame, classes: list[str] | None = None) -> go.Figure:
    """Dice (%) per group (rows) × class (columns, every class labelled), values
    annotated; ``classes`` default to the frame's ``dice/<class>`` columns."""
    title = "Per-class Dice (%) per group"
    if classes is None:
        classes = [c.split("/", 1)[1] for c in table_frame.columns if c.startswith("dice/")]
    classes = [c for c in classes if f"dice/{c}" in table_frame.columns]
    if table_frame.empty or not classes:
        return no_data(title)
    groups = table_frame["group"].astype(str).tolist()
    z = 100 * np.column_stack([numeric(table_frame, f"dice/{c}").to_numpy() for c in classes])
    text = [["–" if math.isnan(v) else f"{v:.1f}" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=classes,
            y=groups,
            text=text,
            texttemplate="%{text}",
            zmin=0,
            zmax=100,
            colorscale="Viridis",
            colorbar={"title": {"text": "Dice (%)"}},
        )
    )
    fig.update_xaxes(
        title_text="class (organ)", type="category", tickmode="array", tickvals=classes, ticktext=classes, tickangle=-45
    )
    fig.update_yaxes(title_text="group", type="category", autorange="reversed")
    fig.update_layout(title=title, height=220 + 34 * len(groups))
    return fig


def case_boxes(trials: pd.DataFrame, cases: pd.DataFrame, split: str = "test") -> go.Figure:
    """Per group a box with every point of per-case Dice (mean over the case's
    classes; one point per (seed, case)) of the completed trials."""
    title = f"Per-case Dice ({split}, mean over classes)"
    if trials.empty or cases.empty:
        return no_data(title)
    values = case_values(trials, cases, split, "dice").dropna(subset=["dice"])
    if values.empty:
        return no_data(title)
    groups = list(pd.unique(values["group"]))
    if "baseline" in groups:
        groups = ["baseline"] + [g for g in groups if g != "baseline"]
    palette = colors(groups)
    fig = go.Figure()
    for g in groups:
        part = values.loc[values["group"] == g]
        fig.add_trace(
            go.Box(
                y=part["dice"],
                name=str(g),
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": palette[g], "size": 5},
                hovertext=part["case_id"].astype(str) + " · seed " + part["seed"].astype(str),
            )
        )
    fig.update_layout(title=title, xaxis_title="group", yaxis_title="Dice per case", showlegend=False, height=460)
    return fig


SAMPLER = "config.method.params.sampler"


def _band(x: pd.Series, mean: pd.Series, std: pd.Series, name: str, color: str) -> list[go.Scatter]:
    """A line at ``mean`` in a filled band mean ± std (one legend entry, ``name``)."""
    edge = {"mode": "lines", "line": {"width": 0}, "showlegend": False, "hoverinfo": "skip", "legendgroup": name}
    return [
        go.Scatter(x=x, y=mean + std, **edge),
        go.Scatter(x=x, y=mean - std, fill="tonexty", fillcolor=rgba(color, 0.2), **edge),
        go.Scatter(x=x, y=mean, mode="lines", name=name, legendgroup=name, line={"color": color}),
    ]


def sampler_panel(history: pd.DataFrame, trials: pd.DataFrame, term: str = "term_contrast") -> go.Figure:
    """Per sampler (``method.params.sampler``): ``term`` over iterations as the
    mean ± std band over seeds, and its spread — the logged ``<term>_spread``
    averaged over seeds when present, else the std over seeds."""
    title = f"Sampler comparison: {term}"
    if history.empty or term not in history.columns or SAMPLER not in trials.columns or trials.empty:
        return no_data(title)
    sampler = pd.Series(trials[SAMPLER].astype(str).to_numpy(), index=trials["trial_id"].astype(str))
    spread_col = f"{term}_spread"
    h = history.assign(
        sampler=history["trial_id"].astype(str).map(sampler), v=numeric(history, term), s=numeric(history, spread_col)
    ).dropna(subset=["sampler", "v"])
    if h.empty:
        return no_data(title)
    has_spread = spread_col in history.columns and h["s"].notna().any()
    spread_name = f"{spread_col} (mean over seeds)" if has_spread else "std over seeds"
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{term}: mean ± std over seeds", f"spread: {spread_name}"])
    palette = colors(sorted(h["sampler"].unique()))
    for name in palette:
        g = (
            h.loc[h["sampler"] == name]
            .groupby("iteration")
            .agg(mean=("v", "mean"), std=("v", "std"), spread=("s", "mean"))
            .reset_index()
        )
        for trace in _band(g["iteration"], g["mean"], g["std"].fillna(0), str(name), palette[name]):
            fig.add_trace(trace, row=1, col=1)
        fig.add_trace(
            go.Scatter(
                x=g["iteration"],
                y=g["spread"] if has_spread else g["std"],
                mode="lines",
                name=name,
                legendgroup=name,
                showlegend=False,
                line={"color": palette[name]},
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text=term, row=1, col=1)
    fig.update_yaxes(title_text="spread", row=1, col=2)
    fig.update_layout(title=title, height=440, legend_title_text="sampler")
    return fig
