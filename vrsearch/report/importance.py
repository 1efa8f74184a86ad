"""Hyperparameter importance for the report and notebooks: Optuna's PED-ANOVA evaluator
(:func:`vrsearch.report.studies.evaluate`) on a run's stored Optuna study, or on an
in-memory study rebuilt from the trials of a grid/random design."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vrsearch.report.studies import evaluate, stored_study, trials_study


def param_importances(run_dir_or_storage: Path | str, study_name: str) -> tuple[dict[str, float], str]:
    """Importances of the Optuna study ``study_name`` stored in a run dir's ``optuna.db``
    (or at a storage URL / SQLite file): ``(importances, evaluator name)``, or ``({},
    reason)`` when the storage or study is missing or has fewer than 2 completed trials or
    no varying parameter. Parameters carry their short labels (``method.params.k`` → ``k``)."""
    study, reason = stored_study(run_dir_or_storage, study_name)
    return evaluate(study) if study is not None else ({}, reason)


def trial_importances(
    trials: pd.DataFrame,
    knobs: list[str],
    metric: str = "best_val_dice",
    mode: str = "max",
    space: dict[str, Any] | None = None,
) -> tuple[dict[str, float], str]:
    """Like :func:`param_importances` for a run without Optuna storage (grid or random
    designs): an in-memory Optuna study built from the trials with a ``metric`` value
    (:func:`~vrsearch.report.studies.trials_study`)."""
    return evaluate(trials_study(trials, knobs, metric, mode, space))
