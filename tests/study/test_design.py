"""Design expansion: grid cells, conditional dimensions, Optuna's space, trial studies."""

from __future__ import annotations

import optuna
import pytest
import yaml

from tests.study.test_schema import BASE, with_
from vrsearch.study import load_study
from vrsearch.study.design import (
    OptunaSpace,
    apply_cell,
    cells_with_seeds,
    design_cells,
    grid_cells,
    n_trials,
    random_cells,
)

SPACE = {
    "method.params.loss": {"type": "categorical", "choices": ["dice_ce", "ce"]},
    "train.optimizer.name": {"type": "categorical", "choices": ["sgd", "adam"]},
    # conditional: momentum only matters for SGD
    "train.optimizer.momentum": {
        "type": "categorical",
        "choices": [0.9, 0.99],
        "when": {"train.optimizer.name": "sgd"},
    },
}


def study_with(tmp_path, search: dict):
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(with_("search", search)))
    return load_study(p)


def test_grid_enumerates_exactly_its_cells(tmp_path):
    s = study_with(tmp_path, {"design": "grid", "space": SPACE, "seeds": [0, 1]})
    cells = grid_cells(s)
    expected = []
    for loss in ["dice_ce", "ce"]:
        expected.append({"method.params.loss": loss, "train.optimizer.name": "sgd", "train.optimizer.momentum": 0.9})
        expected.append({"method.params.loss": loss, "train.optimizer.name": "sgd", "train.optimizer.momentum": 0.99})
        expected.append({"method.params.loss": loss, "train.optimizer.name": "adam"})
    assert sorted(map(repr, cells)) == sorted(map(repr, expected))  # 2 × (2 + 1) cells, no duplicates
    assert n_trials(s) == 12 and len(cells_with_seeds(s)) == 12
    assert {c["train.seed"] for c in cells_with_seeds(s)} == {0, 1}


