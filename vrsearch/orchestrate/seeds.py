"""Seed-aware search: every configuration the searcher proposes runs once per
seed, and the searcher learns its score only when all seeds have finished.

Ray Tune's ``Repeater`` repeats a configuration but hands the searcher a
plain mean, drops its own bookkeeping on save, and offers no pessimistic
aggregate; Optuna has no repeated evaluation at all. :class:`SeedRepeater`
wraps any Tune searcher (here ``OptunaSearch``):

* ``suggest`` asks the inner searcher for a new configuration only when the
  current one has been issued for every seed, and adds ``train.seed`` to it;
* each seed's trial is a separate Tune trial (its own rows in
  ``trials.parquet``, its own ASHA rung decisions); the score of a seed is
  the metric of its last report — what ``OptunaSearch`` itself would use;
* when the last seed of a configuration ends, the inner searcher is told
  :func:`aggregate` of the seeds' scores under the configuration's first
  trial id (the id it proposed it under). Seeds without a score (crashed,
  NaN) are left out; a configuration with no score at all is reported to
  the inner searcher as errored.

The whole state (groups and the inner searcher's own file) is saved, so a
resumed study keeps every group that is half done.
"""

from __future__ import annotations

import math
import os
import pickle
import tempfile
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from vrsearch.study.design import SEED_KEY


def aggregate(scores: list[float], how: str, mode: str) -> float:
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


class SeedRepeater(Searcher):
    """Run each proposed configuration once per seed; report the aggregate."""

    def __init__(self, searcher: Searcher, seeds: list[int], how: str = "mean"):
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.seeds, self.how = searcher, list(seeds), how
        self.groups: dict[str, dict[str, Any]] = {}  # first trial id -> config, issued, scores
        self.trial_group: dict[str, str] = {}
        self.current: str | None = None

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return ok

    def suggest(self, trial_id: str) -> dict | None:
        group = self.groups.get(self.current) if self.current else None
        if group is None or len(group["issued"]) == len(self.seeds):
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            self.current = trial_id
            group = self.groups[trial_id] = {"config": dict(config), "issued": [], "scores": {}}
        seed = self.seeds[len(group["issued"])]
        group["issued"].append(trial_id)
        self.trial_group[trial_id] = self.current
        return {**group["config"], SEED_KEY: seed}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Intermediate per-seed results stay with the scheduler (ASHA), not the searcher."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        first = self.trial_group.get(trial_id)
        if first is None:
            return
        group = self.groups[first]
        value = (result or {}).get(self.metric)
        group["scores"][trial_id] = None if error or value is None else float(value)
        if len(group["scores"]) < len(self.seeds):
            return
        score = aggregate(list(group["scores"].values()), self.how, self.mode)
        if math.isnan(score):
            self.searcher.on_trial_complete(first, result=None, error=True)
        else:
            self.searcher.on_trial_complete(first, result={self.metric: score})

    def get_state(self) -> dict:
        return {"groups": self.groups, "trial_group": self.trial_group, "current": self.current,
                "seeds": self.seeds, "how": self.how}

    def set_state(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def save(self, checkpoint_path: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            self.searcher.save(inner)
            with open(inner, "rb") as f:
                blob = f.read()
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": self.get_state(), "inner": blob}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)  # our own file in the run directory, written by save()
        self.set_state(saved["state"])
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "inner.pkl")
            with open(inner, "wb") as f:
                f.write(saved["inner"])
            self.searcher.restore(inner)
