"""What an edited study may change to grow its run directory, and which cells it then runs."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import tiny_study_dict
from vrsearch.orchestrate import grow
from vrsearch.results import fragments
from vrsearch.study.design import SEED_KEY, apply_cell, cells_with_seeds, config_hash
from vrsearch.study.load import build_study

ARMS = [{"name": "ce", "set": {"method.params.loss": "ce"}}]


def ablation(tmp_path, **search):
    raw = tiny_study_dict(tmp_path / "data", tmp_path / "run",
                          search={"design": "ablation", "scheduler": "none", "seeds": [0, 1], "arms": ARMS, **search})
    return raw


def study(raw):
    return build_study(copy.deepcopy(raw))


@pytest.mark.parametrize("edit", [
    lambda r: r["search"].update(seeds=[0, 1, 2]),
    lambda r: r["search"]["arms"].append({"name": "dice", "set": {"method.params.loss": "dice"}}),
    lambda r: r["search"].update(axes={"dataset.labeled_ratio": [0.5, 0.75]}),
    lambda r: r["resources"].update(concurrent_trials=2) if "resources" in r else r.update(
        resources={"concurrent_trials": 2}),
])
def test_edits_that_grow(tmp_path, edit):
    raw = ablation(tmp_path)
    new = copy.deepcopy(raw)
    edit(new)
    assert grow.growth_problem(study(raw), study(new)) is None


@pytest.mark.parametrize("edit, named", [
    (lambda r: r["train"].update(iterations=12), "train.iterations: 6 -> 12"),
    (lambda r: r["dataset"].update(labeled_ratio=0.75), "dataset.labeled_ratio"),
    (lambda r: r["method"].update(params={"loss": "dice"}), "method.params.loss"),
    (lambda r: r["search"]["arms"][0]["set"].update({"method.params.loss": "dice"}), "search.arms.ce"),
    (lambda r: r.update(name="other"), "name"),
])
def test_edits_that_invalidate_finished_cells_are_refused(tmp_path, edit, named):
    raw = ablation(tmp_path)
    new = copy.deepcopy(raw)
    edit(new)
    problem = grow.growth_problem(study(raw), study(new))
    assert problem is not None and named in problem and "\n" not in problem


def test_search_designs_do_not_grow_in_place(tmp_path):
    raw = tiny_study_dict(tmp_path, tmp_path / "run", search={
        "design": "search", "num_samples": 2, "space": {"train.optimizer.lr": {"type": "float", "low": 0.001,
                                                                               "high": 0.1, "log": True}}})
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
        _finish(run, f"t{i}", apply_cell(base, knobs, cell[SEED_KEY]), ["completed", "failed", "stopped_early",
                                                                        "completed"][i])
    (fragments.trial_dir(run, "killed")).mkdir(parents=True)  # an interrupted trial: no result
    grown = copy.deepcopy(raw)
    grown["search"]["seeds"] = [0, 1, 2]
    new = study(grown)
    pending = grow.pending_cells(new.model_dump(mode="json"), cells_with_seeds(new), grow.finished_hashes(run))
    assert [(c["arm"], c[SEED_KEY]) for c in pending] == [("baseline", 2), ("ce", 2)]
    assert grow.remove_unfinished(run) == 1 and not fragments.trial_dir(run, "killed").exists()


def test_experiment_names(tmp_path):
    assert grow.next_experiment(tmp_path) == "tune"
    (tmp_path / "tune").mkdir()
    assert grow.next_experiment(tmp_path) == "tune-2"
    (tmp_path / "tune-2").mkdir()
    (tmp_path / "tune-10").mkdir()
    (tmp_path / "tuner").mkdir()
    assert grow.experiments(tmp_path) == ["tune", "tune-2", "tune-10"]
    assert grow.next_experiment(tmp_path) == "tune-11"


def _experiment(path, **damage):
    """A Tune experiment dir as Tune leaves it: tuner.pkl, a JSON state, pickled searcher state."""
    import json
    import pickle

    path.mkdir()
    files = {"tuner.pkl": pickle.dumps({"param_space": {"cell": [1, 2]}}, protocol=5),
             "experiment_state-2026-11-22_10-00-00.json": json.dumps({"trial_data": ["x" * 50]}).encode(),
             "basic-variant-state-2026-11-22_10-00-00.json": pickle.dumps({"pending": list(range(40))}),
             "searcher-state-2026-11-22_10-00-00.pkl": pickle.dumps(["optuna"] * 9)}
    for name, data in files.items():
        if damage.get("drop") == name:
            continue
        (path / name).write_bytes(data[: damage["cut"]] if damage.get("truncate") == name else data)
    (path / ".validate_storage_marker").write_bytes(b"")
    return path


@pytest.mark.parametrize("damage", [
    {"drop": "experiment_state-2026-11-22_10-00-00.json"},  # killed between tuner.pkl and the first state
    {"drop": "tuner.pkl"},
    {"truncate": "experiment_state-2026-11-22_10-00-00.json", "cut": 20},
    {"truncate": "basic-variant-state-2026-11-22_10-00-00.json", "cut": 30},
    {"truncate": "searcher-state-2026-11-22_10-00-00.pkl", "cut": 5},
    {"truncate": "tuner.pkl", "cut": 0},
])
def test_a_damaged_experiment_is_not_restorable(tmp_path, damage):
    assert grow.restorable(_experiment(tmp_path / "whole"))
    assert not grow.restorable(_experiment(tmp_path / "tune", **damage))
