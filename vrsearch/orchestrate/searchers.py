"""What proposes and stops a study's trials: the Tune scheduler (ASHA, the median
rule or none) and, for ``search`` designs, Optuna behind Ray's ``OptunaSearch``
(persisted in an RDB storage — SQLite in the run directory by default, or
``search.storage``), wrapped in :class:`~vrsearch.orchestrate.proposals.StudySearcher`
for seeds and for continuing interrupted proposals.

A resumed study runs in a new Tune experiment; its scheduler first replays the
recorded reports of the trials that ended before (:func:`scheduler`), so ASHA's
rungs and the median rule compare new reports with everything the study has seen.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler

from vrsearch.orchestrate.proposals import Proposal, StudySearcher
from vrsearch.results import fragments
from vrsearch.results.rundir import HISTORY_FILE, META_FILE, RunDir
from vrsearch.study.design import default_point, optuna_space
from vrsearch.study.rules import scheduler_plan
from vrsearch.study.schema import Study

if TYPE_CHECKING:
    import optuna
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

    def __init__(self, *args: Any, curves: dict[str, Curve] | None = None, final: int | None = None,
                 **kwargs: Any):
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


def tune_scheduler(kind: str, grace: int, max_t: int, reduction_factor: int = 2, brackets: int = 3,
                   curves: dict[str, Curve] | None = None, final: int | None = None,
                   **metric_mode: str) -> TrialScheduler:
    """Ray Tune's scheduler ``kind`` on the ``iteration`` clock: ``asha``, ``hyperband``
    (Tune's asynchronous Hyperband: ASHA with ``brackets`` brackets), ``median`` (the
    median stopping rule, from 2 trials) or ``none`` (FIFO); ``curves``: earlier trials'
    reports to replay first; ``final``: the trials' last iteration, never stopped at;
    ``metric_mode``: ``metric=`` and ``mode=`` when Tune does not set them."""
    if kind == "none":
        return FIFOScheduler()
    if kind in ("asha", "hyperband"):
        return ReplayingASHA(time_attr="iteration", max_t=max_t, grace_period=grace,
                             reduction_factor=reduction_factor, brackets=brackets if kind == "hyperband" else 1,
                             curves=curves, final=final, **metric_mode)
    return ReplayingMedianStoppingRule(time_attr="iteration", grace_period=grace, min_samples_required=2,
                                       curves=curves, final=final, **metric_mode)


def scheduler(study: Study, curves: dict[str, Curve] | None = None) -> TrialScheduler:
    """ASHA, the median rule or FIFO; ``curves``: earlier trials' reports to replay first."""
    plan = scheduler_plan(study)  # checked when the study was validated
    if plan is None:
        return tune_scheduler("none", 1, 1)
    grace, max_t = plan
    return tune_scheduler(study.search.scheduler, grace, max_t, study.search.reduction_factor, curves=curves,
                          final=study.train.iterations)


def _optuna() -> ModuleType:
    """Optuna, without its INFO lines ("A new study created ...") in the study's console."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def load_optuna_study(study: Study, run: RunDir) -> optuna.Study | None:
    """The study's Optuna study, or None if its storage holds none yet (a run directory's
    SQLite file is never created by looking)."""
    optuna = _optuna()
    if not study.search.storage and not run.optuna_file.is_file():
        return None
    try:
        return optuna.load_study(study_name=study.name, storage=run.optuna_url(study.search.storage))
    except KeyError:
        return None


def delete_optuna_study(study: Study, run: RunDir) -> None:
    """Forget the study's Optuna history (``--fresh``): its SQLite file, or the study in
    an external ``search.storage`` (where other studies may live)."""
    optuna = _optuna()
    if not study.search.storage:
        run.optuna_file.unlink(missing_ok=True)
        return
    try:
        optuna.delete_study(study_name=study.name, storage=study.search.storage)
    except KeyError:
        pass


def _score(d: Path, metric: str) -> float | None:
    """A seed's score: the metric of its last report (what OptunaSearch would be told)."""
    import pandas as pd

    hist = d / HISTORY_FILE
    if not hist.exists():
        return None
    frame = pd.read_parquet(hist)
    if metric not in frame:
        return None
    values = frame.dropna(subset=[metric]).sort_values("iteration")[metric]
    return fragments.finite(values.iloc[-1]) if len(values) else None


