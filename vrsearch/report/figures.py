"""Figures of a run's results.

The search figures are Optuna's (:mod:`optuna.visualization`) on an Optuna study of the
run (:mod:`vrsearch.report.studies`: the stored study of a search design, or one built
from the trials): :func:`optimisation_history`, :func:`parallel_coordinates`,
:func:`contour` and :func:`importance` add a title, a "no data" figure for an empty
study and the trial ids in the hover text. :func:`slices` is drawn here because
Optuna's slice plot has no seed aggregate: it takes the ``trials`` frame of
:func:`vrsearch.results.io.load` and draws the mean ± std over seeds at every knob value.
Every function returns a :class:`plotly.graph_objects.Figure` with a title and titled
axes, so it can be shown in a notebook or embedded in the HTML report. Empty inputs give
a figure that says "no data" instead of raising.

Knobs are dotted config keys (``method.params.k``); their values come from the
``config.<knob>`` columns of ``trials``. A knob is *categorical* when its values are
strings or booleans; such knobs are drawn on category axes.

Protocol rule: nothing here ranks or selects by a test metric — a study built from
trials refuses metrics named ``test*`` (:func:`~vrsearch.report.studies.trials_study`).

The per-run figures (learning curves, loss terms, per-class heatmap, per-case boxes,
sampler panel) live in :mod:`vrsearch.report.run_figures` and
:mod:`vrsearch.report.trial_curves` and are re-exported here, so
``figures.<name>`` reaches every figure.
"""

from __future__ import annotations

import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.visualization import (
    plot_contour,
    plot_optimization_history,
    plot_parallel_coordinate,
    plot_param_importances,
)
from plotly.subplots import make_subplots

from vrsearch.report.plotting import (
    NO_DATA,
    PALETTE,
    categories,
    knob_values,
    label,
    log_axis,
    no_data,
    numeric,
    subplot_grid,
)
from vrsearch.report.run_figures import SAMPLER, case_boxes, class_heatmap, sampler_panel
from vrsearch.report.studies import EVALUATOR, completed, quiet, varying
from vrsearch.report.trial_curves import learning_curves, loss_terms, term_descriptions

__all__ = [
    "NO_DATA",
    "SAMPLER",
    "case_boxes",
    "class_heatmap",
    "contour",
    "importance",
    "knob_values",
    "learning_curves",
    "loss_terms",
    "no_data",
    "optimisation_history",
    "parallel_coordinates",
    "sampler_panel",
    "slices",
    "term_descriptions",
]


def _hover(trial: optuna.trial.FrozenTrial) -> str:
    """A trial's hover text: its vrsearch trial id and status (studies built from trials),
    else its Optuna number."""
    tid, status = trial.user_attrs.get("trial_id"), trial.user_attrs.get("status")
    if not tid:
        return f"Optuna trial {trial.number}"
    return f"{tid} ({status.replace('_', ' ')})" if status and status != "completed" else str(tid)


def optimisation_history(study: optuna.Study | None, target_name: str = "objective") -> go.Figure:
    """Optuna's optimisation history: each completed trial's value against its trial
    number, and the best value so far in the study's direction."""
    title = "Optimisation history"
    done = completed(study)
    if study is None or not done:
        return no_data(title, "no completed trial")
    with quiet():
        fig = plot_optimization_history(study, target_name=target_name)
    fig.data[0].hovertext = [_hover(t) for t in done]  # the completed trials, in number order
    fig.update_layout(title=f"{title} ({target_name})", xaxis_title="trial (Optuna number)", height=420)
    return fig


def parallel_coordinates(
    study: optuna.Study | None, target_name: str = "objective", params: list[str] | None = None
) -> go.Figure:
    """Optuna's parallel coordinates: one line per completed trial across the objective
    axis and the parameter axes (``params``, default all), coloured by the objective."""
    title = "Parallel coordinates"
    done = completed(study)
    names = {k for t in done for k in t.params}
    params = [p for p in params if p in names] if params is not None else sorted(names)
    if study is None or not done or not params:
        return no_data(title, "no searched knob with values")
    with quiet():
        fig = plot_parallel_coordinate(study, params=params, target_name=target_name)
    fig.update_layout(
        title={"text": f"{title} (colour: {target_name})"}, height=460, margin={"l": 80, "r": 80, "t": 100}
    )
    return fig


def contour(study: optuna.Study | None, x: str, y: str, target_name: str = "objective") -> go.Figure:
    """Optuna's contour of the objective over two parameters that vary (each grid point
    takes the best completed trial there; Optuna interpolates between them), trials as
    points; Optuna puts the parameters in alphabetical order (x first)."""
    title = f"{target_name} over {x} × {y}"
    if study is None or x == y or not {x, y} <= set(varying(study)):
        return no_data(title, "two parameters with at least two values each are needed")
    with quiet():
        fig = plot_contour(study, params=[x, y], target_name=target_name)
    fig.update_layout(title=title, height=480)
    return fig


def importance(study: optuna.Study | None, target_name: str = "objective") -> go.Figure:
    """Optuna's hyperparameter importances (PED-ANOVA) of the varying parameters as bars."""
    title = f"Hyperparameter importance ({EVALUATOR})"
    params = varying(study) if study is not None else []
    if study is None or len(completed(study)) < 2 or not params:
        return no_data(title)
    with quiet():
        fig = plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), params=params, target_name=target_name
        )
    fig.update_layout(
        title=title,
        xaxis_title="importance (normalised to sum 1)",
        yaxis_title="hyperparameter",
        height=160 + 32 * len(params),
    )
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
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=[label(k) for k in knobs], horizontal_spacing=0.08, vertical_spacing=0.18
    )
    for i, knob in enumerate(knobs):
        r, c = i // cols + 1, i % cols + 1
        x, categorical = knob_values(trials, knob)
        df = pd.DataFrame({"x": x, "y": value}).dropna()
        agg = df.groupby("x")["y"].agg(["mean", "std", "count"]).reset_index()
        order = categories(agg["x"]) if categorical else sorted(agg["x"])
        agg = agg.set_index("x").loc[order].reset_index()
        first = i == 0
        fig.add_trace(
            go.Scatter(
                x=df["x"],
                y=df["y"],
                mode="markers",
                name="trials",
                legendgroup="trials",
                showlegend=first,
                marker={"color": "rgba(90,90,90,0.45)", "size": 7},
            ),
            row=r,
            col=c,
        )
        fig.add_trace(
            go.Scatter(
                x=agg["x"],
                y=agg["mean"],
                mode="lines+markers",
                name="mean ± std over seeds",
                legendgroup="mean",
                showlegend=first,
                line={"color": PALETTE[0]},
                error_y={"type": "data", "array": agg["std"].fillna(0).tolist(), "visible": True},
                customdata=agg["count"],
                hovertemplate="%{x}: %{y:.4f} (n=%{customdata})",
            ),
            row=r,
            col=c,
        )
        axis = (
            {"type": "category", "categoryorder": "array", "categoryarray": order}
            if categorical
            else {"type": "log"}
            if log_axis(df["x"])
            else {}
        )
        fig.update_xaxes(title_text=label(knob), row=r, col=c, **axis)
        fig.update_yaxes(title_text=metric, row=r, col=c)
    fig.update_layout(title=title, height=330 * rows + 80)
    return fig
