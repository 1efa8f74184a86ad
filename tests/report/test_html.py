"""The HTML report: self-contained (plotly.js once, nothing loaded from the network),
sections per design, escaping, selection by validation, and ``vrsearch report``."""

from __future__ import annotations

import json
import re

import optuna
import pandas as pd
import pytest
import yaml
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

from tests.report.test_figures import CONFIGS, synthetic
from vrsearch.cli import app
from vrsearch.engine.metrics import conventions
from vrsearch.errors import VrsearchError
from vrsearch.report.html import build_report, searched_knobs, write_report
from vrsearch.results import io

NAME = "<script>alert(1)</script>"
EVIL_ERROR = "<img src=x onerror=alert(2)>"
SPACE = {
    "method.params.k": {"type": "categorical", "choices": [5, 10, 15]},
    "train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
    "method.params.sampler": {"type": "categorical", "choices": ["ns", "sg", "sag"]},
}
SEARCH_SECTIONS = [
    "Overview",
    "Optimisation history",
    "Parallel coordinates",
    "Slices",
    "Contour",
    "Hyperparameter importance",
    "Learning curves",
    "Loss terms",
    "Ablation table",
    "Per-class Dice",
    "Per-case Dice",
    "Sampler comparison",
]


def write_run(path, trials, history=None, cases=None, study=None):
    path.mkdir(parents=True, exist_ok=True)
    io.write_frame(path / io.TRIALS_FILE, trials)
    if history is not None:
        io.write_frame(path / io.HISTORY_FILE, history)
    if cases is not None:
        io.write_frame(path / io.CASES_FILE, cases)
    (path / io.STUDY_FILE).write_text(yaml.safe_dump(study or {}))
    return path


def search_run(path, storage_url: str | None = None):
    """The synthetic 6-trial search + a failed trial, and an Optuna storage with one
    stored trial per configuration (params = the trials' cells): the run directory's
    optuna.db, or ``storage_url`` (the study's ``search.storage``)."""
    trials, history, cases = synthetic()
    failed = dict(trials.iloc[0])
    failed.update(
        trial_id="t9-s0", status="failed", error=EVIL_ERROR, best_val_dice=float("nan"), test_dice=float("nan")
    )
    trials = pd.concat([trials, pd.DataFrame([failed])], ignore_index=True)
    study = {
        "name": NAME,
        "method": {"name": "arco"},
        "dataset": {"layout": "phantom", "labeled_ratio": 0.1},
        "search": {
            "design": "search",
            "searcher": "tpe",
            "scheduler": "asha",
            "metric": "val_dice",
            "mode": "max",
            "seeds": [0, 1],
            "space": SPACE,
            "arms": [],
            "storage": storage_url,
        },
    }
    write_run(path, trials, history, cases, study)
    storage = optuna.create_study(
        study_name=NAME, storage=storage_url or f"sqlite:///{path}/optuna.db", direction="maximize"
    )
    dists = {
        "method.params.k": optuna.distributions.CategoricalDistribution((5, 10, 15)),
        "train.optimizer.lr": optuna.distributions.FloatDistribution(0.001, 0.1, log=True),
        "method.params.sampler": optuna.distributions.CategoricalDistribution(("ns", "sg", "sag")),
    }
    for cell, value in zip(trials["cell"][:6:2], trials["best_val_dice"][:6:2]):
        storage.add_trial(optuna.trial.create_trial(params=json.loads(cell), distributions=dists, value=value))
    return path


def outside_bundle(text: str) -> str:
    js = get_plotlyjs()
    assert text.count(js) == 1
    return text.replace(js, "")


@pytest.fixture(scope="module")
def search_report(tmp_path_factory):
    run_dir = search_run(tmp_path_factory.mktemp("run") / "search")
    return run_dir, build_report(run_dir)


def headings(text: str) -> list[str]:
    return re.findall(r"<h2>(.*?)</h2>", text)


def test_self_contained(search_report):
    _, text = search_report
    rest = outside_bundle(text)
    assert text.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]*\ssrc\s*=", rest, re.I)
    assert not re.search(r"""<link[^>]*href\s*=\s*["']?\s*(https?:)?//""", rest, re.I)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", rest, re.I)
    assert "mathjax" not in rest.lower()
    assert text.index(get_plotlyjs()) < text.index("</head>")


def test_search_sections_and_figures(search_report):
    _, text = search_report
    assert headings(text) == SEARCH_SECTIONS
    assert text.count('class="plotly-graph-div"') == 10  # every section but Overview and Ablation table
    assert "Could not render" not in text
    assert "Evaluator: " in text and "ANOVA" in text and "on 3 completed trials" in text
    assert "draw the stored Optuna study" in text


def test_an_external_optuna_storage_is_read(tmp_path):
    """``search.storage`` names a database outside the run directory (here a second SQLite
    file): the report's Optuna sections read it there, and no optuna.db appears in the run."""
    elsewhere = tmp_path / "db" / "studies.db"
    elsewhere.parent.mkdir()
    run_dir = search_run(tmp_path / "search", storage_url=f"sqlite:///{elsewhere}")
    text = build_report(run_dir)
    assert not (run_dir / "optuna.db").exists()
    assert "on 3 completed trials" in text and "draw the stored Optuna study" in text
    assert headings(text) == SEARCH_SECTIONS


