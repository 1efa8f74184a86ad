"""What stops a study's trials: the Tune scheduler (ASHA, asynchronous Hyperband, the
median rule or none) on the ``iteration`` clock.

A resumed study runs in a new Tune experiment; its scheduler first replays the
recorded reports of the trials that ended before (:func:`scheduler`), so ASHA's
rungs and the median rule compare new reports with everything the study has seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from vrsearch.results import fragments
from vrsearch.results.rundir import HISTORY_FILE, RunDir
from vrsearch.study.rules import scheduler_plan
from vrsearch.study.schema import Study

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController
    from ray.tune.experiment import Trial

#: one recorded report: (iteration, metric value)
Curve = list[tuple[int, float]]


class _Ended:
    """A trial of an earlier experiment, as a scheduler sees it (its id only)."""

    def __init__(self, trial_id: str):
        self.trial_id = trial_id


class _NoLiveTrials:
    """The controller a scheduler is handed while replaying: nothing is running yet."""

    @staticmethod
    def get_live_trials() -> list[Any]:
        return []

    @staticmethod
    def get_trials() -> list[Any]:
        return []


def ended_trial(trial_id: str) -> Trial:
    """A stand-in for a trial a scheduler is told about but Tune never ran: the only
    attribute a scheduler reads is its id."""
    return cast("Trial", _Ended(trial_id))


def no_live_trials() -> TuneController:
    """A stand-in for Tune's controller while a scheduler replays: nothing is running."""
    return cast("TuneController", _NoLiveTrials())


class _Replaying(TrialScheduler):
    """A Tune scheduler that, once Tune gives it its metric and mode, replays the curves of
    trials that ended in earlier experiments through its own methods (mixed in before
    ASHA or the median rule, below)."""

    _time_attr: str  # set by the scheduler it is mixed into

    def __init__(self, *args: Any, curves: dict[str, Curve] | None = None, final: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._curves, self._final = dict(curves or {}), final

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict[str, Any]) -> str:
        """A trial reporting its ``final`` iteration is recorded but never stopped: it has
        paid for its training, and a stop there would lose its test evaluation (an ASHA
        rung falls on the last iteration when it is grace × reduction_factor^k)."""
        action = super().on_trial_result(tune_controller, trial, result)
        if self._final is not None and result.get(self._time_attr, -1) >= self._final:
            return "CONTINUE"
        return action

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        ok = super().set_search_properties(metric, mode, **spec)
        ctrl, time_attr, key = no_live_trials(), self._time_attr, self._metric
        if not self._curves:
            return ok
        if key is None:
            raise ValueError("replaying earlier trials' curves needs the scheduler's metric")
        for trial_id, curve in self._curves.items():
            trial, last = ended_trial(trial_id), None
            self.on_trial_add(ctrl, trial)
            for iteration, value in curve:
                last = {time_attr: iteration, key: value}
                self.on_trial_result(ctrl, trial, last)
            self.on_trial_complete(ctrl, trial, last or {})
        self._curves = {}
        return ok


class ReplayingASHA(_Replaying, ASHAScheduler):
    """ASHA (or asynchronous Hyperband) that replays earlier trials' curves first."""


class ReplayingMedianStoppingRule(_Replaying, MedianStoppingRule):
    """The median stopping rule that replays earlier trials' curves first."""


def recorded_curves(run: RunDir, metric: str) -> dict[str, Curve]:
    """The reports (iteration, ``metric``) of every trial in ``run`` that ended."""
    import pandas as pd

    out: dict[str, Curve] = {}
    for d in sorted(run.fragments.glob("*/")):
        ended = fragments.ended(d)
        hist = d / HISTORY_FILE
        if ended is None or not hist.exists():
            continue
        frame = pd.read_parquet(hist)
        if metric in frame:
            rows = frame.dropna(subset=[metric]).sort_values("iteration")
            out[d.name] = [(int(i), float(v)) for i, v in zip(rows.iteration, rows[metric]) if i > 0]
    return out


def tune_scheduler(
    kind: str,
    grace: int,
    max_t: int,
    reduction_factor: int = 2,
    brackets: int = 3,
    curves: dict[str, Curve] | None = None,
    final: int | None = None,
    **metric_mode: str,
) -> TrialScheduler:
    """Ray Tune's scheduler ``kind`` on the ``iteration`` clock: ``asha``, ``hyperband``
    (Tune's asynchronous Hyperband: ASHA with ``brackets`` brackets), ``median`` (the
    median stopping rule, from 2 trials) or ``none`` (FIFO); ``curves``: earlier trials'
    reports to replay first; ``final``: the trials' last iteration, never stopped at;
    ``metric_mode``: ``metric=`` and ``mode=`` when Tune does not set them."""
    if kind == "none":
        return FIFOScheduler()
    if kind in ("asha", "hyperband"):
        return ReplayingASHA(
            time_attr="iteration",
            max_t=max_t,
            grace_period=grace,
            reduction_factor=reduction_factor,
            brackets=brackets if kind == "hyperband" else 1,
            curves=curves,
            final=final,
            **metric_mode,
        )
    return ReplayingMedianStoppingRule(
        time_attr="iteration", grace_period=grace, min_samples_required=2, curves=curves, final=final, **metric_mode
    )


def scheduler(study: Study, curves: dict[str, Curve] | None = None) -> TrialScheduler:
    """ASHA, the median rule or FIFO; ``curves``: earlier trials' reports to replay first."""
    plan = scheduler_plan(study)  # checked when the study was validated
    if plan is None:
        return tune_scheduler("none", 1, 1)
    grace, max_t = plan
    return tune_scheduler(
        study.search.scheduler, grace, max_t, study.search.reduction_factor, curves=curves, final=study.train.iterations
    )
