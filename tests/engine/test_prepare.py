"""A method declares its data needs from its Params; ``prepare_for`` prepares the data
for exactly those (and refuses, in one line, data that cannot meet them)."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_study_dict
from vrsearch.core.step import DataNeeds
from vrsearch.engine.prepare import data_needs, prepare_for
from vrsearch.errors import DataError
from vrsearch.methods import all_methods, get_method
from vrsearch.study.load import build_study


def study(root, tmp_path, method: str, **params):
    return build_study(tiny_study_dict(root, tmp_path / "run", method={"name": method, "params": params}))


@pytest.mark.parametrize(
    ("method", "params", "needs"),
    [
        ("supervised", {}, DataNeeds()),
        ("supervised", {"all_labels": True}, DataNeeds(all_labels=True)),
        ("fully_supervised", {}, DataNeeds(all_labels=True)),
        ("mean_teacher", {}, DataNeeds(unlabeled=True)),
        ("spcl", {}, DataNeeds(unlabeled=True)),
        ("spcl", {"meta_labels": ["position", "phase"]}, DataNeeds(unlabeled=True, meta=("phase",))),
    ],
)
def test_needs_follow_the_params(tiny_phantom, tmp_path, method, params, needs):
    assert data_needs(study(tiny_phantom, tmp_path, method, **params)) == needs


def test_all_labels_keeps_every_training_label(tiny_phantom, tmp_path):
    few = prepare_for(study(tiny_phantom, tmp_path, "supervised"), check=False).split
    every = prepare_for(study(tiny_phantom, tmp_path, "fully_supervised"), check=False).split
    assert set(few.labeled) < set(every.labeled)  # a prefix of every training label
    assert every.val == few.val and every.test == few.test


def test_a_meta_label_the_data_lacks_is_one_line_before_training(tiny_phantom, tmp_path):
    s = study(tiny_phantom, tmp_path, "spcl", meta_labels=["phase"])
    with pytest.raises(DataError, match=r"method spcl reads the 'phase' meta-label, but \d+ training cases"):
        prepare_for(s, check=False)


def test_every_method_declares_its_needs():
    for spec in all_methods():
        assert isinstance(spec.data_needs(), DataNeeds), spec.name
    assert get_method("dvcl").data_needs().unlabeled and not get_method("supervised").data_needs().unlabeled
