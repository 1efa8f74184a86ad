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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative
from plotly.subplots import make_subplots

from vrsearch.results.stats import case_values, group_labels

NO_DATA = "no data"
_PALETTE = qualitative.Plotly + qualitative.D3 + qualitative.Dark24


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


def colors(keys) -> dict:
    """A stable colour per key (in order of first appearance)."""
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(dict.fromkeys(keys))}


def _rgba(color: str, alpha: float) -> str:
    r, g, b = hex_to_rgb(color)
    return f"rgba({r},{g},{b},{alpha})"


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame.columns:
        return pd.Series(np.nan, index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _fmt(x) -> str:
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
        return raw.map(lambda v: "None" if v is None or (isinstance(v, float) and math.isnan(v)) else _fmt(v)), True
    return numbers.astype(float), False


def _log_axis(values: pd.Series) -> bool:
    v = values.dropna()
    return len(v) > 1 and bool((v > 0).all()) and v.max() / v.min() >= 50


def _categories(values: pd.Series) -> list[str]:
    """Category labels sorted numerically where they look like numbers, else alphabetically."""
    uniq = list(dict.fromkeys(values))
    nums = pd.to_numeric(pd.Series(uniq, dtype=object), errors="coerce")
    if nums.notna().all():
        return [u for _, u in sorted(zip(nums, uniq))]
    return sorted(uniq, key=str)


def _status(trials: pd.DataFrame) -> pd.Series:
    return trials["status"].astype(str) if "status" in trials.columns else pd.Series("completed", index=trials.index)


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
    df = trials.assign(_value=_numeric(trials, metric), _status=_status(trials))
    if order is not None and order in df.columns:
        df = df.sort_values(order, kind="stable", na_position="last")
    df = df.loc[df["_value"].notna()].reset_index(drop=True)
    if df.empty:
        return no_data(title, f"no trial has {metric}")
    df["_n"] = np.arange(1, len(df) + 1)
    ids = df["trial_id"].astype(str) if "trial_id" in df.columns else df["_n"].astype(str)
    fig = go.Figure()
    for status, part in df.groupby("_status", sort=False):
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
    df = trials.loc[_numeric(trials, metric).notna()]
    dims = []
    for knob in knobs:
        values, categorical = knob_values(df, knob)
        if df.empty or values.isna().all():
            continue
        if categorical:
            cats = _categories(values)
            code = {c: i for i, c in enumerate(cats)}
            dims.append({"label": label(knob), "values": values.map(code).tolist(),
                         "tickvals": list(range(len(cats))), "ticktext": cats, "range": [-0.25, len(cats) - 0.75]})
        else:
            dims.append({"label": label(knob), "values": values.tolist()})
    if not dims:
        return no_data(title, "no searched knob with values")
    value = _numeric(df, metric)
    dims.append({"label": metric, "values": value.tolist()})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={
        "color": value.tolist(), "colorscale": "Viridis", "showscale": True, "colorbar": {"title": {"text": metric}}}))
    fig.update_layout(title=f"{title} (colour: {metric})", height=460, margin={"l": 80, "r": 80, "t": 100})
    return fig


def _grid(n: int, per_row: int = 3) -> tuple[int, int]:
    cols = min(per_row, max(n, 1))
    return math.ceil(n / cols), cols


