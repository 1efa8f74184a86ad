"""The ablation table: row order, renderers, files and the ``vrsearch table`` command."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.table import Table
from typer.testing import CliRunner

from vrsearch.cli import app
from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results import stats as S
from vrsearch.results.table import ablation_table, latex_escape, stars, write_table

from tests.results.test_stats import synthetic

STUDY = {"name": "abl", "search": {"design": "ablation", "arms": [{"name": "no_mem", "set": {"a": 1}},
                                                                   {"name": "no_dvcl", "set": {"b": 2}}]}}


def results(groups=("baseline", "no_dvcl", "no_mem"), study=STUDY, **kw) -> io.Results:
    trials, cases = synthetic(groups=list(groups), **kw)
    return io.Results(trials=trials, history=pd.DataFrame(), cases=cases, study=study)


def write_run(path, res: io.Results):
    io.write_frame(path / io.TRIALS_FILE, res.trials)
    io.write_frame(path / io.CASES_FILE, res.cases)
    (path / io.STUDY_FILE).write_text(yaml.safe_dump(res.study))
    return path


def test_rows_in_study_order_then_sorted():
    res = results(groups=("zeta", "no_dvcl", "alpha", "no_mem", "baseline"))
    tab = ablation_table(res)
    assert tab.frame["group"].tolist() == ["baseline", "no_mem", "no_dvcl", "alpha", "zeta"]
    assert tab.baseline == "baseline"
    assert math.isnan(tab.frame.loc[0, "p_holm"]) and tab.frame.loc[0, "dice_delta"] == 0


def test_baseline_default_and_errors():
    tab = ablation_table(results(groups=("b2", "a1"), study={}))
    assert tab.baseline == "a1" and tab.frame["group"].tolist() == ["a1", "b2"]
    tab = ablation_table(results(), baseline="no_mem")
    assert tab.frame["group"].tolist()[0] == "no_mem" and tab.frame.loc[0, "dice_delta"] == 0
    with pytest.raises(VrsearchError, match="baseline 'nope' is not a group"):
        ablation_table(results(), baseline="nope")


def test_frame_numbers_equal_stats():
    res = results()
    tab = ablation_table(res)
    summary = S.summarize(S.trial_metrics(res.trials, res.cases)).set_index(["group", "metric"])
    tests = S.paired_tests(res.trials, res.cases).set_index("group")
    budget = S.budget(res.trials).set_index("group")
    assert tab.classes == ["liver", "spleen", "pancreas"]
    for row in tab.frame.to_dict("records"):
        g = row["group"]
        assert row["n"] == summary.loc[(g, "dice"), "n"] == 3
        assert row["dice_mean"] == summary.loc[(g, "dice"), "mean"]
        assert row["dice_ci95"] == summary.loc[(g, "dice"), "ci95"]
        assert row["dice/spleen"] == summary.loc[(g, "dice/spleen"), "mean"]
        assert row["hd95_mm_mean"] == summary.loc[(g, "hd95_mm"), "mean"]
        assert row["trials"] == budget.loc[g, "trials"] and row["iterations"] == budget.loc[g, "iterations_sum"]
        if g != "baseline":
            assert row["p_holm"] == tests.loc[g, "p_holm"]
            assert row["sig"] == stars(row["p_holm"])
    assert tab.frame.set_index("group").loc["no_dvcl", "sig"] == "***"


def test_stars_thresholds():
    assert [stars(p) for p in (0.0005, 0.005, 0.03, 0.05, math.nan)] == ["***", "**", "*", "", ""]


def test_markdown_bolds_best_per_column():
    tab = ablation_table(results())
    md = tab.to_markdown()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    body = {row[0]: row for row in ([c.strip() for c in line.strip("|").split("|")] for line in lines[1:])}
    assert list(body) == ["baseline", "no_mem", "no_dvcl"]
    dice_col, hd_col = header.index("Dice (%) ± CI"), header.index("HD95 (mm)")
    best_dice = tab.frame.loc[tab.frame["dice_mean"].idxmax(), "group"]
    best_hd = tab.frame.loc[tab.frame["hd95_mm_mean"].idxmin(), "group"]
    for g, row in body.items():
        assert row[dice_col].startswith("**") == (g == best_dice), row[dice_col]
        assert row[hd_col].startswith("**") == (g == best_hd), row[hd_col]
    mean = 100 * tab.frame.set_index("group").loc[best_dice, "dice_mean"]
    assert re.match(rf"\*\*{mean:.1f} ± \d+\.\d\*\*", body[best_dice][dice_col])
    assert body["no_dvcl"][header.index("sig")] == r"\*\*\*"  # escaped, not bold markup
    assert "Dice/Jaccard in %" in md


def test_latex_escaping_and_booktabs():
    assert latex_escape("a_b 5% R&D") == r"a\_b 5\% R\&D"
    res = results(groups=("baseline", "no_dvcl", "x&y_50%"))
    tex = ablation_table(res).to_latex()
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}"):
        assert cmd in tex
    assert r"x\&y\_50\%" in tex and r"no\_dvcl" in tex and r"Dice (\%) $\pm$ CI" in tex
    for line in tex.splitlines():
        if not line.startswith("%"):  # outside comments no unescaped specials
            assert not re.search(r"(?<!\\)[%&_]", line.replace(" & ", " ")), line
    assert r"\textbf{" in tex


def test_csv_round_trip_equals_summarize(tmp_path):
    res = results()
    tab = ablation_table(res)
    back = pd.read_csv(tab.to_csv(tmp_path / "t.csv"), keep_default_na=False, na_values=[""])
    summary = S.summarize(S.trial_metrics(res.trials, res.cases)).set_index(["group", "metric"])
    assert back["group"].tolist() == ["baseline", "no_mem", "no_dvcl"]
    for row in back.to_dict("records"):
        for col, metric in (("dice_mean", "dice"), ("jaccard_mean", "jaccard"), ("dice/liver", "dice/liver")):
            assert row[col] == pytest.approx(summary.loc[(row["group"], metric), "mean"], rel=1e-15)
        assert row["dice_ci95"] == pytest.approx(summary.loc[(row["group"], "dice"), "ci95"], rel=1e-15)
    assert 0 < back["dice_mean"].max() <= 1  # fractions in the CSV, not percent


def test_rich_table_shape():
    tab = ablation_table(results())
    rich = tab.to_rich()
    assert isinstance(rich, Table)
    assert rich.row_count == 3 and len(rich.columns) == len(tab.columns())


def test_write_table_files_and_no_metrics_error(tmp_path):
    res = results()
    run = write_run(tmp_path / "run", res)
    paths = write_table(run)
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv"]
    assert all(p.parent == run and p.stat().st_size > 0 for p in paths)
    out = write_table(run, tmp_path / "out")
    assert all(p.parent == tmp_path / "out" and p.exists() for p in out)
    empty = write_run(tmp_path / "empty", io.Results(res.trials.assign(status="running"), pd.DataFrame(),
                                                     res.cases.iloc[0:0], STUDY))
    with pytest.raises(VrsearchError) as err:
        write_table(empty)
    assert str(err.value) == f"{empty}: no completed trials with test metrics yet"


def test_cli_table(tmp_path):
    run = write_run(tmp_path / "run", results())
    runner = CliRunner()
    res = runner.invoke(app, ["table", str(run), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "no_dvcl" in res.output and f"written {tmp_path / 'o' / 'table.md'}" in res.output
    assert (tmp_path / "o" / "table.csv").exists()
    res = runner.invoke(app, ["table", str(run), "--split", "val", "--baseline", "no_mem"])
    assert res.exit_code == 0, res.output
    val = pd.read_csv(run / "table_val.csv")
    assert val["group"].tolist()[0] == "no_mem"
    assert not np.allclose(val["dice_mean"], pd.read_csv(tmp_path / "o" / "table.csv")["dice_mean"])


def test_cli_table_bad_run_dir(tmp_path):
    res = CliRunner().invoke(app, ["table", str(tmp_path / "missing")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [f"error: {tmp_path / 'missing'}: no such run directory"]
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_axes_give_one_table_per_setting_comparing_arms_at_that_setting(tmp_path):
    """An ablation crossed with labeled ratios: each ratio's arms against that ratio's baseline."""
    from vrsearch.results.table import load_tables

    rng = np.random.default_rng(5)
    trials, cases = [], []
    for ratio in (0.1, 0.5):
        for arm in ("baseline", "arm"):
            for seed in (0, 1, 2):
                tid = f"{arm}-{ratio}-{seed}"
                trials.append({"trial_id": tid, "status": "completed", "seed": seed, "arm": arm,
                               "group": f"{arm}, labeled_ratio={ratio:.4g}", "config.dataset.labeled_ratio": ratio})
                for case in range(4):
                    for ci, name in enumerate(["liver", "spleen"], 1):
                        cases.append({"trial_id": tid, "split": "test", "case_id": f"c{case}", "class_index": ci,
                                      "class_name": name, "dice": ratio + rng.uniform(0, 0.2) + 0.1 * (arm == "arm"),
                                      "jaccard": 0.5, "hd95_mm": 3.0, "asd_mm": 1.0})
    run = tmp_path / "run"
    io.write_frame(run / io.TRIALS_FILE, io.frame(trials, io.TRIAL_COLUMNS))
    io.write_frame(run / io.CASES_FILE, io.frame(cases, io.CASE_COLUMNS))
    (run / io.STUDY_FILE).write_text(yaml.safe_dump({"name": "x", "search": {
        "design": "ablation", "arms": [{"name": "arm", "set": {}}], "axes": {"dataset.labeled_ratio": [0.1, 0.5]}}}))
    tables = load_tables(run)
    assert [t.slice for t in tables] == ["labeled_ratio=0.1", "labeled_ratio=0.5"]
    c = pd.DataFrame(cases).merge(pd.DataFrame(trials), on="trial_id")
    for t, ratio in zip(tables, (0.1, 0.5)):
        assert t.frame.group.tolist() == ["baseline", "arm"]
        mine = c[c["config.dataset.labeled_ratio"] == ratio].groupby(["arm", "seed"]).dice.mean()
        assert t.frame.set_index("group").loc["arm", "dice_mean"] == pytest.approx(mine["arm"].mean())
        assert t.frame.set_index("group").loc["baseline", "dice_mean"] == pytest.approx(mine["baseline"].mean())
    paths = write_table(run)
    assert {p.name for p in paths} >= {"table_labeled_ratio=0.1.md", "table_labeled_ratio=0.5.csv"}
