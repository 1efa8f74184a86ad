"""The ablation table: row order, renderers, files and the ``vrsearch table`` command."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.results.test_stats import synthetic
from vrsearch.cli import app
from vrsearch.data.flare22 import FLARE22_LABELS
from vrsearch.errors import VrsearchError
from vrsearch.results import io
from vrsearch.results import stats as S
from vrsearch.results.table import ablation_table, stars, write_table
from vrsearch.results.table_view import latex_escape

STUDY = {
    "name": "abl",
    "search": {
        "design": "ablation",
        "arms": [{"name": "no_mem", "set": {"a": 1}}, {"name": "no_dvcl", "set": {"b": 2}}],
    },
}


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
    assert math.isnan(tab.frame.loc[0, "p_holm"]) and math.isnan(tab.frame.loc[0, "delta"])


def test_baseline_default_and_errors():
    tab = ablation_table(results(groups=("b2", "a1"), study={}))
    assert tab.baseline == "a1" and tab.frame["group"].tolist() == ["a1", "b2"]
    tab = ablation_table(results(), baseline="no_mem")
    assert tab.frame["group"].tolist()[0] == "no_mem" and math.isnan(tab.frame.loc[0, "delta"])
    f = tab.frame.set_index("group")
    assert f.loc["baseline", "delta"] == pytest.approx(f.loc["baseline", "dice_mean"] - f.loc["no_mem", "dice_mean"])
    with pytest.raises(VrsearchError, match="baseline 'nope' is not a group"):
        ablation_table(results(), baseline="nope")


def test_frame_numbers_equal_stats():
    res = results()
    tab = ablation_table(res)
    summary = S.summarize(S.trial_metrics(res.trials, res.cases)).set_index(["group", "metric"])
    head = S.headline_tests(res.trials, res.cases).set_index("group")
    view = S.case_level_tests(res.trials, res.cases).set_index("group")
    counts = S.empty_counts(res.trials, res.cases).set_index(["group", "class"])
    budget = S.budget(res.trials).set_index("group")
    assert tab.classes == ["liver", "spleen", "pancreas"]
    for row in tab.frame.to_dict("records"):
        g = row["group"]
        assert row["n"] == summary.loc[(g, "dice"), "n"] == 3
        assert row["dice_mean"] == summary.loc[(g, "dice"), "mean"]
        assert row["dice_ci95"] == summary.loc[(g, "dice"), "ci95"]
        assert row["dice/spleen"] == summary.loc[(g, "dice/spleen"), "mean"]
        for m in S.METRICS[1:]:
            assert row[f"{m}_mean"] == summary.loc[(g, m), "mean"]
        assert row["pred_empty/pancreas"] == counts.loc[(g, "pancreas"), "pred_empty"]
        assert row["label_empty/pancreas"] == counts.loc[(g, "pancreas"), "label_empty"] == 3
        assert row["rows_per_class"] == 15
        assert row["trials"] == budget.loc[g, "trials"] and row["iterations"] == budget.loc[g, "iterations_sum"]
        if g != "baseline":
            for key, ref in (
                ("delta", "mean_diff"),
                ("delta_low", "ci_low"),
                ("delta_high", "ci_high"),
                ("p", "p"),
                ("p_holm", "p_holm"),
                ("mdd", "mdd"),
                ("n_seeds", "n_seeds"),
            ):
                assert row[key] == head.loc[g, ref], key
            assert row["delta_ci95"] == pytest.approx((head.loc[g, "ci_high"] - head.loc[g, "ci_low"]) / 2)
            assert row["sig"] == stars(row["p_holm"])
            for key in ("p_holm", "rank_biserial", "n_cases"):
                assert row[f"case_{key}"] == view.loc[g, key]
            assert row["case_delta"] == view.loc[g, "mean_diff"]
    frame = tab.frame.set_index("group")
    assert frame.loc["no_dvcl", "sig"] == "***" and frame.loc["no_mem", "sig"] == ""
    assert frame.loc["no_mem", "pred_empty/spleen"] == 1  # the missed spleen is visible
    # balanced seeds and cases: Δ is the difference of the groups' mean Dice shown next to it
    assert frame.loc["no_dvcl", "delta"] == pytest.approx(
        frame.loc["no_dvcl", "dice_mean"] - frame.loc["baseline", "dice_mean"]
    )


def test_stars_thresholds():
    assert [stars(p) for p in (0.0005, 0.005, 0.03, 0.05, math.nan)] == ["***", "**", "*", "", ""]


def markdown_sections(md: str) -> dict[str, tuple[list[str], dict[str, list[str]]]]:
    """{section title: (header, {group: cells})} of a table.md."""
    out, title = {}, None
    for line in md.splitlines():
        if line.startswith("### "):
            title, header = line[4:], None
        elif line.startswith("| ") and title:
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = cells
                out[title] = (header, {})
            else:
                out[title][1][cells[0]] = cells
    return out


def test_markdown_headline_first_bolds_best_and_keeps_everything():
    tab = ablation_table(results())
    md = tab.to_markdown()
    sections = markdown_sections(md)
    assert list(sections) == [s.title for s in tab.sections()]
    header, body = sections["Headline: each arm vs the baseline over seeds"]
    assert header == [
        "Group",
        "n",
        "Dice (%) ± CI",
        "Δ Dice (pp) ± CI",
        "p (Holm)",
        "MDD (pp)",
        "Seeds × cases",
        "Iterations",
        "Wall (h)",
        "Trials",
        "Device (h)",
    ]
    assert list(body) == ["baseline", "no_mem", "no_dvcl"]
    other_header, other = sections["Other metrics"]
    dice_col, hd_col = header.index("Dice (%) ± CI"), other_header.index("HD95 (mm)")
    best_dice = tab.frame.loc[tab.frame["dice_mean"].idxmax(), "group"]
    best_hd = tab.frame.loc[tab.frame["hd95_mm_mean"].idxmin(), "group"]
    for g, row in body.items():
        assert row[dice_col].startswith("**") == (g == best_dice), row[dice_col]
        assert other[g][hd_col].startswith("**") == (g == best_hd), other[g][hd_col]
    assert body["no_dvcl"][header.index("Seeds × cases")] == "3 × 5" and body["baseline"][6] == "-"
    f = tab.frame.set_index("group")
    mean = 100 * f.loc[best_dice, "dice_mean"]
    assert re.match(rf"\*\*{mean:.1f} ± \d+\.\d\*\*", body[best_dice][dice_col])
    delta, half = 100 * f.loc["no_dvcl", "delta"], 100 * f.loc["no_dvcl", "delta_ci95"]
    assert body["no_dvcl"][header.index("Δ Dice (pp) ± CI")] == f"{delta:+.1f} ± {half:.1f}"
    p_mem = f.loc["no_mem", "p_holm"]
    assert body["no_dvcl"][header.index("p (Holm)")] == r"<0.001 \*\*\*" and 0.05 < p_mem  # escaped stars
    assert body["no_mem"][header.index("p (Holm)")] == f"{p_mem:.3f}"
    assert body["no_dvcl"][header.index("MDD (pp)")] == f"{100 * f.loc['no_dvcl', 'mdd']:.1f}"
    assert "3 seeds both groups share" in md and "80 % power" in md
    case_header, case_body = sections["Case-level view: on these trained models"]
    assert list(case_body) == ["no_mem", "no_dvcl"] and "*" not in " ".join(case_body["no_dvcl"])
    class_header, class_body = sections["Per-class Dice (%)"]
    assert class_header == ["Group", "liver", "spleen", "pancreas"]
    empty_header, empty_body = sections["Empty masks per class"]
    assert empty_body["no_mem"][empty_header.index("spleen")] == "1/0"
    assert empty_body["baseline"][empty_header.index("pancreas")] == "2/3"


def test_latex_escaping_and_booktabs():
    assert latex_escape("a_b 5% R&D") == r"a\_b 5\% R\&D"
    res = results(groups=("baseline", "no_dvcl", "x&y_50%"))
    tex = ablation_table(res).to_latex()
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}"):
        assert tex.count(cmd) == 5  # headline, other metrics, case-level, per-class Dice, empty masks
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
    assert back.columns.tolist() == tab.frame.columns.tolist()
    for row in back.to_dict("records"):
        for col, metric in (("dice_mean", "dice"), ("jaccard_mean", "jaccard"), ("dice/liver", "dice/liver")):
            assert row[col] == pytest.approx(summary.loc[(row["group"], metric), "mean"], rel=1e-15)
        assert row["dice_ci95"] == pytest.approx(summary.loc[(row["group"], "dice"), "ci95"], rel=1e-15)
    assert 0 < back["dice_mean"].max() <= 1  # fractions in the CSV, not percent


def test_write_table_files_and_no_metrics_error(tmp_path):
    res = results()
    run = write_run(tmp_path / "run", res)
    paths = write_table(run)
    assert [p.name for p in paths] == ["table.md", "table.tex", "table.csv"]
    assert all(p.parent == run and p.stat().st_size > 0 for p in paths)
    out = write_table(run, tmp_path / "out")
    assert all(p.parent == tmp_path / "out" and p.exists() for p in out)
    empty = write_run(
        tmp_path / "empty", io.Results(res.trials.assign(status="running"), pd.DataFrame(), res.cases.iloc[0:0], STUDY)
    )
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


FLARE = [name for label, name in sorted(FLARE22_LABELS.items()) if label]  # the 13 organs, in label order
LONG = "no_memory_bank_and_no_sag_sampler"  # folds onto two lines in the terminal


def terminal(run, width: int, *args: str) -> str:
    res = CliRunner().invoke(app, ["table", str(run), *args], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    return res.output


def group_lines(text: str, group: str) -> list[str]:
    """Lines of ``text`` that start a row of ``group`` (its first 24 characters when it folds)."""
    return [line for line in text.splitlines() if line.split()[:1] == [group[:24]]]


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_leads_with_the_full_headline(tmp_path, width):
    """13 organ classes (FLARE22): the headline numbers are never cut at 80 or 120 columns."""
    res = results(groups=("baseline", "no_dvcl", "no_mem", LONG), classes=list(enumerate(FLARE, 1)))
    run = write_run(tmp_path / "run", res)
    out = terminal(run, width)
    assert "…" not in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("written ")) <= width
    tab = ablation_table(res)
    cols = tab.headline_columns() + tab.budget_columns()[:2]  # group, n, Dice ± CI, Δ ± CI, p, MDD, budget
    headline = out.split("Case-level view")[0]
    lines = headline.splitlines()
    for g, row in zip(tab.frame["group"], tab.cells(cols)):
        (i,) = [i for i, line in enumerate(lines) if f" {row[2][0]} " in line and f" {row[3][0]} " in line]
        for text, _ in row[1:]:
            assert f" {text}" in lines[i], (text, lines[i])
        assert lines[i].index(row[2][0]) < lines[i].index(row[3][0]) < lines[i].index(row[-1][0])  # in order
        name = lines[i].split()[0]
        for more in lines[i + 1 :]:  # a long name folds onto lines of its own
            if len(more.split()) != 1 or not g.startswith(name + more.split()[0]):
                break
            name += more.split()[0]
        assert name == g
    flat = " ".join(out.split())
    assert "13 per-class Dice columns do not fit" in flat and "--classes shows them" in flat
    assert "paired t-test over the 3 seeds both groups share" in flat and "80 % power" in flat
    assert "Case-level view: on these trained models" in flat and "not a verdict about the method" in flat
    assert "gallbladder" not in out


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_classes_on_request_fit_the_width(tmp_path, width):
    res = results(classes=list(enumerate(FLARE, 1)))
    out = terminal(write_run(tmp_path / "run", res), width, "--classes")
    assert "…" not in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("written ")) <= width
    tab = ablation_table(res)
    per_class, _, empty = out.partition("Per-class Dice (%)")[2].partition("Empty masks per class")
    for name in FLARE:
        assert name in per_class and name in empty
    for g, dice, counts in zip(tab.frame["group"], tab.cells(tab.class_columns()), tab.cells(tab.empty_columns())):
        assert [t for line in group_lines(per_class, g) for t in line.split()[1:]] == [t for t, _ in dice]
        assert [t for line in group_lines(empty, g) for t in line.split()[2:]] == [t for t, _ in counts]
    assert len(group_lines(per_class, "baseline")) >= 2  # split into tables that fit


def test_terminal_shows_per_class_columns_when_they_fit(tmp_path):
    res = results()  # 3 classes
    out = terminal(write_run(tmp_path / "run", res), 200)
    headline = out.split("Case-level view")[0]
    assert all(name in headline for name in ("liver", "spleen", "pancreas", "ASSD (mm)", "Trials"))
    assert "do not fit" not in out


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
                trials.append(
                    {
                        "trial_id": tid,
                        "status": "completed",
                        "seed": seed,
                        "arm": arm,
                        "group": f"{arm}, labeled_ratio={ratio:.4g}",
                        "config.dataset.labeled_ratio": ratio,
                    }
                )
                for case in range(4):
                    for ci, name in enumerate(["liver", "spleen"], 1):
                        cases.append(
                            {
                                "trial_id": tid,
                                "split": "test",
                                "case_id": f"c{case}",
                                "class_index": ci,
                                "class_name": name,
                                "dice": ratio + rng.uniform(0, 0.2) + 0.1 * (arm == "arm"),
                                "jaccard": 0.5,
                                "hd95_mm": 3.0,
                                "assd_mm": 1.0,
                            }
                        )
    run = tmp_path / "run"
    io.write_frame(run / io.TRIALS_FILE, io.frame(trials, io.TRIAL_COLUMNS))
    io.write_frame(run / io.CASES_FILE, io.frame(cases, io.CASE_COLUMNS))
    (run / io.STUDY_FILE).write_text(
        yaml.safe_dump(
            {
                "name": "x",
                "search": {
                    "design": "ablation",
                    "arms": [{"name": "arm", "set": {}}],
                    "axes": {"dataset.labeled_ratio": [0.1, 0.5]},
                },
            }
        )
    )
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


def test_the_caption_names_the_kernels_when_the_trials_ran_on_several():
    res = results()
    assert "sets of kernels" not in ablation_table(res).headline_caption()  # no column: a run of before
    one = io.Results(res.trials.assign(kernels="torch 2.13.0, cpu AVX2"), res.history, res.cases, res.study)
    assert "sets of kernels" not in ablation_table(one).headline_caption()
    both = ["torch 2.13.0, cpu AVX512" if i % 3 == 0 else "torch 2.13.0, cpu AVX2" for i in range(len(res.trials))]
    mixed = io.Results(res.trials.assign(kernels=both), res.history, res.cases, res.study)
    caption = ablation_table(mixed).headline_caption()
    assert "The trials ran on 2 sets of kernels (torch 2.13.0, cpu AVX2; torch 2.13.0, cpu AVX512)" in caption
