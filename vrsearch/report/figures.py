"""Figures of a run's results: pure functions ``DataFrame(s) -> go.Figure``.

Every function takes the frames of :func:`vrsearch.results.io.load` (or the
``frame`` of an ablation table), never reads files, and returns a
:class:`plotly.graph_objects.Figure` with a title and titled axes, so it can be
shown in a notebook or embedded in the HTML report. Empty inputs give a figure
that says "no data" instead of raising.

Knobs are dotted config keys (``method.params.k``); their values come from
the ``config.<knob>`` columns of ``trials``. A knob is *categorical* when its
values are strings or booleans; such knobs are drawn on category axes (or as
integer ticks labelled with the values in parallel coordinates).

Protocol rule: nothing here ranks or selects by a test metric — the "best so
far" line of :func:`optimisation_history` refuses metrics named ``test*``.

The search figures (history, parallel coordinates, slices, contour,
importance) live here; the per-run figures (learning curves, loss terms,
per-class heatmap, per-case boxes, sampler panel) in
:mod:`vrsearch.report.run_figures` and are re-exported here, so
``figures.<name>`` reaches every figure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vrsearch.report.plotting import (
    NO_DATA, PALETTE, categories, fmt, knob_values, label, log_axis, no_data, numeric, status_of, subplot_grid,
)
from vrsearch.report.run_figures import (
    SAMPLER, case_boxes, class_heatmap, learning_curves, loss_terms, sampler_panel, term_descriptions,
)

__all__ = [
    "NO_DATA", "SAMPLER", "case_boxes", "class_heatmap", "contour", "importance", "knob_values",
    "learning_curves", "loss_terms", "no_data", "optimisation_history", "parallel_coordinates",
    "sampler_panel", "slices", "term_descriptions",
]


def optimisation_history(trials: pd.DataFrame, metric: str = "best_val_dice", mode: str = "max",
                         order: str | None = None) -> go.Figure:
    """Per trial (row order, or sorted by the column ``order``) its ``metric`` as a
    point (one trace per status) and the best-so-far line (``mode`` max or min).
    ``metric`` must be a validation metric (a running best is a selection)."""
    if str(metric).lower().startswith("test"):
        raise ValueError(f"optimisation history ranks trials: use a validation metric, not {metric!r}")
    title = "Optimisation history"
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    df = trials.assign(_value=numeric(trials, metric), status_of=status_of(trials))
    if order is not None and order in df.columns:
        df = df.sort_values(order, kind="stable", na_position="last")
    df = df.loc[df["_value"].notna()].reset_index(drop=True)
    if df.empty:
        return no_data(title, f"no trial has {metric}")
    df["_n"] = np.arange(1, len(df) + 1)
    ids = df["trial_id"].astype(str) if "trial_id" in df.columns else df["_n"].astype(str)
    fig = go.Figure()
    for status, part in df.groupby("status_of", sort=False):
        fig.add_trace(go.Scatter(x=part["_n"], y=part["_value"], mode="markers", name=str(status),
                                 hovertext=ids[part.index], marker={"size": 9}))
    best = df["_value"].cummax() if mode == "max" else df["_value"].cummin()
    fig.add_trace(go.Scatter(x=df["_n"], y=best, mode="lines", name=f"best so far ({mode})",
                             line={"shape": "hv", "color": "black"}))
    fig.update_layout(title=title, xaxis_title="trial (in order)", yaxis_title=metric, height=420)
    return fig


def parallel_coordinates(trials: pd.DataFrame, knobs: list[str], metric: str) -> go.Figure:
    """One line per trial with a ``metric`` value across the knob axes and the
    metric axis, coloured by the metric (categorical knobs on integer ticks)."""
    title = "Parallel coordinates"
    df = trials.loc[numeric(trials, metric).notna()]
    dims = []
    for knob in knobs:
        values, categorical = knob_values(df, knob)
        if df.empty or values.isna().all():
            continue
        if categorical:
            cats = categories(values)
            code = {c: i for i, c in enumerate(cats)}
            dims.append({"label": label(knob), "values": values.map(code).tolist(),
                         "tickvals": list(range(len(cats))), "ticktext": cats, "range": [-0.25, len(cats) - 0.75]})
        else:
            dims.append({"label": label(knob), "values": values.tolist()})
    if not dims:
        return no_data(title, "no searched knob with values")
    value = numeric(df, metric)
    dims.append({"label": metric, "values": value.tolist()})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={
        "color": value.tolist(), "colorscale": "Viridis", "showscale": True, "colorbar": {"title": {"text": metric}}}))
    fig.update_layout(title=f"{title} (colour: {metric})", height=460, margin={"l": 80, "r": 80, "t": 100})
    return fig



def slices(trials: pd.DataFrame, knobs: list[str], metric: str) -> go.Figure:
    """``metric`` against each knob, one subplot per knob: the individual trials
    as points and the mean ± std over seeds at every distinct knob value."""
    title = f"Slices: {metric} per knob"
    value = numeric(trials, metric)
    knobs = [k for k in knobs if not knob_values(trials.loc[value.notna()], k)[0].isna().all()]
    if value.notna().sum() == 0 or not knobs:
        return no_data(title)
    rows, cols = subplot_grid(len(knobs))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[label(k) for k in knobs],
                        horizontal_spacing=0.08, vertical_spacing=0.18)
    for i, knob in enumerate(knobs):
        r, c = i // cols + 1, i % cols + 1
        x, categorical = knob_values(trials, knob)
        df = pd.DataFrame({"x": x, "y": value}).dropna()
        agg = df.groupby("x")["y"].agg(["mean", "std", "count"]).reset_index()
        order = categories(agg["x"]) if categorical else sorted(agg["x"])
        agg = agg.set_index("x").loc[order].reset_index()
        first = i == 0
        fig.add_trace(go.Scatter(x=df["x"], y=df["y"], mode="markers", name="trials", legendgroup="trials",
                                 showlegend=first, marker={"color": "rgba(90,90,90,0.45)", "size": 7}), row=r, col=c)
        fig.add_trace(go.Scatter(x=agg["x"], y=agg["mean"], mode="lines+markers", name="mean ± std over seeds",
                                 legendgroup="mean", showlegend=first, line={"color": PALETTE[0]},
                                 error_y={"type": "data", "array": agg["std"].fillna(0).tolist(), "visible": True},
                                 customdata=agg["count"], hovertemplate="%{x}: %{y:.4f} (n=%{customdata})"),
                      row=r, col=c)
        axis = {"type": "category", "categoryorder": "array", "categoryarray": order} if categorical else \
            {"type": "log"} if log_axis(df["x"]) else {}
        fig.update_xaxes(title_text=label(knob), row=r, col=c, **axis)
        fig.update_yaxes(title_text=metric, row=r, col=c)
    fig.update_layout(title=title, height=330 * rows + 80)
    return fig


def _idw(x: np.ndarray, y: np.ndarray, z: np.ndarray, n: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse-distance-weighted interpolation on an n×n grid of the points' box (unit-scaled)."""
    gx, gy = np.linspace(x.min(), x.max(), n), np.linspace(y.min(), y.max(), n)
    sx, sy = np.ptp(x) or 1.0, np.ptp(y) or 1.0
    dx = (gx[None, :, None] - x[None, None, :]) / sx
    dy = (gy[:, None, None] - y[None, None, :]) / sy
    w = 1.0 / np.maximum(dx ** 2 + dy ** 2, 1e-12)
    return gx, gy, (w * z).sum(axis=2) / w.sum(axis=2)