def slices(trials: pd.DataFrame, knobs: list[str], metric: str) -> go.Figure:
    """``metric`` against each knob, one subplot per knob: the individual trials
    as points and the mean ± std over seeds at every distinct knob value."""
    title = f"Slices: {metric} per knob"
    value = _numeric(trials, metric)
    knobs = [k for k in knobs if not knob_values(trials.loc[value.notna()], k)[0].isna().all()]
    if value.notna().sum() == 0 or not knobs:
        return no_data(title)
    rows, cols = _grid(len(knobs))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[label(k) for k in knobs],
                        horizontal_spacing=0.08, vertical_spacing=0.18)
    for i, knob in enumerate(knobs):
        r, c = i // cols + 1, i % cols + 1
        x, categorical = knob_values(trials, knob)
        df = pd.DataFrame({"x": x, "y": value}).dropna()
        agg = df.groupby("x")["y"].agg(["mean", "std", "count"]).reset_index()
        order = _categories(agg["x"]) if categorical else sorted(agg["x"])
        agg = agg.set_index("x").loc[order].reset_index()
        first = i == 0
        fig.add_trace(go.Scatter(x=df["x"], y=df["y"], mode="markers", name="trials", legendgroup="trials",
                                 showlegend=first, marker={"color": "rgba(90,90,90,0.45)", "size": 7}), row=r, col=c)
        fig.add_trace(go.Scatter(x=agg["x"], y=agg["mean"], mode="lines+markers", name="mean ± std over seeds",
                                 legendgroup="mean", showlegend=first, line={"color": _PALETTE[0]},
                                 error_y={"type": "data", "array": agg["std"].fillna(0).tolist(), "visible": True},
                                 customdata=agg["count"], hovertemplate="%{x}: %{y:.4f} (n=%{customdata})"),
                      row=r, col=c)
        axis = {"type": "category", "categoryorder": "array", "categoryarray": order} if categorical else \
            {"type": "log"} if _log_axis(df["x"]) else {}
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
        return values, _categories(values)
    if values.nunique() <= 8:
        text = values.map(_fmt)
        return text, [_fmt(v) for v in sorted(values.dropna().unique())]
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
    df = pd.DataFrame({"x": x, "y": y, "z": _numeric(trials, metric)}).dropna()
    if knob_x == knob_y or df.empty:
        return no_data(title)
    ids = trials.loc[df.index, "trial_id"].astype(str) if "trial_id" in trials.columns else None
    fig = go.Figure()
    if not xcat and not ycat and df["x"].nunique() > 1 and df["y"].nunique() > 1:
        logx, logy = _log_axis(df["x"]), _log_axis(df["y"])
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
                           hovertext=[k for k, _ in items], texttemplate="%{x:.3f}", marker={"color": _PALETTE[0]}))
    fig.update_layout(title=title, xaxis_title="importance (normalised to sum 1)", yaxis_title="hyperparameter",
                      height=160 + 32 * len(items))
    return fig


def _trial_info(trials: pd.DataFrame) -> pd.DataFrame:
    """trial_id → group, status (indexed by trial_id as str)."""
    if trials.empty or "trial_id" not in trials.columns:
        return pd.DataFrame(columns=["group", "status"])
    return pd.DataFrame({"group": group_labels(trials).to_numpy(), "status": _status(trials).to_numpy()},
                        index=trials["trial_id"].astype(str))


_STATUS_DASH = {"stopped_early": "dash", "failed": "dot", "running": "dashdot"}


def learning_curves(history: pd.DataFrame, trials: pd.DataFrame) -> go.Figure:
    """Validation Dice against iteration, one line per trial (coloured by group).
    Early-stopped trials are dashed, named "… (stopped early)" and get an end
    marker (one extra trace "stopped early"); failed ones dotted, running dash-dot."""
    title = "Learning curves (validation Dice)"
    if history.empty or "val_dice" not in history.columns:
        return no_data(title)
    h = history.loc[_numeric(history, "val_dice").notna()].copy()
    if h.empty:
        return no_data(title)
    h["trial_id"] = h["trial_id"].astype(str)
    info = _trial_info(trials)
    palette = colors(info["group"]) if len(info) else {}
    fig, ends = go.Figure(), []
    for tid, part in h.sort_values("iteration").groupby("trial_id", sort=False):
        group = info["group"].get(tid, "?")
        status = info["status"].get(tid, "")
        suffix = f" ({status.replace('_', ' ')})" if status in _STATUS_DASH else ""
        fig.add_trace(go.Scatter(x=part["iteration"], y=part["val_dice"], mode="lines+markers", name=f"{tid}{suffix}",
                                 legendgroup=group, hovertext=f"{tid} · {group}",
                                 line={"color": palette.get(group), "dash": _STATUS_DASH.get(status, "solid")}))
        if status == "stopped_early":
            ends.append(part.iloc[-1])
    if ends:
        end = pd.DataFrame(ends)
        fig.add_trace(go.Scatter(x=end["iteration"], y=end["val_dice"], mode="markers", name="stopped early",
                                 marker={"symbol": "x", "size": 12, "color": "black"}, hovertext=end["trial_id"]))
    fig.update_layout(title=title, xaxis_title="iteration", yaxis_title="validation Dice", height=460)
    return fig


