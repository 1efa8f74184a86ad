"""Issue 7 end to end through real Ray on the tiny phantom: an ablation (2 arms × 2
seeds) whose table and paired tests are checked against pandas/scipy computed
directly from cases.parquet, grown by one seed (exactly the new cells run), and
a seed-aware search (the searcher hears the mean over seeds)."""

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


def case_means(run) -> pd.DataFrame:
    """Per (arm, seed, case): mean test Dice over classes, straight from the parquet files."""
    trials, cases = pd.read_parquet(run / "trials.parquet"), pd.read_parquet(run / "cases.parquet")
    test = cases[cases.split == "test"].merge(trials[["trial_id", "arm", "seed"]], on="trial_id")
    return test.groupby(["arm", "seed", "case_id"]).dice.mean().reset_index()


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
    test = cases[cases.split == "test"].merge(trials[["trial_id", "arm", "seed", "best_iteration", "n_test"]],
                                              on="trial_id")
    # protocol: test metrics once per trial, for the checkpoint selected on validation
    assert (test.iteration == test.best_iteration).all()
    assert (test.groupby("trial_id").size() == test.groupby("trial_id").n_test.first() * test.class_index.nunique()).all()
    per_trial = test.groupby(["arm", "seed"]).dice.mean()  # a trial's Dice: mean over its (case, class) rows
    for arm in ["baseline", "ce_only"]:
        x = per_trial[arm].to_numpy()
        half = scipy.stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
        assert csv.loc[arm, "dice_mean"] == pytest.approx(x.mean(), abs=1e-9)
        assert csv.loc[arm, "dice_ci95"] == pytest.approx(half, abs=1e-9)
        by_class = test[test.arm == arm].groupby(["seed", "class_name"]).dice.mean().groupby("class_name").mean()
        for name, value in by_class.items():
            assert csv.loc[arm, f"dice/{name}"] == pytest.approx(value, abs=1e-9)

    pairs = case_means(run).pivot_table(index=["seed", "case_id"], columns="arm", values="dice")
    expected = scipy.stats.wilcoxon(pairs["ce_only"], pairs["baseline"])
    assert csv.loc["ce_only", "p"] == pytest.approx(expected.pvalue)
    assert csv.loc["ce_only", "mean_diff"] == pytest.approx((pairs["ce_only"] - pairs["baseline"]).mean())
    md = (tmp / "tables" / "table.md").read_text()
    assert "ce_only" in md and "**" in md


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
        rows = db.execute("select p.param_value, v.value from trials t join trial_values v using (trial_id) "
                          "join trial_params p using (trial_id) where t.state = 'COMPLETE'").fetchall()
    assert len(rows) == 2  # Optuna saw two configurations, not four trials
    for param, value in rows:
        mine = trials[np.isclose(lr, param)]
        assert len(mine) == 2 and value == pytest.approx(mine.final_val_dice.mean())
