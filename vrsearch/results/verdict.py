"""What a run found, in plain words: the best configuration against a baseline.

:func:`verdict` reads a run's results (and optionally a second run that holds the
baseline, e.g. the labeled-only UNet trained next to a search) and returns the
lines ``vrsearch summary`` prints:

* what ran: trials by status (``stopped_early`` = ended by the scheduler, ASHA);
* the best configuration: the completed group with the highest mean validation
  Dice (:func:`~vrsearch.results.summary.select_best` protocol: selection on
  validation only), its knobs and trials;
* its validation Dice against the baseline with the headline test of
  :mod:`vrsearch.results.stats` (paired over shared seeds: Δ, 95 % CI, p). With
  one seed there is no seed-to-seed spread, so no CI and no significance can be
  claimed, and the summary says so; the case-level Wilcoxon is shown as what it
  is, a statement about these trained models. The validation Dice of a
  configuration chosen *on* validation is optimistic (it won a selection), so
  the held-out test Dice of the same trials is printed next to it;
* a note when the two were trained on different numeric kernels (trials.parquet
  ``kernels``), where equal seeds no longer give equal numbers;
* where the report and the tables are.

Comparing two run directories follows the recipe of :mod:`vrsearch.results.stats`:
their trials and cases are concatenated after the baseline run's completed trials
get one ``group`` (the name it is shown under).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results.rundir import REPORT_FILE
from vrsearch.results.stats import case_level_tests, headline_tests, trial_metrics
from vrsearch.results.summary import group_labels, kernels_by_group

BASELINE = "baseline"


def with_baseline(results: io.Results, baseline: io.Results, name: str) -> io.Results:
    """``results`` plus the trials and cases of another run, every trial of which is
    put in group ``name`` (the baseline run must be one configuration)."""
    if name in set(group_labels(results.trials)):
        raise VrsearchError(f"group {name!r} is already a group of the run; name the baseline with --baseline")
    done = baseline.trials[baseline.trials["status"] == "completed"] if "status" in baseline.trials else baseline.trials
    if group_labels(done).nunique() > 1:
        raise VrsearchError(
            f"the baseline run holds {group_labels(done).nunique()} configurations; --baseline-run "
            "takes a run of one (a study with design 'none')"
        )
    _check_same_cases(results.cases, baseline.cases)
    tag = f"{name}/"  # trial ids of two runs may coincide
    other = baseline.trials.assign(group=name, arm=name, trial_id=tag + baseline.trials["trial_id"].astype(str))
    other_cases = baseline.cases.assign(trial_id=tag + baseline.cases["trial_id"].astype(str))
    trials = pd.concat([results.trials, other], ignore_index=True)
    cases = pd.concat([results.cases, other_cases], ignore_index=True)
    return io.Results(trials, results.history, cases, results.study, results.conventions)


def _check_same_cases(cases: pd.DataFrame, baseline: pd.DataFrame) -> None:
    """The two runs were evaluated on the same cases of each split (one dataset, one
    split): otherwise their per-case values cannot be paired."""
    for split in sorted(set(cases["split"]) & set(baseline["split"])):
        mine = set(cases.loc[cases["split"] == split, "case_id"])
        theirs = set(baseline.loc[baseline["split"] == split, "case_id"])
        if mine != theirs:
            raise VrsearchError(
                f"the baseline run's {split} cases differ from the run's ({len(mine ^ theirs)} not "
                "shared): --baseline-run needs a run on the same dataset and split"
            )


def load_with_baseline(
    run_dir: Path | str, baseline_run: Path | str, name: str | None = None
) -> tuple[io.Results, str]:
    """``run_dir``'s results with ``baseline_run``'s trials as group ``name`` (default:
    the baseline run's study name), and that name."""
    other = io.load(baseline_run)
    name = name or (other.study or {}).get("name") or BASELINE
    return with_baseline(io.load(run_dir), other, name), name


def _knobs(trials: pd.DataFrame, group: str) -> str:
    """The searched knobs of ``group`` as ``key=value`` (the ``cell`` of its first trial)."""
    rows = trials.loc[group_labels(trials) == group]
    cell = rows["cell"].dropna().iloc[0] if "cell" in rows and rows["cell"].notna().any() else ""
    try:
        knobs = json.loads(cell) if cell else {}
    except (TypeError, ValueError):
        return group
    if knobs.get("arm"):  # an ablation arm: its name says what it sets
        return group
    parts = [
        f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
        for k, v in knobs.items()
        if k not in ("train.seed", "arm", "group", "optuna_trial")
    ]
    return ", ".join(parts) or group


def _status_line(trials: pd.DataFrame) -> str:
    counts = trials["status"].value_counts() if len(trials) else pd.Series(dtype=int)
    parts = [f"{int(counts[s])} {s.replace('_', ' ')}" for s in ("completed", "stopped_early", "failed") if s in counts]
    line = f"{len(trials)} trial{'s' if len(trials) != 1 else ''}: " + ", ".join(parts or ["none finished"])
    if "stopped_early" in counts:
        line += " (stopped early = ended by the scheduler at a rung, not trained to the end)"
    return line


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if math.isfinite(x) else "n/a"


def _comparison(trials: pd.DataFrame, cases: pd.DataFrame, best: str, base: str, split: str) -> list[str]:
    """Best vs baseline on ``split``: means over seeds, the headline test, the case-level view."""
    metrics = trial_metrics(trials, cases, split)
    mean = metrics.groupby("group")["dice"].mean()
    head = headline_tests(trials, cases, base, split)
    head = head.loc[head["group"] == best].iloc[0]
    case = case_level_tests(trials, cases, base, split)
    case = case.loc[case["group"] == best].iloc[0]
    lines = [
        f"{split} Dice: {_pct(mean.get(best, math.nan))} (best) vs {_pct(mean.get(base, math.nan))} "
        f"({base}), difference {100 * head['mean_diff']:+.1f} points over {int(head['n_cases'])} {split} cases"
    ]
    n = int(head["n_seeds"])
    if n >= 2:
        lines.append(
            f"  over {n} shared seeds: 95 % CI [{100 * head['ci_low']:+.1f}, {100 * head['ci_high']:+.1f}] "
            f"points, paired t-test p = {head['p']:.3g}" + ("" if head["p"] < 0.05 else " (not significant at 0.05)")
        )
    else:
        lines.append(
            f"  {n} seed: no seed-to-seed spread, so no confidence interval and no significance can "
            "be claimed (run more seeds: search.seeds)"
        )
    if math.isfinite(case["p"]):
        lines.append(
            f"  on these trained models only: Wilcoxon over {int(case['n_cases'])} cases p = "
            f"{case['p']:.3g}, rank-biserial {case['rank_biserial']:+.2f}"
        )
    return lines


def _kernels_note(trials: pd.DataFrame, best: str, base: str) -> list[str]:
    """A line when the best group and the baseline were not all trained on one set of numeric
    kernels (trials.parquet ``kernels``: another CPU instruction set, GPU or PyTorch; mixed
    within a group too), where equal seeds no longer give equal numbers."""
    by_group = kernels_by_group(trials)
    ours, theirs = by_group.get(best, set()), by_group.get(base, set())
    if not ours or not theirs or len(ours | theirs) < 2:
        return []
    return [
        f"  note: the two were not trained on one set of kernels (best: {'; '.join(sorted(ours))}; {base}: "
        f"{'; '.join(sorted(theirs))}); equal seeds give equal numbers only on equal kernels, so part "
        "of the difference is the order of float sums, not the method (README: Reproducibility)"
    ]


def _best_group(trials: pd.DataFrame, cases: pd.DataFrame, exclude: str) -> str:
    metrics = trial_metrics(trials, cases, "val")
    means = metrics.loc[metrics["group"] != exclude].groupby("group")["dice"].mean().dropna()
    if means.empty:
        raise VrsearchError("no completed trial with validation metrics yet")
    return str(means.idxmax())


def verdict(run_dir: Path | str, baseline_run: Path | str | None = None, baseline: str | None = None) -> list[str]:
    """The plain-words summary of ``run_dir`` (see the module docstring). ``baseline``
    names the baseline group (default ``baseline``; with ``baseline_run``, the group
    its trials are put in, default its study's name)."""
    results = io.load(run_dir)
    study = results.study or {}
    lines = [
        f"study {study.get('name', run_dir)} ({(study.get('method') or {}).get('name', '?')}, design "
        f"{(study.get('search') or {}).get('design', '?')}): {_status_line(results.trials)}"
    ]
    if baseline_run is not None:
        n_own = len(results.trials)
        results, base = load_with_baseline(run_dir, baseline_run, baseline)
        lines.append(f"baseline {base} ({baseline_run}): {_status_line(results.trials.iloc[n_own:])}")
    else:
        base = baseline or BASELINE
    trials, cases = results.trials, results.cases
    best = _best_group(trials, cases, base)
    n_best = int(((group_labels(trials) == best) & (trials["status"] == "completed")).sum())
    lines.append(f"best configuration (highest validation Dice, {n_best} trial(s)): {_knobs(trials, best)}")
    if base not in set(group_labels(trials[trials["status"] == "completed"])):
        lines.append(f"no completed baseline {base!r} to compare with")
    else:
        lines += _comparison(trials, cases, best, base, "val")
        lines.append(
            "  (validation Dice of the configuration chosen on validation is optimistic: it won a "
            "selection; the test split was not used to choose)"
        )
        lines += _kernels_note(trials, best, base)
        if trial_metrics(trials, cases, "test")["dice"].notna().any():
            lines += _comparison(trials, cases, best, base, "test")[:1]
    report = Path(run_dir) / REPORT_FILE
    if report.exists():
        lines.append(f"report: {report}")
    return lines