def plan_search(study: Study, run: RunDir) -> tuple[list[Proposal], int]:
    """(interrupted proposals with the seeds still to run, proposals still to ask)."""
    optuna = _optuna()
    ost = load_optuna_study(study, run)
    if ost is None:
        return [], study.search.num_samples
    ended: dict[int, dict[int, float | None]] = {}
    for d in sorted(run.fragments.glob("*/")):
        meta, end = fragments.read_json(d / META_FILE) or {}, fragments.ended(d)
        if end is not None and meta.get("optuna_trial") is not None:
            ended.setdefault(int(meta["optuna_trial"]), {})[int(meta["seed"])] = (
                None if end["status"] == "failed" else _score(d, study.search.metric))
    interrupted: list[Proposal] = []
    asked = 0
    for t in ost.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.WAITING:  # enqueued, not asked yet: a new proposal
            continue
        asked += 1
        if t.state == optuna.trial.TrialState.RUNNING:
            scores = ended.get(t.number, {})
            todo = [s for s in study.search.seeds if s not in scores]
            interrupted.append(Proposal(t.number, dict(t.params), todo, dict(scores)))
    return interrupted, max(study.search.num_samples - asked, 0)


def tell(study: Study, run: RunDir, number: int, value: float) -> None:
    """Close Optuna trial ``number`` with ``value`` (FAIL when it has none)."""
    optuna = _optuna()
    ost = load_optuna_study(study, run)
    if ost is None:
        raise RuntimeError(f"no Optuna study {study.name!r} to tell trial {number}")
    state = optuna.trial.TrialState.FAIL if not math.isfinite(value) else optuna.trial.TrialState.COMPLETE
    ost.tell(number, None if state == optuna.trial.TrialState.FAIL else value, state=state)


class _Tell:
    """Picklable ``tell`` for one study and run directory."""

    def __init__(self, study: Study, run: RunDir):
        self.study, self.run = study, run

    def __call__(self, number: int, value: float) -> None:
        tell(self.study, self.run, number, value)


def sampler_seed(seed: int, asked: int) -> int:
    """The sampler's seed: the study's first seed in a fresh search; after ``asked``
    earlier proposals (a resume or ``grow``), a seed derived from both, so the restarted
    sampler's random draws don't repeat the ones its first life already proposed."""
    if asked == 0:
        return seed
    return int(np.random.SeedSequence([seed, asked]).generate_state(1)[0])


def make_sampler(name: str, seed: int, *, n_startup_trials: int, multivariate: bool = True,
                 constant_liar: bool = True) -> optuna.samplers.BaseSampler:
    """Optuna's sampler ``name`` (``tpe``, ``random``, ``cmaes``); TPE's ``multivariate`` and
    ``constant_liar`` (pending trials count as bad ones, so concurrent proposals spread out),
    CMA-ES's and TPE's ``n_startup_trials`` (random proposals before the model is used)."""
    optuna = _optuna()
    import warnings

    with warnings.catch_warnings():  # multivariate TPE and CMA-ES's fallbacks announce themselves
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                              multivariate=multivariate, constant_liar=constant_liar)
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup_trials,
                                                warn_independent_sampling=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown searcher {name!r}")


def searcher(study: Study, run: RunDir, interrupted: list[Proposal], new: int) -> Any:
    """Optuna behind Tune for a search design: interrupted proposals first, then ``new``
    ones (the study's defaults first with ``start_from_defaults``, in a fresh study)."""
    optuna = _optuna()
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    s = study.search
    existing = load_optuna_study(study, run)
    seed = sampler_seed(s.seeds[0], len(existing.trials) if existing is not None else 0)
    sampler = make_sampler(s.searcher, seed, n_startup_trials=s.n_startup_trials,
                           multivariate=s.multivariate, constant_liar=s.constant_liar)
    start = [default_point(study)] if s.start_from_defaults and existing is None else None
    storage = optuna.storages.RDBStorage(run.optuna_url(s.storage))
    inner = OptunaSearch(space=optuna_space(study), metric=s.metric, mode=s.mode, sampler=sampler,
                         study_name=study.name, storage=storage, points_to_evaluate=start)
    algo = StudySearcher(inner, s.seeds, s.aggregate, tell=_Tell(study, run), interrupted=interrupted, new=new)
    return ConcurrencyLimiter(algo, max_concurrent=study.resources.concurrent_trials)


def close_orphans(study: Study, run: RunDir) -> int:
    """Mark failed the Optuna trials still RUNNING when the search has ended (a proposal
    no trial evaluated); returns their count."""
    optuna = _optuna()
    ost = load_optuna_study(study, run)
    if ost is None:
        return 0
    orphans = [t.number for t in ost.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
    for number in orphans:
        ost.tell(number, state=optuna.trial.TrialState.FAIL)
    return len(orphans)
