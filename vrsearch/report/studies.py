"""The Optuna studies the report's search figures draw (:mod:`optuna.visualization`) and
Optuna's PED-ANOVA importances of them.

A ``search`` design stores its Optuna study (``optuna.db`` in the run directory, or
``search.storage``): one Optuna trial per configuration, its value the search metric
aggregated over the seeds, as the searcher saw it. Grid and random designs have no
storage; :func:`trials_study` builds an in-memory study from ``trials.parquet``, one
Optuna trial per vrsearch trial with a validation value (early-stopped ones with their
value when stopped), in the order of the frame. Either way the parameters are renamed
to their short labels (``method.params.k`` → ``k``) so that Optuna's axes are readable.
PED-ANOVA is used rather than fANOVA because it needs no scikit-learn and is
deterministic; the report names the evaluator next to the chart.

Protocol rule: a study built from trials is built on a validation metric only.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import TrialState

from vrsearch.report.plotting import categories, knob_values, label, numeric
from vrsearch.results.rundir import RunDir

EVALUATOR = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator)"


@contextmanager
def quiet() -> Iterator[None]:
    """Optuna's logging at WARNING and its experimental/user warnings silenced (restored after)."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(previous)


def completed(study: optuna.Study | None) -> list[optuna.trial.FrozenTrial]:
    """The completed trials of ``study`` ([] for None)."""
    if study is None:
        return []
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def relabeled(study: optuna.Study) -> optuna.Study:
    """An in-memory copy of ``study`` with every parameter renamed to its short label
    (:func:`~vrsearch.report.plotting.label`); trial numbers, states and values kept."""
    with quiet():
        out = optuna.create_study(directions=study.directions)
        for t in study.get_trials(deepcopy=False):
            state = (
                t.state if t.state in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED) else TrialState.FAIL
            )  # a RUNNING or WAITING proposal: not drawn, number kept
            out.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    values=t.values if state == TrialState.COMPLETE else None,
                    params={label(k): v for k, v in t.params.items()},
                    distributions={label(k): d for k, d in t.distributions.items()},
                    user_attrs=t.user_attrs,
                )
            )
    return out


def storage_url(run_dir_or_storage: Path | str) -> tuple[str | None, str]:
    """``(storage URL, "")`` of a run directory's ``optuna.db``, an SQLite file or a URL,
    or ``(None, reason)`` when the file is missing (SQLAlchemy would create it)."""
    target = str(run_dir_or_storage)
    if "://" in target:
        return target, ""
    path = Path(target)
    db = RunDir(path).optuna_file if path.is_dir() else path
    if not db.is_file():
        return None, f"no Optuna storage at {db}"
    return f"sqlite:///{db.resolve()}", ""


def stored_study(run_dir_or_storage: Path | str, study_name: str) -> tuple[optuna.Study | None, str]:
    """The stored Optuna study ``study_name`` (relabeled), or ``(None, reason)`` when the
    storage or the study is missing or cannot be read."""
    storage, reason = storage_url(run_dir_or_storage)
    if storage is None:
        return None, reason
    with quiet():
        try:
            return relabeled(optuna.load_study(study_name=study_name, storage=storage)), ""
        except KeyError:
            return None, f"no Optuna study named {study_name!r} in the storage"
        except Exception as exc:  # noqa: BLE001 - another Optuna version's storage, a database that is down
            return None, f"cannot read the Optuna storage ({type(exc).__name__}: {exc})"


def _distribution(values: pd.Series, categorical: bool, log: bool) -> BaseDistribution:
    if categorical:
        return CategoricalDistribution(tuple(categories(values)))
    low, high = float(values.min()), float(values.max())
    return FloatDistribution(low, high, log=log and low > 0)


def trials_study(
    trials: pd.DataFrame,
    knobs: list[str],
    metric: str = "best_val_dice",
    mode: str = "max",
    space: dict[str, Any] | None = None,
) -> optuna.Study:
    """An in-memory Optuna study of the trials with a ``metric`` value: one Optuna trial
    each, in the frame's order, with the knobs that have values as parameters (short
    labels; categorical knobs as categories, the others as floats, log scale where
    ``space`` says so) and the trial id and status as user attributes."""
    if str(metric).lower().startswith("test"):
        raise ValueError(f"Optuna's figures and importances use validation metrics only, not {metric!r}")
    value = numeric(trials, metric)
    done = trials.loc[value.notna()]
    columns, dists = {}, {}
    for knob in knobs:
        v, categorical = knob_values(done, knob)
        if v.notna().any():
            columns[label(knob)] = v
            dists[label(knob)] = _distribution(
                v.dropna(), categorical, bool(((space or {}).get(knob) or {}).get("log"))
            )
    ids = done["trial_id"].astype(str) if "trial_id" in done.columns else pd.Series("", index=done.index)
    status = done["status"].astype(str) if "status" in done.columns else pd.Series("completed", index=done.index)
    with quiet():
        study = optuna.create_study(direction="maximize" if mode == "max" else "minimize")
        for idx in done.index:
            params = {
                k: (v[idx] if isinstance(dists[k], CategoricalDistribution) else float(v[idx]))
                for k, v in columns.items()
                if not pd.isna(v[idx])
            }
            study.add_trial(
                optuna.trial.create_trial(
                    params=params,
                    value=float(value[idx]),
                    distributions={k: dists[k] for k in params},
                    user_attrs={"trial_id": ids[idx], "status": status[idx]},
                )
            )
    return study


def varying(study: optuna.Study) -> list[str]:
    """Parameters with at least two distinct values among the completed trials (sorted)."""
    done = completed(study)
    names = {k for t in done for k in t.params}
    return sorted(k for k in names if len({repr(t.params.get(k)) for t in done}) > 1)


def evaluate(study: optuna.Study | None) -> tuple[dict[str, float], str]:
    """PED-ANOVA importances of the varying parameters of a study (how differently each is
    distributed among the top trials than among all): ``(importances, evaluator on n
    completed trials)``, or ``({}, reason)`` when there is nothing to evaluate."""
    if study is None:
        return {}, "no Optuna study"
    if len(study.directions) > 1:
        return {}, "multi-objective study: importance needs a single objective"
    done = completed(study)
    if len(done) < 2:
        return {}, f"{len(done)} completed trial(s): importance needs at least 2"
    params = varying(study)
    if not params:
        return {}, "no parameter varies across the completed trials"
    try:
        with quiet():
            result = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=params)
    except Exception as exc:  # noqa: BLE001 - optuna raises various errors on degenerate studies
        return {}, f"{EVALUATOR} failed: {exc}"
    return {str(k): float(v) for k, v in result.items()}, f"{EVALUATOR} on {len(done)} completed trials"
