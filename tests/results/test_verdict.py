"""The plain-words summary (``vrsearch summary``): the best configuration chosen on
validation, its numbers against a baseline run from the statistics module, the
one-seed caveat, and one-line errors."""

from __future__ import annotations

import json
import re

import pandas as pd
from typer.testing import CliRunner

from tests.results.test_stats import synthetic
from tests.results.test_table import write_run
from vrsearch.cli import app
from vrsearch.results import io
from vrsearch.results import stats as S
from vrsearch.results.verdict import verdict, with_baseline

SEARCH = ("lambda_c=0.01", "lambda_c=0.1", "lambda_c=0.3")
EFFECT = {"lambda_c=0.01": 0.0, "lambda_c=0.1": 0.06, "lambda_c=0.3": -0.04}
STUDY = {"name": "qs", "method": {"name": "dvcl"}, "search": {"design": "search"}}


def make_runs(tmp_path, seeds=(0, 1, 2)):
    """A search run (three configurations, their knobs in ``cell``; the last one also has
    a stopped-early and the second a failed trial) and a one-configuration baseline run
    whose trial ids are the same strings as the search's first configuration's."""
    trials, cases = synthetic(groups=list(SEARCH), effect=EFFECT)
    trials["cell"] = [
        json.dumps({"method.params.lambda_c": float(g.split("=")[1]), "train.seed": 0}) for g in trials["group"]
    ]
    keep = trials["seed"].isin(seeds) | (trials["status"] != "completed")
    trials = trials[keep]
    cases = cases[cases["trial_id"].isin(trials["trial_id"])]
    search = write_run(tmp_path / "search", io.Results(trials, pd.DataFrame(), cases, STUDY))
    btrials, bcases = synthetic(groups=[SEARCH[0], "other"], effect={SEARCH[0]: -0.02}, seed=0)
    bkeep = btrials["seed"].isin(seeds) & (btrials["status"] == "completed") & (btrials["group"] == SEARCH[0])
    btrials = btrials[bkeep].assign(group="study", arm="", cell="{}")
    bcases = bcases[bcases["trial_id"].isin(btrials["trial_id"])]
    base = write_run(
        tmp_path / "base",
        io.Results(btrials, pd.DataFrame(), bcases, {"name": "labeled_only", "search": {"design": "none"}}),
    )
    return search, base


def test_best_is_chosen_on_validation_and_numbers_are_the_stats_modules(tmp_path):
    search, base = make_runs(tmp_path)
    lines = verdict(search, base)
    text = "\n".join(lines)
    combined = with_baseline(io.load(search), io.load(base), "labeled_only")
    # ids of the two runs coincided; after combining every trial id is distinct
    assert combined.trials["trial_id"].is_unique
    val = S.trial_metrics(combined.trials, combined.cases, "val").groupby("group")["dice"].mean()
    best = val.drop("labeled_only").idxmax()
    assert best == "lambda_c=0.1"  # the largest effect, and the failed trial's 0.99 did not count
    assert "best configuration (highest validation Dice, 3 trial(s)): lambda_c=0.1" in text
    head = S.headline_tests(combined.trials, combined.cases, "labeled_only", "val").set_index("group").loc[best]
    assert f"{100 * val[best]:.1f} % (best) vs {100 * val['labeled_only']:.1f} % (labeled_only)" in text
    assert f"difference {100 * head['mean_diff']:+.1f} points over 5 val cases" in text
    assert f"95 % CI [{100 * head['ci_low']:+.1f}, {100 * head['ci_high']:+.1f}] points" in text
    assert f"p = {head['p']:.3g}" in text
    assert re.search(r"^test Dice: ", text, re.M)  # the held-out split of the same trials
    assert lines[0].startswith("study qs (dvcl, design search): 11 trials: 9 completed, 1 stopped early, 1 failed")
    assert lines[1].startswith("baseline labeled_only (")


def test_one_seed_says_no_significance(tmp_path):
    search, base = make_runs(tmp_path, seeds=(0,))
    text = "\n".join(verdict(search, base))
    assert "1 seed: no seed-to-seed spread, so no confidence interval and no significance can be claimed" in text
    assert "95 % CI" not in text and "t-test" not in text


