"""Names of trials for people (report legends, the console's progress line).

A trial is named by its group — the ablation arm, grid cell or search
configuration (:func:`vrsearch.results.stats.group_labels`) — plus
``· seed N`` when the run trains several seeds, and its trial id only when
group and seed still do not single it out (e.g. a search that proposed the
same configuration twice): ``no_contrast · seed 1``, not ``2d576_00004``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from vrsearch.results import fragments, io
from vrsearch.results.rundir import META_FILE, RunDir
from vrsearch.results.stats import group_labels


def _seed_text(seed: Any) -> str:
    try:
        value = float(seed)
    except (TypeError, ValueError):
        return "" if seed is None else f" · seed {seed}"
    if math.isnan(value):
        return ""
    return f" · seed {int(value)}" if value.is_integer() else f" · seed {value:g}"


def trial_names(trials: pd.DataFrame, several_seeds: bool | None = None) -> pd.Series:
    """Display name of every trial, indexed by ``trial_id`` (as str), in row order;
    ``several_seeds`` (default: whether ``trials`` holds more than one seed) adds the seed."""
    if trials.empty or "trial_id" not in trials.columns:
        return pd.Series(dtype=object, name="name")
    ids = trials["trial_id"].astype(str).to_numpy()
    names = pd.Series(group_labels(trials).to_numpy(), index=ids, dtype=object)
    if several_seeds is None:
        several_seeds = "seed" in trials.columns and trials["seed"].dropna().nunique() > 1
    if several_seeds and "seed" in trials.columns:
        names = names + pd.Series([_seed_text(s) for s in trials["seed"]], index=ids)
    clash = names.duplicated(keep=False).to_numpy()
    names[clash] = [f"{n} ({i})" for n, i in zip(names[clash], ids[clash])]
    return names.rename("name")


def started_trial_names(run_dir: Path | str) -> pd.Series:
    """:func:`trial_names` of the trials of a running study (their ``meta.json``); the
    seed is named when the study (``study.yaml``) trains several."""
    run_dir = Path(run_dir)
    rows = []
    for d in sorted(RunDir(run_dir).fragments.glob("*/")):
        meta = fragments.read_json(d / META_FILE)
        if meta is not None:
            rows.append({"trial_id": d.name, **{k: meta.get(k) for k in ("group", "arm", "seed")}})
    try:
        study = yaml.safe_load((run_dir / io.STUDY_FILE).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        study = {}
    seeds = (study.get("search") or {}).get("seeds") if isinstance(study, dict) else None
    return trial_names(pd.DataFrame(rows), several_seeds=True if isinstance(seeds, list) and len(seeds) > 1 else None)
