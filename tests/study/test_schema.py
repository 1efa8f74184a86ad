"""Study schema: every user error is one line naming the YAML path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vrsearch.study import StudyError, load_study, study_to_yaml

REPO = Path(__file__).resolve().parents[2]
BASE = {
    "name": "t",
    "method": {"name": "supervised"},
    "dataset": {"layout": "phantom", "root": "data/phantom", "patch_size": [32, 32, 16]},
    "model": {"channels": [8, 16]},
    "train": {"iterations": 10},
}


def write(tmp_path: Path, data: dict | str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return p


def error_of(tmp_path: Path, data: dict | str, overrides=()) -> str:
    with pytest.raises(StudyError) as info:
        load_study(write(tmp_path, data), overrides)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def with_(path: str, value) -> dict:
    import copy

    from vrsearch.study.load import set_path

    d = copy.deepcopy(BASE)
    set_path(d, path, value)
    return d


def test_valid_study_resolves_defaults(tmp_path):
    s = load_study(write(tmp_path, BASE))
    assert s.method.params == {"loss": "dice_ce", "all_labels": False}
    assert s.train.batch.labeled == 2
    assert s.dataset.root.is_absolute() and s.run_dir.is_absolute()
    again = yaml.safe_load(study_to_yaml(s))
    assert again["train"]["iterations"] == 10


def test_shipped_quickstart_validates():
    s = load_study(REPO / "studies" / "quickstart.yaml")
    assert s.method.name == "dvcl" and s.search.design == "search" and s.search.scheduler == "asha"
    assert s.search.num_samples >= 8 and {"method.params.lambda_c", "method.params.tau"} <= set(s.search.space)
    base = load_study(REPO / "studies" / "quickstart_labeled_only.yaml")
    assert base.method.name == "supervised"  # the comparison baseline, run next to the search
    s = load_study(REPO / "studies" / "dvcl_vs_labeled_only.yaml")  # the former quickstart
    assert s.method.name == "dvcl" and s.dataset.labeled_ratio == 0.1
    arms = {a.name: a.set for a in s.search.arms}
    assert arms["labeled_only"]["method"]["name"] == "supervised"


@pytest.mark.parametrize(
    "path,value,expected",
    [
        ("train.batch.labeld", 2, "train.batch.labeld: unknown key; did you mean 'labeled'?"),
        ("dataset.labeled_ration", 0.5, "dataset.labeled_ration: unknown key; did you mean 'labeled_ratio'?"),
        ("bogus", 1, "bogus: unknown key"),
    ],
)
def test_unknown_keys_name_the_path_and_suggest(tmp_path, path, value, expected):
    assert error_of(tmp_path, with_(path, value)) == expected


def test_misspelt_method_knob_suggests(tmp_path):
    msg = error_of(tmp_path, with_("method.params.los", "dice"))
    assert msg == "method.params.los: unknown parameter of method 'supervised'; did you mean 'loss'?"


def test_bad_knob_value_names_path(tmp_path):
    msg = error_of(tmp_path, with_("method.params.loss", "focal"))
    assert msg.startswith("method.params.loss: Input should be")


def test_unknown_method_suggests(tmp_path):
    msg = error_of(tmp_path, with_("method.name", "supervisd"))
    assert msg.startswith("method.name: unknown method 'supervisd'; did you mean 'supervised'?")


@pytest.mark.parametrize(
    "path,value,fragment",
    [
        ("train.batch.labeled", "two", "train.batch.labeled: Input should be a valid integer"),
        ("train.batch.labeled", 0, "train.batch.labeled: Input should be greater than or equal to 1"),
        ("dataset.labeled_ratio", 1.5, "dataset.labeled_ratio: Input should be less than or equal to 1"),
        ("dataset.labeled_ratio", 0, "dataset.labeled_ratio: Input should be greater than 0"),
        ("train.optimizer.lr", -1, "train.optimizer.lr: Input should be greater than 0"),
        ("train.optimizer.name", "adagrad", "train.optimizer.name: Input should be 'adam', 'adamw' or 'sgd'"),
        ("dataset.orientation", "RAR", "dataset: orientation 'RAR' must name each axis once"),
        ("dataset.patch_size", [31, 32, 16], "dataset.patch_size: every size must be divisible by 2"),
        ("dataset.intensity.clip", [300, -300], "dataset.intensity: clip must be (low, high) with low < high"),
        ("name", "has space", "name: String should match pattern"),
        ("resources.custom_per_worker", {"GPU": 1}, "resources.custom_per_worker: 'GPU' is not a custom resource"),
        ("resources.custom_per_worker", {"memory": 1}, "resources.custom_per_worker: 'memory' is not a custom"),
        (
            "resources.custom_per_worker",
            {"slot": 0},
            "resources.custom_per_worker.slot: Input should be greater than 0",
        ),
        ("resources.custom_per_worker", {"slot": 0.00001}, "resources.custom_per_worker: slot: 1e-05 must be finite"),
    ],
)
def test_wrong_types_and_ranges(tmp_path, path, value, fragment):
    assert error_of(tmp_path, with_(path, value)).startswith(fragment)


def test_2d_model_needs_flat_patch(tmp_path):
    d = with_("model.spatial_dims", 2)
    assert "a 2D model needs patch_size [x, y, 1]" in error_of(tmp_path, d)
    d["dataset"]["patch_size"] = [32, 32, 1]
    assert load_study(write(tmp_path, d)).model.spatial_dims == 2


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    msg = error_of(tmp_path, "name: t\ntrain: [1,\n  iterations: 3\n")
    assert msg.startswith(str(tmp_path / "study.yaml") + ":") and "YAML syntax error" in msg


def test_duplicate_key_and_non_mapping(tmp_path):
    assert "duplicated key 'name'" in error_of(tmp_path, "name: a\nname: b\n")
    assert "must be a YAML mapping" in error_of(tmp_path, "- 1\n- 2\n")


def test_yaml_is_loaded_safely(tmp_path):
    msg = error_of(tmp_path, "name: !!python/object/apply:os.system ['echo hi']\n")
    assert "YAML syntax error" in msg


def test_missing_file(tmp_path):
    with pytest.raises(StudyError, match="study file not found"):
        load_study(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    p = write(tmp_path, BASE)
    s = load_study(p, ["train.optimizer.lr=3e-4", "method.params.loss=ce", "train.eval.every=5"])
    assert s.train.optimizer.lr == pytest.approx(3e-4) and s.method.params["loss"] == "ce"
    with pytest.raises(StudyError, match="expected key=value"):
        load_study(p, ["train.iterations"])
    with pytest.raises(StudyError, match="train.iteration: unknown key; did you mean 'iterations'"):
        load_study(p, ["train.iteration=3"])


def test_search_space_names_are_checked(tmp_path):
    d = with_(
        "search", {"design": "search", "space": {"train.optimizer.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}}}
    )
    msg = error_of(tmp_path, d)
    assert msg == "search.space.train.optimizer.lrr: 'lrr' is not a field of train.optimizer; did you mean 'lr'?"
    d = with_(
        "search", {"design": "search", "space": {"method.params.los": {"type": "categorical", "choices": ["ce"]}}}
    )
    assert "did you mean 'loss'" in error_of(tmp_path, d)


def test_search_space_values_are_checked(tmp_path):
    space = {"method.params.loss": {"type": "categorical", "choices": ["ce", "focal"]}}
    msg = error_of(tmp_path, with_("search", {"design": "grid", "space": space}))
    assert msg.startswith("search.space.method.params.loss: value 'focal' is invalid")


@pytest.mark.parametrize(
    "dim,fragment",
    [
        ({"type": "float", "low": 1.0, "high": 1.0}, "empty range"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "log range needs low > 0"),
        ({"type": "categorical", "choices": []}, "categorical needs a non-empty 'choices' list"),
        ({"type": "float", "low": 0.1}, "float needs 'low' and 'high'"),
    ],
)
def test_bad_dimensions(tmp_path, dim, fragment):
    d = with_("search", {"design": "search", "space": {"train.optimizer.lr": dim}})
    msg = error_of(tmp_path, d)
    assert msg.startswith("search.space.train.optimizer.lr") and fragment in msg


def test_conditional_needs_categorical_parent(tmp_path):
    space = {
        "method.params.loss": {"type": "categorical", "choices": ["ce", "dice"]},
        "train.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "when": {"method.params.loss": "ce"}},
    }
    assert load_study(write(tmp_path, with_("search", {"design": "search", "space": space})))
    space["train.optimizer.lr"]["when"] = {"train.seed": 1}
    msg = error_of(tmp_path, with_("search", {"design": "search", "space": space}))
    assert "conditional on 'train.seed', which is not a categorical" in msg


def test_duplicate_seeds_rejected(tmp_path):
    assert "seeds must be distinct" in error_of(tmp_path, with_("search.seeds", [1, 1]))


SEED_AS_KNOB = [
    (
        "search.space.train.seed",
        {"design": "search", "space": {"train.seed": {"type": "categorical", "choices": [0, 1]}}},
    ),
    (
        "search.space.train.seed",
        {"design": "grid", "space": {"train.seed": {"type": "categorical", "choices": [0, 1]}}},
    ),
    ("search.arms.other.set.train.seed", {"design": "ablation", "arms": [{"name": "other", "set": {"train.seed": 5}}]}),
]


@pytest.mark.parametrize(("where", "search"), SEED_AS_KNOB, ids=["search", "grid", "arm"])
def test_the_seed_is_not_a_knob(tmp_path, where, search):
    """search.seeds sets every trial's seed, so a seed set by a space or an arm was silently overwritten."""
    msg = error_of(tmp_path, with_("search", search))
    assert msg == f"{where}: the seed is not a knob; list the seeds in search.seeds"


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_validates(path):
    study = load_study(path)
    assert study.name == path.stem  # the run dir defaults to runs/<name>: one study file, one name
