"""Figures and a self-contained HTML report of a run directory.

:mod:`vrsearch.report.figures` holds pure ``DataFrame -> plotly Figure``
functions (usable from notebooks); :mod:`vrsearch.report.html` assembles them
into one offline HTML file (``vrsearch report RUN_DIR``).
"""

from vrsearch.report.figures import (
    case_boxes,
    class_heatmap,
    contour,
    importance,
    learning_curves,
    loss_terms,
    optimisation_history,
    parallel_coordinates,
    sampler_panel,
    slices,
    term_descriptions,
)
from vrsearch.report.importance import param_importances, trial_importances

__all__ = [
    "case_boxes",
    "class_heatmap",
    "contour",
    "importance",
    "learning_curves",
    "loss_terms",
    "optimisation_history",
    "parallel_coordinates",
    "param_importances",
    "sampler_panel",
    "slices",
    "term_descriptions",
    "trial_importances",
]
