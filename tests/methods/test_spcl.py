"""SPCL method: meta-labels, gradient flow, engine runs (determinism, resume), Params."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.methods import get_method
from vrsearch.methods.base import Batch, BuildContext
from vrsearch.methods.spcl import SPCL, SPCLParams, flip_samples, random_view
from vrsearch.study import load_study
from vrsearch.study.load import StudyError
from vrsearch.study.schema import ModelConfig

TINY = ModelConfig(channels=(4, 8, 16), feature_dim=4, num_res_units=0)


def build(**params) -> SPCL:
    spec = get_method("spcl")
    return spec.build(spec.validate({"embedding_dim": 8, **params}), BuildContext(TINY, 3, 10, seed=0))


def batch(n_lab: int = 2, n_unl: int = 2, size: int = 16) -> Batch:
    g = torch.Generator().manual_seed(0)
    return Batch(
        image=torch.rand(n_lab, 1, size, size, size, generator=g),
        label=torch.randint(0, 3, (n_lab, 1, size, size, size), generator=g),
        unlabeled=torch.rand(n_unl, 1, size, size, size, generator=g) if n_unl else None,
        cases=[f"c{i % 2}" for i in range(n_lab)],
        unlabeled_cases=[f"u{i}" for i in range(n_unl)],
        positions=torch.linspace(0.05, 0.95, n_lab),
        unlabeled_positions=torch.linspace(0.1, 0.7, n_unl) if n_unl else None,
    )


def test_defaults_are_the_papers():
    knobs = get_method("spcl").knobs()
    assert knobs["mode"] == "joint" and knobs["tau"] == 0.07 and knobs["weighting"] == "linear"
    assert (knobs["gamma_start"], knobs["gamma_end"]) == (2.0, 50.0)
    assert knobs["meta_labels"] == ["position", "patient"] and knobs["position_partitions"] == 5
    assert (knobs["lambda_position"], knobs["lambda_patient"], knobs["lambda_phase"]) == (1.0, 1e-3, 1e-2)
    assert (knobs["lambda_reg"], knobs["lambda_sp"], knobs["loss"]) == (0.1, 5e-3, "ce")
    assert (knobs["embedding_dim"], knobs["ema_decay"]) == (256, 0.99)
    assert get_method("spcl").data_needs().unlabeled


def test_meta_labels():
    m = build(position_partitions=5)
    b = batch(2, 2)
    b.positions = torch.tensor([0.0, 0.19])
    b.unlabeled_positions = torch.tensor([0.2, 0.999])
    b.cases, b.unlabeled_cases = ["p7", "p3"], ["p7", "p9"]
    labels = m.meta_labels(b, torch.device("cpu"))
    assert labels["position"].tolist() == [0, 0, 1, 4]
    assert labels["patient"].tolist() == [0, 1, 0, 2]
    b.unlabeled_positions = torch.tensor([0.2, math.nan])
    with pytest.raises(ValueError, match="NaN"):
        m.meta_labels(b, torch.device("cpu"))


def test_phase_and_patient_come_from_the_case_meta():
    m = build(meta_labels=["patient", "phase"])
    b = batch(2, 2)
    b.cases, b.unlabeled_cases = ["p1_ED", "p1_ES"], ["p2_ED", "p3_ES"]
    b.case_meta = [{"patient": "p1", "phase": "ED"}, {"patient": "p1", "phase": "ES"}]
    b.unlabeled_meta = [{"patient": "p2", "phase": "ED"}, {}]
    labels = m.meta_labels(b, torch.device("cpu"))
    assert labels["patient"].tolist() == [0, 0, 1, 2]  # p3_ES has no patient meta: its case id
    phase = labels["phase"].tolist()
    assert phase[0] == phase[2] and phase[0] != phase[1] and phase[3] not in phase[:3]  # missing: no positive
    b.case_meta, b.unlabeled_meta = [{}, {}], [{}, {}]
    with pytest.raises(ValueError, match="provides no cardiac phase"):
        m.meta_labels(b, torch.device("cpu"))


def test_params_reject_bad_meta_labels():
    with pytest.raises(ValueError):
        SPCLParams(meta_labels=[])
    with pytest.raises(ValueError):
        SPCLParams(meta_labels=["position", "position"])
    with pytest.raises(ValueError):
        SPCLParams(meta_labels=["slice"])


def test_encoder_output_and_projector_shapes():
    m = build()
    logits, z = m.embed(torch.rand(3, 1, 16, 16, 16))
    assert logits.shape == (3, 3, 16, 16, 16) and z.shape == (3, 8)
    assert m.projector.mlp[0].in_features == 16  # the bottleneck's channels
    assert not m.encoder_block._forward_hooks  # the hook lives only during the forward pass


def test_random_view_flips_are_undone():
    x = torch.rand(4, 1, 8, 6, 4)
    _, flips = random_view(x, torch.Generator().manual_seed(1))
    assert torch.equal(flip_samples(flip_samples(x, flips), flips), x)


def test_gradient_flow_from_l_sp():
    m = build()
    sp, terms, *_ = m.contrastive(batch(), it=5)
    sp.backward()
    enc = [p.grad for p in m.encoder_block.parameters()]
    assert enc and all(g is not None and g.abs().sum() > 0 for g in enc)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.projector.parameters())
    assert all(p.grad is None for p in m.net.seg_head.parameters())  # L_sp reaches only the encoder
    assert all(p.grad is None for p in m.teacher.parameters())
    assert {"sp", "sp_position", "sp_patient", "gamma", "mean_weight"} <= set(terms)


def test_joint_step_leaves_the_teacher_without_gradient():
    m = build()
    before = [p.clone() for p in m.teacher.parameters()]
    out = m(batch(), 0)
    out.loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in m.teacher.parameters())
    assert {"sup", "mt", "sp", "sp_position", "sp_patient", "gamma", "mean_weight"} <= set(out.terms)
    assert float(out.terms["mt"]) > 0
    assert all(p.requires_grad for p in m.projector.parameters())
    with torch.no_grad():  # an optimiser step, then the EMA update (warm-up: t = min(1 − 1/2, 0.99))
        for p in m.net.parameters():
            p.add_(1.0)
    m.after_step(0)
    for t, b, s in zip(m.teacher.parameters(), before, m.net.parameters()):
        torch.testing.assert_close(t, 0.5 * b + 0.5 * s)


def test_pretrain_stages_and_gamma_schedule():
    m = build(mode="pretrain", pretrain_fraction=0.5)  # 10 iterations: 5 contrastive + 5 fine-tuning
    assert m.teacher is None and m.pretrain_iters == 5
    assert [m.contrastive_stage(i) for i in range(10)] == [True] * 5 + [False] * 5
    assert m.gamma(0) == 2.0 and m.gamma(4) == 50.0
    out = m(batch(), 7)
    assert set(out.terms) == {"sup"}
    out.loss.backward()
    assert all(p.grad is None for p in m.projector.parameters())  # head dropped when fine-tuning
    j = build()
    assert j.gamma(0) == 2.0 and j.gamma(9) == 50.0


def test_steps_without_unlabeled_images():
    out = build()(batch(n_unl=0), 0)
    assert torch.isfinite(out.loss) and float(out.terms["mt"]) == 0.0


# -- through the real engine ------------------------------------------------------


def _study(tiny_study, mode: str, **params):
    return tiny_study(
        method={"name": "spcl", "params": {"mode": mode, "embedding_dim": 8, **params}},
        train={"checkpoint_every": 2},
    )


def _hist(out) -> pd.DataFrame:
    return pd.DataFrame(out.history).drop(columns="time_s")


@pytest.mark.parametrize("mode,stop", [("joint", 4), ("pretrain", 2)])
def test_trains_deterministically_and_resumes_bit_exactly(tiny_study, tmp_path, mode, stop):
    path = _study(tiny_study, mode)
    study = load_study(path)
    a = run_trial(study, "t", tmp_path / "a")
    b = run_trial(load_study(path), "t", tmp_path / "b")
    assert a.trial["status"] == "completed", a.trial["error"]
    hist = _hist(a)
    losses = hist.dropna(subset=["loss"])
    assert len(losses) == 6 and losses["loss"].map(math.isfinite).all()
    if mode == "joint":
        cols = {
            "term_sup",
            "term_mt",
            "term_sp",
            "term_sp_position",
            "term_sp_patient",
            "term_gamma",
            "term_mean_weight",
        }
        assert cols <= set(hist.columns) and losses[sorted(cols)].notna().all().all()
    else:  # 3 contrastive iterations, then 3 of fine-tuning
        assert losses["term_sp"].notna().tolist() == [True] * 3 + [False] * 3
        assert losses["term_sup"].notna().tolist() == [False] * 3 + [True] * 3
    assert losses["term_gamma"].dropna().iloc[0] == 2.0 and losses["term_gamma"].dropna().iloc[-1] == 50.0
    assert hist.equals(_hist(b))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(b.cases))

    first = Trainer(study, tmp_path / "split").fit(stop_at=stop)
    assert first.status == "paused" and first.iterations == stop
    resumed = run_trial(load_study(path), "t", tmp_path / "split")
    assert hist.equals(_hist(resumed))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(resumed.cases))
    assert a.trial["test_dice"] == resumed.trial["test_dice"]


def test_params_round_trip_through_load_study(tiny_study):
    params = {
        "mode": "pretrain",
        "tau": 0.1,
        "gamma_start": 1.5,
        "gamma_end": 70.0,
        "weighting": "hard",
        "meta_labels": ["patient"],
        "position_partitions": 3,
        "lambda_position": 0.5,
        "lambda_patient": 0.01,
        "lambda_phase": 0.001,
        "lambda_reg": 0.2,
        "lambda_sp": 0.02,
        "pretrain_fraction": 0.25,
        "loss": "dice_ce",
        "embedding_dim": 64,
        "ema_decay": 0.999,
    }
    study = load_study(tiny_study(method={"name": "spcl", "params": params}))
    assert study.method.params == params
    assert SPCLParams(**study.method.params).model_dump() == params
    defaults = load_study(tiny_study(method={"name": "spcl"})).method.params
    assert defaults == SPCLParams().model_dump(mode="json")
    with pytest.raises(StudyError, match="gamma_end"):
        load_study(tiny_study(method={"name": "spcl", "params": {"gama_end": 3.0}}))