def test_random_design_honours_conditions_and_is_seeded(tmp_path):
    space = {**SPACE, "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
    s = study_with(tmp_path, {"design": "random", "space": space, "num_samples": 40})
    cells = random_cells(s, 0)
    assert cells == random_cells(s, 0) and cells != random_cells(s, 1)
    for c in cells:
        assert ("train.optimizer.momentum" in c) == (c["train.optimizer.name"] == "sgd")
        assert 1e-4 <= c["train.optimizer.lr"] <= 1e-1
    assert {c["train.optimizer.name"] for c in cells} == {"sgd", "adam"}


def test_optuna_space_is_conditional_and_picklable(tmp_path):
    import pickle

    space = {**SPACE, "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}
    s = study_with(tmp_path, {"design": "search", "space": space})
    fn = pickle.loads(pickle.dumps(OptunaSpace(s)))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        fn(trial)
        params = trial.params
        assert ("train.optimizer.momentum" in params) == (params["train.optimizer.name"] == "sgd")
        study.tell(trial, 0.0)
    dists = study.trials[0].distributions
    assert dists["train.optimizer.lr"].log is True


def test_ablation_cells_and_trial_study(tmp_path):
    arms = [
        {"name": "ce_only", "set": {"method.params.loss": "ce"}},
        {"name": "fast", "set": {"train.optimizer.lr": 0.01}},
    ]
    s = study_with(tmp_path, {"design": "ablation", "arms": arms, "seeds": [3]})
    cells = design_cells(s)
    assert [c["arm"] for c in cells] == ["baseline", "ce_only", "fast"]
    trial = apply_cell(s.model_dump(mode="json"), cells[1], seed=3)
    assert trial.method.params["loss"] == "ce" and trial.train.seed == 3 and trial.search.design == "none"
    assert apply_cell(s.model_dump(mode="json"), cells[0]).method.params["loss"] == "dice_ce"


def test_bad_cell_value_is_rejected(tmp_path):
    s = load_study(_write(tmp_path, BASE))
    from vrsearch.study import StudyError

    with pytest.raises(StudyError, match="method.params.loss"):
        apply_cell(s.model_dump(mode="json"), {"method.params.loss": "focal"})


def _write(tmp_path, data):
    p = tmp_path / "base.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_axes_cross_every_cell_and_label_groups(tmp_path):
    s = study_with(
        tmp_path,
        {
            "design": "ablation",
            "seeds": [0, 1, 2],
            "arms": [{"name": "ce_only", "set": {"method.params.loss": "ce"}}],
            "axes": {"dataset.labeled_ratio": [0.25, 0.5]},
        },
    )
    cells = design_cells(s)
    assert [(c["arm"], c["dataset.labeled_ratio"]) for c in cells] == [
        ("baseline", 0.25),
        ("baseline", 0.5),
        ("ce_only", 0.25),
        ("ce_only", 0.5),
    ]
    assert [c["group"] for c in cells] == [
        "baseline, labeled_ratio=0.25",
        "baseline, labeled_ratio=0.5",
        "ce_only, labeled_ratio=0.25",
        "ce_only, labeled_ratio=0.5",
    ]
    assert n_trials(s) == 12  # arms × ratios × seeds
    trial = apply_cell(s.model_dump(mode="json"), cells[3], seed=2)
    assert trial.dataset.labeled_ratio == 0.5 and trial.method.params["loss"] == "ce" and trial.train.seed == 2


def test_grid_groups_name_their_knobs(tmp_path):
    s = study_with(tmp_path, {"design": "grid", "space": {"method.params.loss": SPACE["method.params.loss"]}})
    assert [c["group"] for c in design_cells(s)] == ["loss=dice_ce", "loss=ce"]


def test_config_hash_is_the_trial_identity(tmp_path):
    from vrsearch.study.design import config_hash

    s = study_with(tmp_path, {"design": "none", "seeds": [0, 1]})
    base = s.model_dump(mode="json")
    a, b = apply_cell(base, {}, 0), apply_cell(base, {}, 1)
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, with_seed=False) == config_hash(b, with_seed=False)
    assert config_hash(a) == config_hash(apply_cell(base, {"resources.concurrent_trials": 4}, 0))  # not results
    assert config_hash(a) != config_hash(apply_cell(base, {"train.iterations": 7}, 0))


@pytest.mark.parametrize(
    "search, fragment",
    [
        ({"design": "ablation", "arms": [{"name": "baseline", "set": {}}]}, "not 'baseline'"),
        ({"design": "ablation", "arms": [{"name": "a", "set": {}}, {"name": "a", "set": {}}]}, "distinct"),
        ({"design": "none", "axes": {"train.iterations": [1, 2]}}, "axes vary the data"),
        ({"design": "none", "axes": {"dataset.labeled_ratio": []}}, "non-empty"),
        ({"design": "none", "axes": {"dataset.labeled_ratio": [0.5, 1.5]}}, "search.axes.dataset.labeled_ratio"),
        ({"design": "search", "space": SPACE, "axes": {"dataset.split_seed": [0, 1]}}, "fixed design"),
    ],
)
def test_bad_axes_and_arms(tmp_path, search, fragment):
    from vrsearch.errors import VrsearchError

    with pytest.raises(VrsearchError) as err:
        study_with(tmp_path, search)
    assert fragment in str(err.value)


def test_config_hash_ignores_defaults_but_not_changed_values(tmp_path):
    from vrsearch.study.design import config_hash

    s = study_with(tmp_path, {"design": "none"})
    base = s.model_dump(mode="json")
    plain = config_hash(apply_cell(base, {}, 0))
    # spelling out a default (as a newer release's resolved study.yaml does) is the same trial
    assert config_hash(apply_cell(base, {"train.deterministic": True, "method.params.loss": "dice_ce"}, 0)) == plain
    assert config_hash(apply_cell(base, {"train.deterministic": False}, 0)) != plain
