"""A study whose choices depend on timing says so before it runs: with several trials at once,
which trials a scheduler stops and what a model-based searcher proposes follow the order in
which trials report (README, quickstart step 1: two runs of the same code with two trials at a
time trained 4 and 2 of 8 trials to the end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import tiny_study_dict
from tests.corpus._util import cli_in_process
from vrsearch.orchestrate.checks import timing_warnings
from vrsearch.study import load_study
from vrsearch.study.load import build_study

QUICKSTART = Path(__file__).resolve().parents[2] / "studies" / "quickstart.yaml"
SPACE = {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}}
TPE = {"design": "search", "space": SPACE, "num_samples": 8, "n_startup_trials": 4}
GRID = {"design": "grid", "space": {"train.optimizer.lr": {"type": "categorical", "choices": [0.1, 0.2]}}}


def warnings_for(at_once: int, search: dict | None) -> list[str]:
    raw = tiny_study_dict(Path("data/none"), Path("runs/none"))
    if search is not None:  # None: the tiny study's own design (one trial)
        raw["search"] = search
    raw["resources"] = {"concurrent_trials": at_once}
    return timing_warnings(build_study(raw))


def test_the_quickstart_runs_one_trial_at_a_time():
    assert timing_warnings(load_study(QUICKSTART, [])) == []
    assert warnings_for(1, TPE) == []


@pytest.mark.parametrize(
    ("at_once", "search", "names"),
    [
        (2, TPE, ["search.scheduler: asha", "search.searcher: tpe"]),
        (2, {**TPE, "scheduler": "none"}, ["search.searcher: tpe"]),
        (2, {**TPE, "searcher": "cmaes", "scheduler": "none"}, ["search.searcher: cmaes"]),
        (2, {**TPE, "searcher": "random"}, ["search.scheduler: asha"]),
        (3, {**TPE, "n_startup_trials": 8, "scheduler": "median"}, ["search.scheduler: median"]),
        (2, GRID, ["search.scheduler: asha"]),
    ],
)
def test_several_trials_at_once_name_what_depends_on_timing(at_once, search, names):
    lines = warnings_for(at_once, search)
    assert len(lines) == 1
    assert lines[0].startswith(f"resources.concurrent_trials: {at_once}: ")
    assert all(n in lines[0] for n in names) and "concurrent_trials: 1 that order is fixed" in lines[0]
    assert ("searcher" in lines[0]) == any("searcher" in n for n in names)


@pytest.mark.parametrize(
    "search",
    [
        {**TPE, "scheduler": "none", "searcher": "random"},
        {**TPE, "scheduler": "none", "n_startup_trials": 8},  # every proposal is a start-up one
        {**GRID, "scheduler": "none"},
        None,  # one trial: nothing to order
    ],
)
def test_nothing_to_say_when_no_choice_follows_the_order(search):
    assert warnings_for(2, search) == []


def test_validate_prints_it_as_one_warning_line():
    res = cli_in_process("validate", QUICKSTART, "--set", "resources.concurrent_trials=2")
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(lines) == 1 and "search.scheduler: asha" in lines[0] and "4 start-up configurations" in lines[0]
    assert "warning" not in cli_in_process("validate", QUICKSTART).stderr
