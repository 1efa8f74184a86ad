"""What an edited study may change to grow its run directory, and which cells it then runs."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import tiny_study_dict
from vrsearch.orchestrate import grow
from vrsearch.results import fragments
from vrsearch.results.rundir import RunDir
from vrsearch.study.design import SEED_KEY, apply_cell, cells_with_seeds, config_hash
from vrsearch.study.load import build_study

ARMS = [{"name": "ce", "set": {"method.params.loss": "ce"}}]


def ablation(tmp_path, **search):
    raw = tiny_study_dict(
        tmp_path / "data",
        tmp_path / "run",
        search={"design": "ablation", "scheduler": "none", "seeds": [0, 1], "arms": ARMS, **search},
    )
    return raw


def study(raw):
    return build_study(copy.deepcopy(raw))


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["search"].update(seeds=[0, 1, 2]),
        lambda r: r["search"]["arms"].append({"name": "dice", "set": {"method.params.loss": "dice"}}),
        lambda r: r["search"].update(axes={"dataset.labeled_ratio": [0.5, 0.75]}),
        lambda r: (
            r["resources"].update(concurrent_trials=2)
            if "resources" in r
            else r.update(resources={"concurrent_trials": 2})
        ),
    ],
)
def test_edits_that_grow(tmp_path, edit):
    raw = ablation(tmp_path)
    new = copy.deepcopy(raw)
    edit(new)
    assert grow.growth_problem(study(raw), study(new)) is None


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda r: r["train"].update(iterations=12), "train.iterations: 6 -> 12"),
        (lambda r: r["dataset"].update(labeled_ratio=0.75), "dataset.labeled_ratio"),
        (lambda r: r["method"].update(params={"loss": "dice"}), "method.params.loss"),
        (lambda r: r["search"]["arms"][0]["set"].update({"method.params.loss": "dice"}), "search.arms.ce"),
        (lambda r: r.update(name="other"), "name"),
    ],
)
def test_edits_that_invalidate_finished_cells_are_refused(tmp_path, edit, named):
    raw = ablation(tmp_path)
    new = copy.deepcopy(raw)
    edit(new)
    problem = grow.growth_problem(study(raw), study(new))
    assert problem is not None and named in problem and "\n" not in problem


def test_search_designs_do_not_grow_in_place(tmp_path):
    raw = tiny_study_dict(
        tmp_path,
        tmp_path / "run",
        search={
            "design": "search",
            "num_samples": 2,
            "space": {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
        },
    )
    new = copy.deepcopy(raw)
    new["search"]["num_samples"] = 4
    assert "cannot be grown in place" in grow.growth_problem(study(raw), study(new))


def _finish(run_dir, trial_id, s, status="completed"):
    d = fragments.trial_dir(run_dir, trial_id)
    fragments.write_json(d / "meta.json", {"config_hash": config_hash(s)})
    fragments.write_json(d / "result.json", {"status": status})


def test_pending_cells_are_those_without_a_finished_trial(tmp_path):
    raw = ablation(tmp_path)
    old, run = study(raw), tmp_path / "run"
    base = old.model_dump(mode="json")
    for i, cell in enumerate(cells_with_seeds(old)):
        knobs = {k: v for k, v in cell.items() if k != SEED_KEY}
        _finish(
            run,
            f"t{i}",
            apply_cell(base, knobs, cell[SEED_KEY]),
            ["completed", "failed", "stopped_early", "completed"][i],
        )
    (fragments.trial_dir(run, "killed")).mkdir(parents=True)  # an interrupted trial: no result
    grown = copy.deepcopy(raw)
    grown["search"]["seeds"] = [0, 1, 2]
    new = study(grown)
    pending = grow.pending_cells(new.model_dump(mode="json"), cells_with_seeds(new), grow.finished_hashes(RunDir(run)))
    assert [(c["arm"], c[SEED_KEY]) for c in pending] == [("baseline", 2), ("ce", 2)]
    assert grow.remove_unfinished(RunDir(run)) == 1 and not fragments.trial_dir(run, "killed").exists()


def test_experiment_names(tmp_path):
    run = RunDir(tmp_path)
    assert run.next_experiment() == "tune"
    (tmp_path / "tune").mkdir()
    assert run.next_experiment() == "tune-2"
    (tmp_path / "tune-2").mkdir()
    (tmp_path / "tune-10").mkdir()
    (tmp_path / "tuner").mkdir()
    assert run.experiments() == ["tune", "tune-2", "tune-10"]
    assert run.next_experiment() == "tune-11"


def test_unfinished_fragments_go_their_checkpoints_stay(tmp_path):
    """An interrupted trial's configuration runs again under a new trial id and must find
    its checkpoint: only the fragments go."""
    run = RunDir(tmp_path)
    fragments.trial_dir(tmp_path, "killed").mkdir(parents=True)
    (run.checkpoint("abc") / "last.pt").parent.mkdir(parents=True)
    (run.checkpoint("abc") / "last.pt").write_bytes(b"x")
    assert grow.remove_unfinished(run) == 1
    assert not fragments.trial_dir(tmp_path, "killed").exists() and (run.checkpoint("abc") / "last.pt").exists()
