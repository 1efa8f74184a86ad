"""Per-trial curves against iteration: validation Dice (learning curves) and the
loss terms, each titled with the method's description of the term. Pure functions
of the frames of :func:`vrsearch.results.io.load`, re-exported by
:mod:`vrsearch.report.figures`."""

from __future__ import annotations

import textwrap

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vrsearch.report.plotting import colors, no_data, numeric, status_of, subplot_grid
from vrsearch.results.names import trial_names
from vrsearch.results.stats import group_labels


def _trial_info(trials: pd.DataFrame) -> pd.DataFrame:
    """trial_id → group, display name (:func:`trial_names`), status (indexed by trial_id as str)."""
    if trials.empty or "trial_id" not in trials.columns:
        return pd.DataFrame(columns=["group", "name", "status"])
    return pd.DataFrame(
        {
            "group": group_labels(trials).to_numpy(),
            "name": trial_names(trials).to_numpy(),
            "status": status_of(trials).to_numpy(),
        },
        index=trials["trial_id"].astype(str),
    )


_STATUS_DASH = {"stopped_early": "dash", "failed": "dot", "running": "dashdot"}


def learning_curves(history: pd.DataFrame, trials: pd.DataFrame) -> go.Figure:
    """Validation Dice against iteration, one line per trial, named by group (and seed;
    :func:`~vrsearch.results.names.trial_names`) and coloured by group; the trial id
    is in the hover text. Early-stopped trials are dashed, named "… (stopped early)"
    and get an end marker (one extra trace "stopped early"); failed ones dotted,
    running dash-dot."""
    title = "Learning curves (validation Dice)"
    if history.empty or "val_dice" not in history.columns:
        return no_data(title)
    h = history.loc[numeric(history, "val_dice").notna()].copy()
    if h.empty:
        return no_data(title)
    h["trial_id"] = h["trial_id"].astype(str)
    info = _trial_info(trials)
    palette = colors(info["group"]) if len(info) else {}
    fig, ends = go.Figure(), []
    for tid, part in h.sort_values("iteration").groupby("trial_id", sort=False):
        group, name = info["group"].get(tid, "?"), info["name"].get(tid, tid)
        status = info["status"].get(tid, "")
        suffix = f" ({status.replace('_', ' ')})" if status in _STATUS_DASH else ""
        fig.add_trace(
            go.Scatter(
                x=part["iteration"],
                y=part["val_dice"],
                mode="lines+markers",
                name=f"{name}{suffix}",
                legendgroup=group,
                hovertext=f"{name} · trial {tid}",
                line={"color": palette.get(group), "dash": _STATUS_DASH.get(status, "solid")},
            )
        )
        if status == "stopped_early":
            ends.append(part.iloc[-1])
    if ends:
        end = pd.DataFrame(ends)
        fig.add_trace(
            go.Scatter(
                x=end["iteration"],
                y=end["val_dice"],
                mode="markers",
                name="stopped early",
                marker={"symbol": "x", "size": 12, "color": "black"},
                hovertext=end["trial_id"].map(info["name"]).fillna(end["trial_id"]),
            )
        )
    fig.update_layout(title=title, xaxis_title="iteration", yaxis_title="validation Dice", height=460)
    return fig


def term_descriptions(trials: pd.DataFrame) -> dict[str, str]:
    """``{"loss" | "term_<name>": description}`` from the registrations of the run's
    methods (``MethodSpec.terms``); a term two methods describe differently gets both,
    each prefixed by its method. Unknown methods contribute nothing."""
    from vrsearch.errors import VrsearchError
    from vrsearch.methods import get_method

    found: dict[str, dict[str, str]] = {}
    methods = pd.unique(trials["method"].dropna().astype(str)) if "method" in trials.columns else []
    for method in methods:
        try:
            terms = get_method(method).terms
        except VrsearchError:
            continue
        for term, text in terms.items():
            found.setdefault(term if term == "loss" else f"term_{term}", {})[method] = text
    return {
        term: next(iter(texts.values()))
        if len(set(texts.values())) == 1
        else " | ".join(f"{m}: {t}" for m, t in texts.items())
        for term, texts in found.items()
    }


def _panel_title(term: str, description: str | None, width: int = 42) -> str:
    """A subplot title: the term, and its description wrapped in smaller type."""
    if not description:
        return term
    safe = description.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    lines = textwrap.wrap(safe, width, break_long_words=False)
    return f'{term}<br><span style="font-size:11px">{"<br>".join(lines)}</span>'


def loss_terms(
    history: pd.DataFrame, trials: pd.DataFrame, by: str = "auto", descriptions: dict[str, str] | None = None
) -> go.Figure:
    """``loss`` and every ``term_*`` against iteration, one subplot per term, titled
    with the term's description when ``descriptions`` (e.g. :func:`term_descriptions`)
    has one; ``by="trial"`` draws a line per trial (named by group and seed),
    ``"group"`` the mean per group, and ``"auto"`` per trial up to 12 trials, else
    per group."""
    title = "Loss terms"
    terms = [c for c in history.columns if (c == "loss" or c.startswith("term_")) and numeric(history, c).notna().any()]
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
    name_of = info["name"] if len(info) else pd.Series(dtype=object)
    descriptions = descriptions or {}
    rows, cols = subplot_grid(len(terms))
    if any(descriptions.get(t) for t in terms):  # room for up to ~4 lines of title above every panel
        height, top, spacing = 380 * rows + 150, 200, 150 / (380 * rows + 150 - 200 - 80)
    else:
        height, top, spacing = 260 * rows + 100, None, min(0.12, 0.5 / rows)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[_panel_title(t, descriptions.get(t)) for t in terms],
        horizontal_spacing=0.07,
        vertical_spacing=spacing,
    )
    for i, term in enumerate(terms):
        r, c = i // cols + 1, i % cols + 1
        part = h.assign(v=numeric(h, term)).dropna(subset=["v"])
        lines = part.groupby([key, "iteration"], sort=False)["v"].mean().reset_index()
        for name, line in lines.groupby(key, sort=False):
            group = name if by == "group" else group_of[name]
            label = str(name) if by == "group" else str(name_of.get(name, name))
            fig.add_trace(
                go.Scatter(
                    x=line["iteration"],
                    y=line["v"],
                    mode="lines",
                    name=label,
                    legendgroup=str(name),
                    showlegend=i == 0,
                    line={"color": palette[group]},
                ),
                row=r,
                col=c,
            )
        fig.update_xaxes(title_text="iteration", row=r, col=c)
        fig.update_yaxes(title_text=term, row=r, col=c)
    suffix = "per trial" if by == "trial" else "mean per group"
    fig.update_layout(title=f"{title} ({suffix})", height=height, margin={"t": top} if top else None)
    return fig
