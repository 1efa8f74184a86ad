"""Issue 7 end to end through real Ray on the tiny phantom: an ablation (2 arms × 2
seeds) whose table — the headline test over seeds, the case-level view, per-class
Dice and empty-mask counts — is checked against pandas/scipy computed here directly
from cases.parquet, grown by one seed (exactly the new cells run), and a seed-aware
search (the searcher hears the mean over seeds)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import yaml

from tests.e2e.test_cli import assert_one_line_error, cli
from vrsearch.results import io

pytestmark = pytest.mark.slow


def started_trials(run) -> dict[str, tuple[int, str]]:
    """Every trial that ever started (it writes meta.json first) → its result.json stamp."""
    out = {}
    for meta in (run / "trials").glob("*/meta.json"):
        res = meta.parent / "result.json"
        out[meta.parent.name] = (res.stat().st_mtime_ns, res.read_text()) if res.exists() else (0, "")
    return out


def detectable(sd: float, n: int, alpha: float = 0.05, power: float = 0.80) -> float:
    """Reference MDD: bisection on the power of the two-sided one-sample t-test (noncentral t)."""
    df, crit = n - 1, scipy.stats.t.ppf(1 - alpha / 2, n - 1)
    low, high = 0.0, 1000.0
    for _ in range(200):
        nc = (low + high) / 2
        if scipy.stats.nct.sf(crit, df, nc) < power:
            low = nc
        else:
            high = nc
    return nc * sd / np.sqrt(n)


def test_ablation_table_matches_pandas_and_scipy(ablation_run):
    tmp, _, run, _ = ablation_run
    trials = pd.read_parquet(run / "trials.parquet")
    assert sorted(zip(trials.arm, trials.seed)) == [("baseline", 0), ("baseline", 1), ("ce_only", 0), ("ce_only", 1)]
    assert (trials.status == "completed").all() and trials.group.tolist() == trials.arm.tolist()
    proc = cli("table", run, "--out", tmp / "tables")
    assert proc.returncode == 0, proc.stderr
    csv = pd.read_csv(tmp / "tables" / "table.csv").set_index("group")
    assert list(csv.index) == ["baseline", "ce_only"]

    cases = pd.read_parquet(run / "cases.parquet")
    test = cases[cases.split == "test"].merge(
        trials[["trial_id", "arm", "seed", "best_iteration", "n_test"]], on="trial_id"
    )
    # protocol: test metrics once per trial, for the checkpoint selected on validation
    assert (test.iteration == test.best_iteration).all()
    assert (
        test.groupby("trial_id").size() == test.groupby("trial_id").n_test.first() * test.class_index.nunique()
    ).all()
    per_trial = test.groupby(["arm", "seed"]).dice.mean()  # a trial's Dice: NaN-mean over its (case, class) rows
    for arm in ["baseline", "ce_only"]:
        x = per_trial[arm].to_numpy()
        half = scipy.stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        assert csv.loc[arm, "dice_mean"] == pytest.approx(x.mean(), abs=1e-9)
        assert csv.loc[arm, "dice_ci95"] == pytest.approx(half, abs=1e-9)
        mine = test[test.arm == arm]
        by_class = mine.groupby(["seed", "class_name"]).dice.mean().groupby("class_name").mean()
        for name, value in by_class.items():
            assert csv.loc[arm, f"dice/{name}"] == pytest.approx(value, abs=1e-9)
            rows = mine[mine.class_name == name]
            assert csv.loc[arm, f"pred_empty/{name}"] == rows.pred_empty.sum()
            assert csv.loc[arm, f"label_empty/{name}"] == rows.label_empty.sum()

    # headline: paired t over the seeds both arms share, on each trial's test Dice
    arm, base = per_trial["ce_only"], per_trial["baseline"]
    seeds = sorted(set(arm.index) & set(base.index))
    ref = scipy.stats.ttest_rel(arm[seeds], base[seeds])
    ci = ref.confidence_interval(0.95)
    d = (arm[seeds] - base[seeds]).to_numpy()
    row = csv.loc["ce_only"]
    assert row["n_seeds"] == len(seeds) == 2 and row["n_cases"] == trials.n_test.iloc[0]
    assert row["delta"] == pytest.approx(d.mean()) and row["p"] == pytest.approx(ref.pvalue)
    assert row["p_holm"] == pytest.approx(ref.pvalue)  # one arm: Holm changes nothing
    assert (row["delta_low"], row["delta_high"]) == pytest.approx((ci.low, ci.high))
    assert row["mdd"] == pytest.approx(detectable(d.std(ddof=1), len(seeds)), rel=1e-6)
    # case-level view: per case the mean over the shared seeds, Wilcoxon over cases
    per_case = test.groupby(["arm", "case_id", "seed"]).dice.mean().groupby(["arm", "case_id"]).mean()
    diffs = (per_case["ce_only"] - per_case["baseline"]).dropna()
    assert row["case_n_cases"] == len(diffs) and row["case_delta"] == pytest.approx(diffs.mean())
    if np.count_nonzero(diffs) >= 2:
        assert row["case_p"] == pytest.approx(scipy.stats.wilcoxon(diffs).pvalue)
    md = (tmp / "tables" / "table.md").read_text()
    assert md.index("### Headline") < md.index("### Case-level view: on these trained models")
    assert "ce_only" in md and "**" in md and "2 seeds both groups share" in md


def test_growing_by_one_seed_runs_exactly_the_new_cells(ablation_run):
    _, study, run, _ = ablation_run
    before = started_trials(run)
    raw = yaml.safe_load(study.read_text())
    raw["search"]["seeds"] = [0, 1, 2]
    study.write_text(yaml.safe_dump(raw))
    proc = cli("run", study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 new trials, 4 finished trials reused" in proc.stdout
    after = started_trials(run)
    assert len(after) == 6 and {k: after[k] for k in before} == before  # old trials untouched, 2 executed
    trials = pd.read_parquet(run / "trials.parquet")
    assert sorted(zip(trials.arm, trials.seed)) == sorted((a, s) for a in ["baseline", "ce_only"] for s in [0, 1, 2])
    assert (run / "tune-2").is_dir()
    again = cli("run", study)  # nothing left to add: the same study is a finished run
    assert_one_line_error(again, "already holds a run of this study")
    raw["train"]["iterations"] = 9
    study.write_text(yaml.safe_dump(raw))
    refused = cli("run", study)
    assert_one_line_error(refused, "train.iterations: 6 -> 9", "not be comparable")
    assert started_trials(run) == after


def test_seed_aware_search_reports_the_mean_over_seeds(search_run):
    tmp_path = search_run
    trials = io.load(tmp_path / "run").trials
    assert len(trials) == 4 and (trials.status == "completed").all()
    lr = trials.cell.map(lambda c: json.loads(c)["train.optimizer.lr"])
    groups = trials.assign(lr=lr).groupby("lr")
    assert groups.seed.apply(sorted).tolist() == [[0, 1], [0, 1]]  # each configuration once per seed
    assert groups.group_hash.nunique().eq(1).all()
    with sqlite3.connect(tmp_path / "run" / "optuna.db") as db:
        rows = db.execute(
            "select p.param_value, v.value from trials t join trial_values v using (trial_id) "
            "join trial_params p using (trial_id) where t.state = 'COMPLETE'"
        ).fetchall()
    assert len(rows) == 2  # Optuna saw two configurations, not four trials
    for param, value in rows:
        mine = trials[np.isclose(lr, param)]
        assert len(mine) == 2 and value == pytest.approx(mine.final_val_dice.mean())
