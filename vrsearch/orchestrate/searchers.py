"""What proposes a ``search`` design's trials: Optuna behind Ray's ``OptunaSearch``
(persisted in an RDB storage — SQLite in the run directory by default, or
``search.storage``), wrapped in :class:`~vrsearch.orchestrate.proposals.StudySearcher`
for seeds and for continuing interrupted proposals; what is still to propose after
an interruption (:func:`plan_search`). What stops trials is in
:mod:`vrsearch.orchestrate.schedulers`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from vrsearch.errors import VrsearchError, flat
from vrsearch.orchestrate.proposals import Proposal, StudySearcher
from vrsearch.results import fragments
from vrsearch.results.rundir import HISTORY_FILE, META_FILE, SCORE_FILE, RunDir
from vrsearch.study.design import default_point, optuna_space
from vrsearch.study.schema import Study

if TYPE_CHECKING:
    import optuna


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
    """A seed's score: the one the searcher counted (``score.json``; module doc of
    :mod:`~vrsearch.orchestrate.proposals`), else the metric of its last report (what
    OptunaSearch would be told; a trial that completed before its searcher heard of it)."""
    counted = fragments.read_json(d / SCORE_FILE)
    if counted is not None and counted.get("metric") == metric:
        return fragments.finite(counted.get("score"))
    hist = d / HISTORY_FILE
    if not hist.exists():
        return None
    frame = fragments.read_frame(hist)
    if metric not in frame:
        return None
    values = frame.dropna(subset=[metric]).sort_values("iteration")[metric]
    return fragments.finite(values.iloc[-1]) if len(values) else None


#: user attribute of a placeholder for a proposal number no record kept (:func:`restore_proposals`)
LOST = "vrsearch_lost"


def restore_proposals(study: Study, run: RunDir) -> int:
    """Give Optuna back the proposals its record lacks but the run's trials name; returns
    how many were restored.

    A storage mirror uploads the Optuna database last, from a snapshot taken before the
    trials' files are listed (:mod:`vrsearch.results.storage`), so a mirror whose driver died
    mid-push can hold trials of proposals its database never saw, or no database at all.
    Resumed from there, Optuna would propose again from scratch and the search would run
    more trials than it asked for. Each missing proposal is recorded under its own number
    as RUNNING, with the parameters in its trials' ``meta.json`` (proposal 0 of a study that
    starts from its defaults: the default point, even when no trial of it was mirrored), so
    :func:`plan_search` treats it as any interrupted one: told once its seeds have ended,
    else continued. A number below the highest restored that no trial names (asked, never
    mirrored) becomes a FAIL placeholder marked :data:`LOST`, which keeps the numbers
    aligned and does not count as asked. Call it before unfinished trials are removed
    (their ``meta.json`` names their proposal)."""
    named = _named_proposals(run)
    ost = load_optuna_study(study, run)
    known = 0 if ost is None else len(ost.get_trials(deepcopy=False))
    missing = sorted(n for n in named if n >= known)
    if not missing:
        return 0
    if known == 0 and 0 not in named and study.search.start_from_defaults:
        named[0] = ("search.start_from_defaults", default_point(study))
    optuna = _optuna()
    if ost is None:
        ost = optuna.create_study(
            study_name=study.name,
            storage=run.optuna_url(study.search.storage),
            direction="minimize" if study.search.mode == "min" else "maximize",
            load_if_exists=True,
        )
    for number in range(known, missing[-1] + 1):
        if number in named:
            ost.add_trial(_running(study, *named[number]))
        else:
            ost.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, user_attrs={LOST: True}))
    return len(missing)


def _named_proposals(run: RunDir) -> dict[int, tuple[str, dict[str, Any]]]:
    """``{Optuna number: (where, parameters)}`` of the proposals the trials' ``meta.json``
    name (their ``cell``: the proposal's parameters)."""
    named: dict[int, tuple[str, dict[str, Any]]] = {}
    for d in sorted(run.fragments.glob("*/")):
        meta = fragments.read_json(d / META_FILE) or {}
        if meta.get("optuna_trial") is not None and int(meta["optuna_trial"]) not in named:
            named[int(meta["optuna_trial"])] = (f"{d / META_FILE}", dict(meta.get("cell") or {}))
    return named


def _running(study: Study, where: str, params: dict[str, Any]) -> optuna.trial.FrozenTrial:
    """A RUNNING Optuna trial of ``params``, its distributions from the study's own
    define-by-run space (so a conditional dimension is recorded only where it is active)."""
    optuna = _optuna()
    fixed = optuna.trial.FixedTrial(params)
    try:
        with warnings.catch_warnings():  # FixedTrial warns of a value out of range; create_trial refuses it
            warnings.simplefilter("ignore", UserWarning)
            optuna_space(study)(fixed)
        return optuna.trial.create_trial(
            params=fixed.params, distributions=fixed.distributions, state=optuna.trial.TrialState.RUNNING
        )
    except ValueError as exc:
        raise VrsearchError(f"{where}: not a point of the study's search space ({flat(exc, 200)})") from None


def plan_search(study: Study, run: RunDir) -> tuple[list[Proposal], int]:
    """(interrupted proposals with the seeds still to run, proposals still to ask)."""
    optuna = _optuna()
    ost = load_optuna_study(study, run)
    if ost is None:
        return [], study.search.num_samples
    state = optuna.trial.TrialState
    # asked: not WAITING (enqueued, a new proposal) nor a placeholder (restore_proposals: asked anew)
    asked = [t for t in ost.get_trials(deepcopy=False) if t.state != state.WAITING and not t.user_attrs.get(LOST)]
    running = {t.number for t in asked if t.state == state.RUNNING}
    ended: dict[int, dict[int, float | None]] = {}  # the seeds of running proposals that ended
    for d in sorted(run.fragments.glob("*/")):
        meta = fragments.read_json(d / META_FILE) or {}
        if meta.get("optuna_trial") is None or int(meta["optuna_trial"]) not in running:
            continue
        if (end := fragments.ended(d)) is not None:
            ended.setdefault(int(meta["optuna_trial"]), {})[int(meta["seed"])] = (
                None if end["status"] == "failed" else _score(d, study.search.metric)
            )
    interrupted = []
    for t in asked:
        if t.state == state.RUNNING:
            scores = ended.get(t.number, {})
            todo = [s for s in study.search.seeds if s not in scores]
            interrupted.append(Proposal(t.number, dict(t.params), todo, dict(scores)))
    return interrupted, max(study.search.num_samples - len(asked), 0)


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


class _RecordEnd:
    """Picklable: record the score counted for a trial's seed (``score.json``) and its end
    (``stopped_early``, or ``failed`` with ``error``) as the callbacks would, unless its
    fragments already say how it ended; called before Optuna is told
    (:mod:`vrsearch.orchestrate.proposals`)."""

    def __init__(self, run: RunDir, metric: str):
        self.run, self.metric = run, metric

    def __call__(self, trial_id: str, error: bool, score: float | None) -> None:
        fragments.write_json(self.run.fragment(trial_id) / SCORE_FILE, {"metric": self.metric, "score": score})
        if fragments.ended(self.run.fragment(trial_id)) is None:
            status, why = ("failed", fragments.RAISED) if error else ("stopped_early", "")
            fragments.record_status(self.run.path, trial_id, status, why)


def sampler_seed(seed: int, asked: int) -> int:
    """The sampler's seed: the study's first seed in a fresh search; after ``asked``
    earlier proposals (a resume or ``grow``), a seed derived from both, so the restarted
    sampler's random draws don't repeat the ones its first life already proposed."""
    if asked == 0:
        return seed
    return int(np.random.SeedSequence([seed, asked]).generate_state(1)[0])


def make_sampler(
    name: str, seed: int, *, n_startup_trials: int, multivariate: bool = True, constant_liar: bool = True
) -> optuna.samplers.BaseSampler:
    """Optuna's sampler ``name`` (``tpe``, ``random``, ``cmaes``); TPE's ``multivariate`` and
    ``constant_liar`` (pending trials count as bad ones, so concurrent proposals spread out),
    CMA-ES's and TPE's ``n_startup_trials`` (random proposals before the model is used)."""
    optuna = _optuna()
    import warnings

    with warnings.catch_warnings():  # multivariate TPE and CMA-ES's fallbacks announce themselves
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "tpe":
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=n_startup_trials, multivariate=multivariate, constant_liar=constant_liar
            )
        if name == "cmaes":
            return optuna.samplers.CmaEsSampler(
                seed=seed, n_startup_trials=n_startup_trials, warn_independent_sampling=False
            )
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
    sampler = make_sampler(
        s.searcher,
        seed,
        n_startup_trials=s.n_startup_trials,
        multivariate=s.multivariate,
        constant_liar=s.constant_liar,
    )
    start = [default_point(study)] if s.start_from_defaults and existing is None else None
    storage = optuna.storages.RDBStorage(run.optuna_url(s.storage))
    inner = OptunaSearch(
        space=optuna_space(study),
        metric=s.metric,
        mode=s.mode,
        sampler=sampler,
        study_name=study.name,
        storage=storage,
        points_to_evaluate=start,
    )
    algo = StudySearcher(
        inner,
        s.seeds,
        s.aggregate,
        tell=_Tell(study, run),
        interrupted=interrupted,
        new=new,
        record_end=_RecordEnd(run, study.search.metric),
    )
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