def test_escaping(search_report):
    _, text = search_report
    rest = outside_bundle(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rest
    assert NAME not in rest and "alert(1)</script>" not in rest
    assert "&lt;img src=x onerror=alert(2)&gt;" in rest and EVIL_ERROR not in rest
    assert f"<title>{NAME}" not in rest and "<h1>&lt;script&gt;" in rest


def test_best_is_selected_by_validation(tmp_path):
    trials, history, cases = synthetic()
    # t1-s0 gets the best test Dice but a poor validation Dice: it must not be "best"
    trials.loc[trials.trial_id == "t1-s0", "test_dice"] = 0.99
    best_val = trials.loc[trials.status == "completed"].sort_values("best_val_dice").iloc[-1]
    run_dir = write_run(
        tmp_path / "r", trials, history, cases, {"name": "sel", "search": {"design": "grid", "space": SPACE}}
    )
    text = build_report(run_dir)
    best = text.split("Best configuration", 1)[1].split("</table>", 1)[0]
    assert f"<code>{best_val.trial_id}</code>" in best and "t1-s0" not in best
    assert "in-memory Optuna study" in text  # grid design without storage: importance from the trials


def test_ablation_design_sections(tmp_path):
    trials, history, cases = synthetic()
    arms = {"t1": "baseline", "t2": "no_contrast", "t3": "no_mem"}
    trials["arm"] = trials["group"] = trials.trial_id.str[:2].map(arms)
    trials["cell"] = "{}"
    study = {
        "name": "abl",
        "search": {
            "design": "ablation",
            "arms": [
                {"name": "no_contrast", "set": {"method": {"params": {"k": 5}}}},
                {"name": "no_mem", "set": {"train.optimizer.lr": 0.1}},
            ],
        },
    }
    run_dir = write_run(tmp_path / "abl", trials, history, cases, study)
    assert searched_knobs(io.load(run_dir)) == ["method.params.k", "train.optimizer.lr"]
    text = build_report(run_dir)
    assert headings(text) == [
        "Overview",
        "Learning curves",
        "Loss terms",
        "Ablation table",
        "Per-class Dice",
        "Per-case Dice",
        "Sampler comparison",
    ]
    table = text.split("<h2>Ablation table</h2>", 1)[1].split("</table>", 1)[0]
    assert table.index("baseline") < table.index("no_contrast") < table.index("no_mem")
    assert "Could not render" not in text


def test_ablation_overview_lists_arm_settings_and_panels_say_what_terms_are(tmp_path):
    trials, history, cases = synthetic()
    arms = {"t1": "baseline", "t2": "no_contrast", "t3": "no_mem"}
    trials["arm"] = trials["group"] = trials.trial_id.str[:2].map(arms)
    study = {
        "name": "abl",
        "search": {
            "design": "ablation",
            "seeds": [0, 1],
            "arms": [
                {"name": "no_contrast", "set": {"method": {"params": {"k": 5}}}},
                {"name": "no_mem", "set": {"train.optimizer.lr": 0.1}},
            ],
        },
    }
    text = build_report(write_run(tmp_path / "abl", trials, history, cases, study))
    overview = text.split('<section id="overview">', 1)[1].split("</section>", 1)[0]
    assert "Searched knobs" not in overview and "<th>Arm settings</th>" in overview
    assert "<li><strong>baseline</strong>: the study as written</li>" in overview
    assert "<li><strong>no_contrast</strong>: method.params.k = 5</li>" in overview
    assert "<li><strong>no_mem</strong>: train.optimizer.lr = 0.1</li>" in overview
    terms = text.split('<section id="terms">', 1)[1].split("</section>", 1)[0]
    assert "sampling variance" in terms  # ARCO's description of term_contrast_spread
    assert '"name":"no_contrast \\u00b7 seed 1"' in terms  # "·" as JSON escapes it
    assert '"name":"t2-s1"' not in terms


def test_overview_states_the_metric_conventions(tmp_path):
    trials, history, cases = synthetic()
    run_dir = write_run(tmp_path / "r", trials, history, None, {"name": "c", "search": {"design": "none"}})
    assert "<th>Metric conventions</th><td>not recorded</td>" in build_report(run_dir)
    io.write_frame(run_dir / io.CASES_FILE, cases, metadata={io.CONVENTIONS_KEY: conventions("nan")})
    row = build_report(run_dir).split("<th>Metric conventions</th><td>", 1)[1].split("</td>", 1)[0]
    assert row.startswith("v2: class absent from truth and prediction → NaN for every metric, left out of means")
    assert "HD95 = ASSD = image diagonal in mm" in row


def test_running_study_renders(tmp_path):
    trials, history, _ = synthetic()
    trials = trials.iloc[:2].copy()
    trials["status"] = "running"
    trials[["best_val_dice", "test_dice"]] = float("nan")
    run_dir = write_run(
        tmp_path / "running",
        trials,
        history[history.trial_id.isin(trials.trial_id)],
        None,
        {"name": "live", "search": {"design": "search", "space": SPACE}},
    )
    text = build_report(run_dir)
    assert "running: 2" in text and "No completed trial with a validation Dice yet" in text
    assert "Optimisation history" not in headings(text) and "Ablation table" not in headings(text)
    assert "Learning curves" in headings(text) and "Could not render" not in text
    fresh = tmp_path / "fresh"  # a run that has written only its study so far
    fresh.mkdir()
    (fresh / "study.yaml").write_text("name: fresh\n")
    assert headings(build_report(fresh)) == ["Overview"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(VrsearchError, match="not a vrsearch run directory"):
        build_report(tmp_path / "empty")


def test_write_report_and_cli(tmp_path):
    trials, history, cases = synthetic()
    run_dir = write_run(tmp_path / "run", trials, history, cases, {"name": "cli", "search": {"design": "none"}})
    path = write_report(run_dir)
    assert path == run_dir / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    assert not list(run_dir.glob(".*.tmp"))
    out = tmp_path / "elsewhere" / "r.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0 and str(out) in result.output and out.is_file()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    assert len(CONFIGS) == 3