def test_ablation_run_against_its_own_baseline(tmp_path):
    trials, cases = synthetic()
    run = write_run(tmp_path / "abl", io.Results(trials, pd.DataFrame(), cases, {"name": "abl"}))
    lines = verdict(run)
    assert any(line.startswith("val Dice: ") and "(baseline)" in line for line in lines)
    assert "no completed baseline 'nope' to compare with" in verdict(run, baseline="nope")


def test_cli_summary_and_its_errors(tmp_path):
    search, base = make_runs(tmp_path)
    res = CliRunner().invoke(app, ["summary", str(search), "--baseline-run", str(base)])
    assert res.exit_code == 0, res.output
    assert "best configuration" in res.stdout and "labeled_only" in res.stdout
    res = CliRunner().invoke(app, ["summary", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "no such run directory" in res.output
    res = CliRunner().invoke(app, ["summary", str(search), "--baseline-run", str(base), "--baseline", "lambda_c=0.1"])
    assert res.exit_code == 2 and "already a group" in res.output
    res = CliRunner().invoke(app, ["summary", str(base), "--baseline-run", str(search)])  # a search is no baseline
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "the baseline run holds 3 configurations" in res.output


def test_cli_table_against_a_baseline_run(tmp_path):
    search, base = make_runs(tmp_path)
    res = CliRunner().invoke(app, ["table", str(search), "--baseline-run", str(base), "--split", "val"])
    assert res.exit_code == 0, res.output
    md = (search / "table_val.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert rows[1] == "labeled_only"  # the baseline row first, after the header


def test_a_baseline_run_on_other_cases_is_refused(tmp_path):
    """Per-case values pair only on one dataset and split: a baseline evaluated on other
    cases (another split seed, another dataset) is one line, not a silent pairing."""
    search, base = make_runs(tmp_path)
    cases = pd.read_parquet(base / "cases.parquet")
    cases["case_id"] = "other_" + cases["case_id"].astype(str)
    cases.to_parquet(base / "cases.parquet")
    res = CliRunner().invoke(app, ["summary", str(search), "--baseline-run", str(base)])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "cases differ from the run's" in res.output


def _with_kernels(run, *values: str):
    """Rewrite a run's trials.parquet with a ``kernels`` column, the values taken in turn row
    by row (none: without the column, as before it existed)."""
    res = io.load(run)
    trials = res.trials.drop(columns=["kernels"], errors="ignore")
    if values:
        trials = trials.assign(kernels=[values[i % len(values)] for i in range(len(trials))])
    write_run(run, io.Results(trials, res.history, res.cases, res.study))


def test_a_baseline_on_other_kernels_gets_a_note_and_equal_kernels_none(tmp_path):
    search, base = make_runs(tmp_path, seeds=(0,))
    note = "note: the two were not trained on one set of kernels"
    _with_kernels(search, "torch 2.13.0, cpu AVX2")
    _with_kernels(base, "torch 2.13.0, cpu AVX512")
    lines = verdict(search, base)
    [line] = [ln for ln in lines if note in ln]
    assert "best: torch 2.13.0, cpu AVX2; labeled_only: torch 2.13.0, cpu AVX512" in line
    assert lines.index(line) == next(i for i, ln in enumerate(lines) if ln.startswith("  (validation Dice")) + 1
    _with_kernels(base, "torch 2.13.0, cpu AVX2")
    assert not any(note in ln for ln in verdict(search, base))
    # equal sets, but mixed (trials on nodes of two kinds): seed-by-seed pairs may still differ
    search, base = make_runs(tmp_path / "mixed")  # three seeds a group, on nodes of two kinds
    _with_kernels(search, "torch 2.13.0, cpu AVX2", "torch 2.13.0, cpu AVX512")
    _with_kernels(base, "torch 2.13.0, cpu AVX512", "torch 2.13.0, cpu AVX2")
    assert sum(note in ln for ln in verdict(search, base)) == 1
    _with_kernels(base)  # a run written before the column: nothing to say
    assert not any(note in ln for ln in verdict(search, base))
