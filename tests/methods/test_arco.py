"""ARCO: MONA's module configured by ARCO's Params; sampler knobs, ablations, engine runs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from tests.methods.test_mona import SMALL, batch, build, fit
from vrsearch.engine.trainer import Trainer
from vrsearch.methods import get_method
from vrsearch.methods.mona import MONA
from vrsearch.study import load_study

ARCO_STAGE2 = {"stage", "sup", "unsup", "contrast", "contrast_spread", "reflect_outside", "hard_fraction", "nn"}


def test_defaults_are_the_papers():
    k = get_method("arco").knobs()
    assert (k["lambda_contrast"], k["lambda_unsup"], k["lambda_nn"]) == (0.01, 1.0, 1.0)
    assert (k["tau_t"], k["tau_s"], k["tau"], k["bank_size"], k["ema_decay"]) == (0.01, 0.1, 0.5, 36, 0.99)
    assert (k["sampler"], k["grid"], k["stage1_fraction"], k["stage"]) == ("sg", 16, 0.4, "both")
    assert k["tailness"] and k["diversity"] and k["unsup"] and k["inst_global"] and k["inst_local"]
    assert not {"lambda_eqv", "consistency", "student_augmentation", "teacher_augmentation"} & set(k)
    with pytest.raises(Exception, match="lambda_eqv"):
        get_method("arco").validate({"lambda_eqv": 1.0})
    assert get_method("arco").data_needs().unlabeled


def test_arco_is_mona_without_equivariance_and_heavy_augmentation():
    m = build("arco", stage=2)
    assert type(m) is MONA
    p = m.params
    assert not p.consistency and p.lambda_eqv == 0 and (p.student_augmentation, p.teacher_augmentation) == ("weak",) * 2
    assert (p.sampler, p.grid) == ("sg", 16)
    assert set(m(batch(), 0).terms) == ARCO_STAGE2


@pytest.mark.parametrize(
    "switch, gone",
    [
        ("tailness", {"contrast", "contrast_spread", "reflect_outside", "hard_fraction"}),
        ("diversity", {"nn"}),
        ("unsup", {"unsup"}),
    ],
)
def test_stage2_ablations_remove_their_terms(switch, gone):
    m = build("arco", stage=2, **{switch: False})
    out = m(batch(), 0)
    assert set(out.terms) == ARCO_STAGE2 - gone
    expected = out.terms["sup"] + sum(
        lam * out.terms[t] for lam, t in ((0.01, "contrast"), (1.0, "unsup"), (1.0, "nn")) if t in out.terms
    )
    assert float(out.loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("switch", ["inst_global", "inst_local"])
def test_stage1_ablations_remove_their_terms(switch):
    out = build("arco", stage=1, **{switch: False})(batch(), 0)
    assert set(out.terms) == {"stage", "sup", "inst_global", "inst_local"} - {switch}


def test_stage2_from_an_arco_stage1_checkpoint(tmp_path):
    src = build("arco", stage=1)
    src(batch(), 0)
    src.stage1_done += 1
    torch.save({"format": 1, "method": src.state_dict()}, tmp_path / "last.pt")
    m = build("arco", stage1_checkpoint=str(tmp_path / "last.pt"), sampler="sag")
    assert m.stage_of(0) == 2
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in m.state_dict().items() if k.startswith("student."))


def test_engine_logs_loss_spread_deterministically_and_resumes(tiny_study, tmp_path):
    params = {**SMALL, "sampler": "sag", "grid": 9, "stage1_fraction": 0.3}
    path = tiny_study(method={"name": "arco", "params": params}, train={"checkpoint_every": 4})
    a, b = fit(path, tmp_path / "a"), fit(path, tmp_path / "b")
    assert a.trial["status"] == "completed", a.trial["error"]
    hist = pd.DataFrame(a.history).dropna(subset=["loss"])
    assert hist.loss.map(math.isfinite).all() and "term_eqv" not in hist
    stage2 = hist[hist.term_stage == 2]
    assert len(stage2) == 4 and stage2.term_contrast_spread.notna().all() and stage2.term_reflect_outside.notna().all()
    cols = lambda out: pd.DataFrame(out.history).drop(columns="time_s")  # noqa: E731
    assert cols(a).equals(cols(b))
    assert Trainer(load_study(path), tmp_path / "split").fit(stop_at=4).status == "paused"
    assert cols(a).equals(cols(fit(path, tmp_path / "split")))