def _levels(values: pd.Series, categorical: bool) -> tuple[pd.Series, list[str]]:
    """Values as category labels: categories, ≤ 8 distinct numbers, or ≤ 5 quantile bins."""
    if categorical:
        return values, categories(values)
    if values.nunique() <= 8:
        text = values.map(fmt)
        return text, [fmt(v) for v in sorted(values.dropna().unique())]
    bins = pd.qcut(values, q=min(5, values.nunique()), duplicates="drop")
    text = bins.map(lambda b: f"{b.left:.3g}–{b.right:.3g}").astype(str)
    return text, [f"{b.left:.3g}–{b.right:.3g}" for b in bins.cat.categories]


def contour(trials: pd.DataFrame, knob_x: str, knob_y: str, metric: str) -> go.Figure:
    """``metric`` over two knobs: the trials as points on an inverse-distance
    interpolated contour (two numeric knobs with ≥ 2 distinct values each), else
    a heatmap of the mean per cell (categorical or binned knobs)."""
    title = f"{metric} over {label(knob_x)} × {label(knob_y)}"
    x, xcat = knob_values(trials, knob_x)
    y, ycat = knob_values(trials, knob_y)
    df = pd.DataFrame({"x": x, "y": y, "z": numeric(trials, metric)}).dropna()
    if knob_x == knob_y or df.empty:
        return no_data(title)
    ids = trials.loc[df.index, "trial_id"].astype(str) if "trial_id" in trials.columns else None
    fig = go.Figure()
    if not xcat and not ycat and df["x"].nunique() > 1 and df["y"].nunique() > 1:
        logx, logy = log_axis(df["x"]), log_axis(df["y"])
        px = np.log10(df["x"].to_numpy()) if logx else df["x"].to_numpy()
        py = np.log10(df["y"].to_numpy()) if logy else df["y"].to_numpy()
        gx, gy, gz = _idw(px, py, df["z"].to_numpy())
        fig.add_trace(go.Contour(x=10 ** gx if logx else gx, y=10 ** gy if logy else gy, z=gz, colorscale="Viridis",
                                 colorbar={"title": {"text": metric}}, name="interpolated", opacity=0.85))
        fig.update_xaxes(type="log" if logx else "linear")
        fig.update_yaxes(type="log" if logy else "linear")
        px_, py_ = df["x"], df["y"]
    else:
        lx, xs = _levels(df["x"], xcat)
        ly, ys = _levels(df["y"], ycat)
        mean = pd.DataFrame({"x": lx, "y": ly, "z": df["z"]}).groupby(["y", "x"])["z"].mean().unstack("x")
        mean = mean.reindex(index=ys, columns=xs)
        fig.add_trace(go.Heatmap(x=xs, y=ys, z=mean.to_numpy(), colorscale="Viridis", name="mean per cell",
                                 colorbar={"title": {"text": metric}}, texttemplate="%{z:.3f}"))
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=xs)
        fig.update_yaxes(type="category", categoryorder="array", categoryarray=ys)
        px_, py_ = lx, ly
    fig.add_trace(go.Scatter(x=px_, y=py_, mode="markers", name="trials", hovertext=ids,
                             marker={"color": df["z"], "colorscale": "Viridis", "size": 10,
                                     "line": {"color": "white", "width": 1.5}}))
    fig.update_layout(title=title, xaxis_title=label(knob_x), yaxis_title=label(knob_y), height=480, showlegend=False)
    return fig


def importance(importances: dict[str, float], evaluator_name: str) -> go.Figure:
    """Horizontal bars of hyperparameter importances (largest on top)."""
    title = f"Hyperparameter importance ({evaluator_name})"
    if not importances:
        return no_data(title)
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[label(k) for k, _ in items], orientation="h",
                           hovertext=[k for k, _ in items], texttemplate="%{x:.3f}", marker={"color": PALETTE[0]}))
    fig.update_layout(title=title, xaxis_title="importance (normalised to sum 1)", yaxis_title="hyperparameter",
                      height=160 + 32 * len(items))
    return fig
