"""A finished study as a tabular benchmark: every configuration it trained to the end
with its learning curve (one seed), and the fidelity check of early stopping.

A configuration is a trial's ``group_hash`` (its settings without the seed); its
curve is the recorded ``(iteration, metric)`` reports of one seed. Only curves that
reach the study's ``train.iterations`` enter the table (a trial that a scheduler
stopped, or that failed, has no value at the budget a replayed search may ask for).

Conventions (shown to users by ``vrsearch replay``):

* the value of a search at any moment is the best metric **any report so far** has
  shown (the model a checkpoint holds), and the table's best is the best report of
  any configuration at any iteration: the exhaustive run's pick;
* compute is counted in training iterations (every configuration of a study trains
  at the same cost per iteration); the exhaustive compute is the sum of the table's
  full curves;
* a proposal that is not a measured configuration is scored as the **nearest**
  measured configuration that the search has not run yet (:meth:`CurveTable.nearest`):
  distances per searched key are in ``[0, 1]`` — a numeric key's difference over its
  range (in log space for a log key), 0/1 for a categorical one — summed over keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.study.schema import Dimension, Study
from vrsearch.study.space import active, ordered_space


@dataclass
class CurveTable:
    """Configurations (searched keys → values) with their full learning curves."""

    study: Study
    metric: str
    seed: int
    params: list[dict[str, Any]]
    #: per configuration: the report iterations (ascending) and the metric at each
    iterations: list[np.ndarray]
    values: list[np.ndarray]
    #: configurations left out (curves that end before the budget), with the reason
    left_out: int = 0

    @property
    def sign(self) -> float:
        """+1 when larger is better (``mode: max``), -1 otherwise."""
        return 1.0 if self.study.search.mode == "max" else -1.0

    def __len__(self) -> int:
        return len(self.params)

    def cost(self) -> np.ndarray:
        """Iterations of each full curve."""
        return np.array([float(it[-1]) for it in self.iterations])

    def final(self) -> np.ndarray:
        return np.array([float(v[-1]) for v in self.values])

    def best(self) -> float:
        """The best report of any configuration (the exhaustive run's pick)."""
        return self.sign * max(float(np.max(self.sign * v)) for v in self.values)

    def nearest(
        self,
        point: dict[str, Any],
        exclude: set[int] | frozenset[int] = frozenset(),
        rng: np.random.Generator | None = None,
    ) -> int:
        """Index of the measured configuration nearest ``point`` among those not in
        ``exclude``; a tie goes to one of the tied at random (``rng``), else to the first."""
        space = self.study.search.space
        free = [i for i in range(len(self.params)) if i not in exclude]
        if not free:
            raise ValueError("every configuration of the table has been run")
        d = np.array([sum(_distance(space[k], point.get(k), self.params[i].get(k)) for k in space) for i in free])
        tied = [free[j] for j in np.flatnonzero(d <= d.min() + 1e-12)]
        return int(rng.choice(tied)) if rng is not None and len(tied) > 1 else tied[0]


def _distance(dim: Dimension, a: Any, b: Any) -> float:
    """One key's distance in [0, 1] (an inactive conditional key: 0 if both lack it)."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else 1.0
    if dim.type == "categorical":
        return 0.0 if a == b else 1.0
    (lo, hi), x, y = dim.bounds(), float(a), float(b)
    if dim.log:
        lo, hi, x, y = math.log(lo), math.log(hi), math.log(x), math.log(y)
    return min(abs(x - y) / (hi - lo), 1.0)


def load_curves(run_dir: Path, metric: str | None = None, seed: int | None = None) -> CurveTable:
    """The curve table of a finished ``grid``/``random``/``search`` run directory."""
    from vrsearch.study import build_study

    res = io.load(run_dir)
    if not res.study:
        raise VrsearchError(f"{run_dir}: no study.yaml; replay needs the study's search space")
    study = build_study(res.study, check_design=False)
    if not study.search.space:
        raise VrsearchError(
            f"{run_dir}: design {study.search.design!r} searches no space; replay needs a grid, random or search study"
        )
    metric = metric or study.search.metric
    hist = res.history
    if metric not in hist.columns or hist[metric].notna().sum() == 0 or res.trials.empty:
        raise VrsearchError(f"{run_dir}: no recorded curves of {metric!r} (history.parquet has no such reports)")
    trials = res.trials
    seed = int(trials.seed.min()) if seed is None else seed
    if seed not in set(trials.seed.astype(int)):
        raise VrsearchError(
            f"--seed {seed}: {run_dir} has no trials of that seed (seeds {sorted(set(trials.seed.astype(int)))})"
        )
    budget = study.train.iterations
    curves = {
        tid: g.sort_values("iteration")
        for tid, g in hist.dropna(subset=[metric]).query("iteration > 0").groupby("trial_id")
    }
    params, its, vals, left = [], [], [], 0
    for _, t in trials[trials.seed.astype(int) == seed].drop_duplicates("group_hash", keep="last").iterrows():
        c = curves.get(t.trial_id)
        if c is None or int(c.iteration.iloc[-1]) < budget:
            left += 1
            continue
        params.append(_active_params(study, t))
        its.append(c.iteration.to_numpy(dtype=float))
        vals.append(c[metric].to_numpy(dtype=float))
    if len(params) < 2:
        raise VrsearchError(
            f"{run_dir}: {len(params)} configuration(s) of seed {seed} have a full curve of "
            f"{metric!r} (to iteration {budget}); replay needs at least 2"
        )
    return CurveTable(study, metric, seed, params, its, vals, left)


def _active_params(study: Study, trial: pd.Series) -> dict[str, Any]:
    """A trial's value of every searched key that applies to it (a conditional key whose
    parents do not match holds the study's base value, which no search chose: left out)."""
    cell: dict[str, Any] = {}
    for key, dim in ordered_space(study):
        if active(dim, cell):
            cell[key] = _plain(trial.get(f"config.{key}"))
    return cell


def _plain(value: Any) -> Any:
    """A parquet cell as the value a study would hold (numpy scalars as Python; NaN: absent)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def fidelity(table: CurveTable, target: float) -> pd.DataFrame:
    """Per rung (a report iteration every curve has, before the last): how well the
    metric there ranks configurations as the final metric does — Spearman's rho and
    Kendall's tau-b (scipy) — and the regret of keeping the rung's best (its final
    value's distance to the best final value; within ``target``: ``top_kept``)."""
    from scipy.stats import kendalltau, spearmanr

    common = sorted(set.intersection(*(set(it) for it in table.iterations)))
    final = table.final()
    rows = []
    for rung in common[:-1]:
        at = np.array([float(v[np.searchsorted(it, rung)]) for it, v in zip(table.iterations, table.values)])
        pick = int(np.argmax(table.sign * at))
        regret = float(np.max(table.sign * final) - table.sign * final[pick])  # >= 0
        rows.append(
            {
                "rung": int(rung),
                "configurations": len(at),
                "spearman": float(spearmanr(at, final).statistic),
                "kendall": float(kendalltau(at, final).statistic),
                "regret": regret,
                "top_kept": regret <= target,
            }
        )
    return pd.DataFrame(rows, columns=["rung", "configurations", "spearman", "kendall", "regret", "top_kept"])


def recommended_grace(fid: pd.DataFrame, min_rho: float = 0.8) -> int | None:
    """The first rung from which every later rung ranks like the end (Spearman ≥ ``min_rho``);
    None when no rung does (early stopping would misrank: use no scheduler)."""
    ok = (fid.spearman >= min_rho).to_numpy()
    for i in range(len(ok)):
        if ok[i:].all():
            return int(fid.rung.iloc[i])
    return None
