"""What a ``search`` design runs: Optuna's proposals, once per seed, continued across
interruptions without Tune's saved state.

Optuna's storage (committed at every ``ask`` and ``tell``) and the trial fragments
in the run directory (written atomically) are the source of truth. Every Tune
trial carries the number of the Optuna trial it evaluates (``optuna_trial`` in
its ``meta.json``), so after any interruption :func:`plan_search` can tell

* which proposals are closed (COMPLETE, PRUNED, FAIL): never run again;
* which are *interrupted* — RUNNING in Optuna: asked, never told — and which of
  their seeds already finished (their fragments) or still have to run; those
  seeds run again in the new experiment and continue from their checkpoints
  (keyed by configuration, :mod:`vrsearch.orchestrate.trainable`), and Optuna is
  told the proposal's aggregate under its own number once its last seed ends;
* how many new proposals are still to be asked: ``num_samples`` minus every
  proposal Optuna already has (enqueued start points not yet asked included; the
  placeholders of :func:`~vrsearch.orchestrate.searchers.restore_proposals`, numbers
  no record kept, excluded: their proposals are asked anew).

:class:`StudySearcher` (a Tune ``Searcher``) serves the interrupted seeds first,
then asks Optuna (``OptunaSearch``) for new configurations and issues each once
per seed. It tells Optuna a configuration's score only when all its seeds have
ended: ``search.aggregate`` of the seeds' scores (``mean``, or ``lcb``: the mean one
standard error towards the worse side); a seed's score is its last reported
metric, what ``OptunaSearch`` itself would use. Intermediate results stay with the
scheduler (ASHA), which decides what stops.

Order on disk: Tune calls the searcher before the callbacks that record how a trial
ended, so a trial stopped by ASHA (or failed) would have its proposal closed in Optuna
while its fragments did not yet say it ended; a driver killed in between then lost the
trial for good (a resume removes unended trials and never reruns a closed proposal).
``record_end`` writes that end first (``status.json``, unless ``result.json`` is there),
then Optuna is told; the callback rewrites it with the error's text.

It also writes the score it counted for the seed (``score.json``), which is what a resume
counts for a seed that ended before the interruption. The trial's own history is not the
same record: a DDP trial's workers do not wait for Tune to take a report (Ray Train V2), so
rank 0's ``history.parquet`` can hold a report past the one on which ASHA stopped it, and
its last row then differs from the score a run without interruption counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.search import Searcher

from vrsearch.study.design import OPTUNA_KEY, SEED_KEY

if TYPE_CHECKING:
    from ray.tune.search.optuna import OptunaSearch


def aggregate(scores: list[float | None], how: str, mode: str) -> float:
    """``mean`` of the finite scores, or ``lcb``: the mean moved one standard error
    (sample std / √k) towards the worse side — down for ``max``, up for ``min``.
    NaN if no score is finite; a single score has no spread (its bound is itself)."""
    x = np.asarray([s for s in scores if s is not None and math.isfinite(s)], dtype=float)
    if x.size == 0:
        return math.nan
    mean = float(x.mean())
    if how == "mean" or x.size < 2:
        return mean
    se = float(x.std(ddof=1)) / math.sqrt(x.size)
    return mean - se if mode == "max" else mean + se


@dataclass
class Proposal:
    """One Optuna trial and its seeds: ``scores`` of the seeds that ended, ``todo`` the
    seeds still to issue; ``tune_id``: the Tune trial id ``OptunaSearch`` knows it by
    (None for a proposal asked in an earlier experiment)."""

    number: int
    params: dict[str, Any]
    todo: list[int]
    scores: dict[int, float | None] = field(default_factory=dict)
    tune_id: str | None = None
    running: dict[str, int] = field(default_factory=dict)  # Tune trial id -> seed


class StudySearcher(Searcher):
    """Optuna's proposals × seeds, continuing ``interrupted`` proposals first; at most
    ``new`` proposals are asked. ``tell(number, value)`` closes an interrupted one."""

    def __init__(
        self,
        optuna_search: OptunaSearch,
        seeds: list[int],
        how: str,
        *,
        tell: Callable[[int, float], None],
        interrupted: Sequence[Proposal] = (),
        new: int,
        record_end: Callable[[str, bool, float | None], None] | None = None,
    ):
        super().__init__(metric=optuna_search.metric, mode=optuna_search.mode)
        self.inner, self.seeds, self.how, self.tell = optuna_search, list(seeds), how, tell
        self.record_end = record_end
        self.open: list[Proposal] = list(interrupted)
        self.new = new
        self.by_trial: dict[str, Proposal] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        ok = self.inner.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.inner.metric, self.inner.mode
        return ok

    def _next(self, trial_id: str) -> Proposal | None:
        for p in self.open:
            if p.todo:
                return p
        if self.new <= 0:
            return None
        config = self.inner.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:  # type: ignore[comparison-overlap]  # ray: suggest() may return FINISHED, a str
            return None
        number = self.inner._ot_trials[trial_id].number  # OptunaSearch's own record (ray 2.60)
        self.new -= 1
        p = Proposal(number, dict(config), list(self.seeds), tune_id=trial_id)
        self.open.append(p)
        return p

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # ray's Searcher returns FINISHED, a str, too
        p = self._next(trial_id)
        if p is None:
            return Searcher.FINISHED if self.new <= 0 and not any(q.todo for q in self.open) else None
        seed = p.todo.pop(0)
        p.running[trial_id] = seed
        self.by_trial[trial_id] = p
        return {**p.params, SEED_KEY: seed, OPTUNA_KEY: p.number}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate results stay with the scheduler."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        p = self.by_trial.pop(trial_id, None)
        if p is None:
            return
        value = (result or {}).get(self.metric)
        seed_score = None if error or value is None else float(value)
        p.scores[p.running.pop(trial_id)] = seed_score
        if self.record_end is not None:  # the trial's end and score on disk before Optuna's (module doc)
            self.record_end(trial_id, error, seed_score)
        if p.todo or p.running:
            return
        self.open.remove(p)
        score = aggregate(list(p.scores.values()), self.how, self.mode)
        if p.tune_id is not None:  # asked in this experiment: OptunaSearch tells Optuna
            self.inner.on_trial_complete(
                p.tune_id, result=None if math.isnan(score) else {self.metric: score}, error=math.isnan(score)
            )
        else:
            self.tell(p.number, score)