def loss_terms(history: pd.DataFrame, trials: pd.DataFrame, by: str = "auto") -> go.Figure:
    """``loss`` and every ``term_*`` against iteration, one subplot per term;
    ``by="trial"`` draws a line per trial, ``"group"`` the mean per group, and
    ``"auto"`` per trial up to 12 trials, else per group."""
    title = "Loss terms"
    terms = [c for c in history.columns
             if (c == "loss" or c.startswith("term_")) and _numeric(history, c).notna().any()]
    if history.empty or not terms:
        return no_data(title)
    h = history.copy()
    h["trial_id"] = h["trial_id"].astype(str)
    info = _trial_info(trials)
    h["group"] = h["trial_id"].map(info["group"]).fillna("?") if len(info) else "?"
    if by == "auto":
        by = "trial" if h["trial_id"].nunique() <= 12 else "group"
    key = "trial_id" if by == "trial" else "group"
    palette, group_of = colors(h["group"]), h.groupby("trial_id")["group"].first()
    rows, cols = _grid(len(terms))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=terms, horizontal_spacing=0.07,
                        vertical_spacing=min(0.12, 0.5 / rows))
    for i, term in enumerate(terms):
        r, c = i // cols + 1, i % cols + 1
        part = h.assign(v=_numeric(h, term)).dropna(subset=["v"])
        lines = part.groupby([key, "iteration"], sort=False)["v"].mean().reset_index()
        for name, line in lines.groupby(key, sort=False):
            group = name if by == "group" else group_of[name]
            fig.add_trace(go.Scatter(x=line["iteration"], y=line["v"], mode="lines", name=str(name),
                                     legendgroup=str(name), showlegend=i == 0, line={"color": palette[group]}),
                          row=r, col=c)
        fig.update_xaxes(title_text="iteration", row=r, col=c)
        fig.update_yaxes(title_text=term, row=r, col=c)
    suffix = "per trial" if by == "trial" else "mean per group"
    fig.update_layout(title=f"{title} ({suffix})", height=260 * rows + 100)
    return fig


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
    z = 100 * np.column_stack([_numeric(table_frame, f"dice/{c}").to_numpy() for c in classes])
    text = [["–" if math.isnan(v) else f"{v:.1f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=classes, y=groups, text=text, texttemplate="%{text}", zmin=0, zmax=100,
                               colorscale="Viridis", colorbar={"title": {"text": "Dice (%)"}}))
    fig.update_xaxes(title_text="class (organ)", type="category", tickmode="array", tickvals=classes,
                     ticktext=classes, tickangle=-45)
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
        fig.add_trace(go.Box(y=part["dice"], name=str(g), boxpoints="all", jitter=0.4, pointpos=0,
                             marker={"color": palette[g], "size": 5},
                             hovertext=part["case_id"].astype(str) + " · seed " + part["seed"].astype(str)))
    fig.update_layout(title=title, xaxis_title="group", yaxis_title="Dice per case", showlegend=False, height=460)
    return fig


SAMPLER = "config.method.params.sampler"


def sampler_panel(history: pd.DataFrame, trials: pd.DataFrame, term: str = "term_contrast") -> go.Figure:
    """Per sampler (``method.params.sampler``): ``term`` over iterations as the
    mean ± std band over seeds, and its spread — the logged ``<term>_spread``
    averaged over seeds when present, else the std over seeds."""
    title = f"Sampler comparison: {term}"
    if history.empty or term not in history.columns or SAMPLER not in trials.columns or trials.empty:
        return no_data(title)
    sampler = pd.Series(trials[SAMPLER].astype(str).to_numpy(), index=trials["trial_id"].astype(str))
    spread_col = f"{term}_spread"
    h = history.assign(sampler=history["trial_id"].astype(str).map(sampler), v=_numeric(history, term),
                       s=_numeric(history, spread_col)).dropna(subset=["sampler", "v"])
    if h.empty:
        return no_data(title)
    has_spread = spread_col in history.columns and h["s"].notna().any()
    spread_name = f"{spread_col} (mean over seeds)" if has_spread else "std over seeds"
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{term}: mean ± std over seeds", f"spread: {spread_name}"])
    palette = colors(sorted(h["sampler"].unique()))
    for name in palette:
        g = h.loc[h["sampler"] == name].groupby("iteration").agg(mean=("v", "mean"), std=("v", "std"),
                                                                 spread=("s", "mean")).reset_index()
        std = g["std"].fillna(0)
        color = palette[name]
        fig.add_trace(go.Scatter(x=g["iteration"], y=g["mean"] + std, mode="lines", line={"width": 0},
                                 showlegend=False, hoverinfo="skip", legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["iteration"], y=g["mean"] - std, mode="lines", line={"width": 0},
                                 fill="tonexty", fillcolor=_rgba(color, 0.2), showlegend=False, hoverinfo="skip",
                                 legendgroup=name), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["iteration"], y=g["mean"], mode="lines", name=name, legendgroup=name,
                                 line={"color": color}), row=1, col=1)
        fig.add_trace(go.Scatter(x=g["iteration"], y=g["spread"] if has_spread else g["std"], mode="lines",
                                 name=name, legendgroup=name, showlegend=False, line={"color": color}), row=1, col=2)
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text=term, row=1, col=1)
    fig.update_yaxes(title_text="spread", row=1, col=2)
    fig.update_layout(title=title, height=440, legend_title_text="sampler")
    return fig
