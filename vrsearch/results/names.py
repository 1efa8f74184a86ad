"""Names of trials for people (report legends, the console's progress line).

A trial is named by its group — the ablation arm, grid cell or search
configuration (:func:`vrsearch.results.stats.group_labels`) — plus
``· seed N`` when the run trains several seeds, and its trial id only when
group and seed still do not single it out (e.g. a search that proposed the
same configuration twice): ``no_contrast · seed 1``, not ``2d576_00004``.
"""

from __future__ import annotations

import math

import pandas as pd

from vrsearch.results.stats import group_labels


def _seed_text(seed) -> str:
    try:
        value = float(seed)
    except (TypeError, ValueError):
        return "" if seed is None else f" · seed {seed}"
    if math.isnan(value):
        return ""
    return f" · seed {int(value)}" if value.is_integer() else f" · seed {value:g}"


def trial_names(trials: pd.DataFrame) -> pd.Series:
    """Display name of every trial, indexed by ``trial_id`` (as str), in row order."""
    if trials.empty or "trial_id" not in trials.columns:
        return pd.Series(dtype=object, name="name")
    ids = trials["trial_id"].astype(str).to_numpy()
    names = pd.Series(group_labels(trials).to_numpy(), index=ids, dtype=object)
    if "seed" in trials.columns and trials["seed"].dropna().nunique() > 1:
        names = names + pd.Series([_seed_text(s) for s in trials["seed"]], index=ids)
    clash = names.duplicated(keep=False).to_numpy()
    names[clash] = [f"{n} ({i})" for n, i in zip(names[clash], ids[clash])]
    return names.rename("name")
