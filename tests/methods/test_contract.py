"""One contract for every registered method: trains, logs its terms, is
deterministic, and its Params round-trip through the study schema."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from vrsearch.engine.trainer import Trainer
from vrsearch.methods import all_methods, get_method
from vrsearch.methods.base import StepOutput
from vrsearch.study import load_study, study_to_yaml
from vrsearch.study.load import StudyError

METHODS = [spec.name for spec in all_methods()]


def test_every_expected_method_is_registered():
    assert {"supervised", "fully_supervised", "mean_teacher", "cps", "self_training"} <= set(METHODS)


@pytest.mark.parametrize("name", METHODS)
def test_params_round_trip_through_the_schema(name, tiny_study):
    spec = next(s for s in all_methods() if s.name == name)
    knobs = spec.knobs()
    study = load_study(tiny_study(method={"name": name, "params": knobs}))
    assert study.method.params == spec.params.model_validate(knobs).model_dump(mode="json")
    again = yaml.safe_load(study_to_yaml(study))
    assert again["method"]["params"] == study.method.params


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_logs_terms_and_is_deterministic(name, tiny_study, tmp_path):
    path = tiny_study(
        method={"name": name},
        train={"iterations": 4, "eval": {"every": 4, "sw_batch_size": 4}, "log_every": 1, "threads": 1},
    )
    study = load_study(path)
    trainer = Trainer(study, tmp_path / "a")
    seen: list[StepOutput] = []
    original = trainer.step_module.forward

    def spy(batch, it):
        out = original(batch, it)
        seen.append(out)
        return out

    trainer.step_module.forward = spy
    fit = trainer.fit()
    assert fit.status == "completed", fit.error
    hist = pd.DataFrame(fit.history)
    assert hist.loss.dropna().map(math.isfinite).all()
    for out in seen:
        assert out.loss.dim() == 0 and out.loss.requires_grad
        assert all(v.dim() == 0 and not v.requires_grad for v in out.terms.values())
    logged = {c.removeprefix("term_") for c in hist.columns if c.startswith("term_")}
    assert set(seen[-1].terms) <= logged
    # the report labels every loss-term panel with the method's description of the term
    undescribed = (logged | {"loss"}) - set(get_method(name).terms)
    assert not undescribed, f"{name} logs terms without a description in its registration: {sorted(undescribed)}"
    fit2 = Trainer(load_study(path), tmp_path / "b").fit()
    cols = lambda f: pd.DataFrame(f.history).drop(columns="time_s")  # noqa: E731
    assert cols(fit).equals(cols(fit2))


#: MONA/ARCO's paper-sized representation head (512 channels at full resolution) costs
#: ~12 s per tiny run; the batch is what this test is about
LIGHT = {
    name: {
        "embedding_dim": 8,
        "queries": 16,
        "keys": 32,
        "negative_bank_size": 32,
        "local_crops": 4,
        "local_crop_size": 4,
    }
    for name in ("mona", "arco")
}


def smallest_batch(name: str) -> dict:
    """The smallest batch a study may give the method: one labeled image, plus one
    unlabeled image when the method trains on unlabeled data (0 is refused then)."""
    spec = next(s for s in all_methods() if s.name == name)
    return {"labeled": 1, "unlabeled": 1 if spec.data_needs().unlabeled else 0}


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_on_its_smallest_valid_batch(name, tiny_study, tmp_path):
    """Every stage of every method runs with batch 1 (+1): 4 iterations cover MONA's and
    ARCO's stage 1 and 2, LCL's warm-up and joint phase and SPCL's ramp."""
    batch = smallest_batch(name)
    params = LIGHT.get(name, {})
    path = tiny_study(
        method={"name": name, "params": params},
        train={"iterations": 4, "batch": batch, "log_every": 1, "eval": {"every": 4, "sw_batch_size": 4}, "threads": 1},
    )
    fit = Trainer(load_study(path), tmp_path / "small").fit()
    assert fit.status == "completed", fit.error
    hist = pd.DataFrame(fit.history).dropna(subset=["loss"])
    assert len(hist) == 4 and hist.loss.map(math.isfinite).all()


@pytest.mark.parametrize("name", METHODS)
def test_zero_unlabeled_is_refused_where_the_method_needs_unlabeled_images(name, tiny_study):
    spec = next(s for s in all_methods() if s.name == name)
    path = tiny_study(method={"name": name}, train={"batch": {"labeled": 1, "unlabeled": 0}})
    if not spec.data_needs().unlabeled:
        assert load_study(path).train.batch.unlabeled == 0
        return
    with pytest.raises(StudyError) as info:
        load_study(path)
    msg = str(info.value)
    assert msg.startswith("train.batch.unlabeled: ") and name in msg and "\n" not in msg
