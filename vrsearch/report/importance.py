"""Hyperparameter importance for the report and notebooks: Optuna's
PED-ANOVA evaluator on a run's stored Optuna study (``optuna.db``), or on an
in-memory study rebuilt from the trials of a grid/random design. PED-ANOVA is
used rather than fANOVA because it needs no scikit-learn and is deterministic;
the report names the evaluator next to the chart.
"""

from __future__ import annotations

import pandas as pd

from vrsearch.report.plotting import categories, knob_values, numeric

def _evaluate(study) -> tuple[dict[str, float], str]:
    """Importances of an Optuna study by PED-ANOVA (Optuna's default-free, dependency-free
    evaluator: how differently each parameter is distributed among the top trials
    than among all). ``({}, reason)`` when there is nothing to evaluate."""
    import warnings

    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    if len(study.directions) > 1:
        return {}, "multi-objective study: importance needs a single objective"
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}, f"{len(done)} completed trial(s): importance needs at least 2"
    varying = {k for k in {k for t in done for k in t.params}
               if len({repr(t.params.get(k)) for t in done}) > 1}
    if not varying:
        return {}, "no parameter varies across the completed trials"
    evaluator, name = PedAnovaImportanceEvaluator(), "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # noqa: BLE001 - optuna raises various errors on degenerate studies
        return {}, f"{name} failed: {exc}"
    return {str(k): float(v) for k, v in result.items()}, f"{name} on {len(done)} completed trials"


def _quiet_optuna():
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return previous


def param_importances(run_dir_or_storage, study_name: str) -> tuple[dict[str, float], str]:
    """Importances of the Optuna study ``study_name`` stored in a run dir's
    ``optuna.db`` (or at a storage URL / SQLite file): ``(importances,
    evaluator name)``, or ``({}, reason)`` when the storage or study is missing or
    has fewer than 2 completed trials or no varying parameter."""
    from pathlib import Path

    import optuna

    from vrsearch.results.rundir import RunDir

    target = str(run_dir_or_storage)
    if "://" in target:
        storage = target
    else:
        path = Path(target)
        db = RunDir(path).optuna_file if path.is_dir() else path
        if not db.is_file():  # never let SQLAlchemy create an empty database
            return {}, f"no Optuna storage at {db}"
        storage = f"sqlite:///{db.resolve()}"
    previous = _quiet_optuna()
    try:
        try:
            study = optuna.load_study(study_name=study_name, storage=storage)
        except KeyError:
            return {}, f"no Optuna study named {study_name!r} in the storage"
        return _evaluate(study)
    finally:
        optuna.logging.set_verbosity(previous)


def trial_importances(trials: pd.DataFrame, knobs: list[str], metric: str = "best_val_dice", mode: str = "max",
                      space: dict | None = None) -> tuple[dict[str, float], str]:
    """Like :func:`param_importances` for a run without Optuna storage (grid or
    random designs): an in-memory Optuna study built from the trials with a
    ``metric`` value and the knobs that vary (``space`` supplies log scales)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    if str(metric).lower().startswith("test"):
        raise ValueError(f"importance is computed on validation metrics only, not {metric!r}")
    value = numeric(trials, metric)
    done = trials.loc[value.notna()]
    columns, dists = {}, {}
    for knob in knobs:
        v, categorical = knob_values(done, knob)
        if v.dropna().nunique() < 2:
            continue
        columns[knob] = v
        if categorical:
            dists[knob] = CategoricalDistribution(tuple(categories(v)))
        else:
            log = bool(((space or {}).get(knob) or {}).get("log")) and v.min() > 0
            dists[knob] = FloatDistribution(float(v.min()), float(v.max()), log=log)
    if not dists:
        return {}, "no searched knob varies across the trials with a validation value"
    previous = _quiet_optuna()
    try:
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        for idx in done.index:
            params = {k: (v[idx] if isinstance(dists[k], CategoricalDistribution) else float(v[idx]))
                      for k, v in columns.items() if not pd.isna(v[idx])}
            study.add_trial(optuna.trial.create_trial(params=params, value=float(value[idx]),
                                                      distributions={k: dists[k] for k in params}))
        return _evaluate(study)
    finally:
        optuna.logging.set_verbosity(previous)
