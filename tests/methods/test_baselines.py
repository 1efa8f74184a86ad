"""Semi-supervised baselines: gradient flow of every term, and training through the engine."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from tests.methods.common import MODEL, C, make_batch  # noqa: F401
from tests.methods.common import build_method as build
from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.methods.base import Batch
from vrsearch.study import load_study


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def has_grad(module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def backprop(method, term: torch.Tensor) -> None:
    method.zero_grad(set_to_none=True)
    term.backward(retain_graph=True)


# -- gradient flow ---------------------------------------------------------------


def test_mean_teacher_gradient_flow():
    m = build("mean_teacher")
    t = m.terms(make_batch(), 3)
    assert set(t) == {"sup", "cons", "rampup"} and float(t["cons"].detach()) > 0
    for name in ("sup", "cons"):
        backprop(m, t[name])
        assert has_grad(m.student), name
        assert all(g is None for g in grads(m.teacher)), name
    assert not any(p.requires_grad for p in m.teacher.parameters())
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.student.parameters()}


def test_mean_teacher_consistency_inputs_and_ema_step():
    m = build("mean_teacher", noise_std=0.0, ema_decay=0.5)
    batch = make_batch()
    # without noise, at init the teacher equals the student: zero consistency
    assert float(m.terms(batch, 0)["cons"].detach()) == pytest.approx(0.0, abs=1e-12)
    before = [p.clone() for p in m.teacher.parameters()]
    with torch.no_grad():
        for p in m.student.parameters():
            p.add_(0.1)
    m.after_step(5)
    for b, q, s in zip(before, m.teacher.parameters(), m.student.parameters(), strict=True):
        torch.testing.assert_close(q, 0.5 * b + 0.5 * s)
    assert m.predictor() is m.teacher.module
    assert build("mean_teacher", evaluate="student").predictor() is not None
    # consistency_on=all with no unlabeled patches still has a consistency term
    m_all = build("mean_teacher", consistency_on="all")
    t = m_all.terms(Batch(batch.image, batch.label, None), 0)
    assert float(t["cons"].detach()) > 0
    t = build("mean_teacher").terms(Batch(batch.image, batch.label, None), 0)
    assert float(t["cons"].detach()) == 0.0


@pytest.mark.parametrize("cps_on", ["all", "unlabeled"])
def test_cps_gradient_flow(cps_on):
    m = build("cps", cps_on=cps_on)
    t = m.terms(make_batch(), 4)
    assert {"sup_a", "sup_b", "cps_a", "cps_b", "cps", "rampup"} <= set(t)
    expect = {
        "sup_a": (True, False),
        "cps_a": (True, False),
        "sup_b": (False, True),
        "cps_b": (False, True),
        "cps": (True, True),
    }
    for name, (into_a, into_b) in expect.items():
        backprop(m, t[name])
        assert has_grad(m.net_a) == into_a, name
        assert has_grad(m.net_b) == into_b, name


def test_cps_pseudo_labels_and_predictors():
    m = build("cps")
    batch = make_batch()
    t = m.terms(batch, 0)
    x = torch.cat([batch.image, batch.unlabeled])
    with torch.no_grad():
        la, lb = m.net_a(x), m.net_b(x)
    torch.testing.assert_close(t["cps_a"], torch.nn.functional.cross_entropy(la, lb.argmax(1)))
    torch.testing.assert_close(t["cps_b"], torch.nn.functional.cross_entropy(lb, la.argmax(1)))
    assert not torch.equal(la, lb)  # different initialisations
    assert m.predictor() is m.net_a and build("cps", evaluate="b").predictor() is not None
    mean = build("cps", evaluate="mean")
    with torch.no_grad():
        out = mean.predictor()(x)
        want = 0.5 * (torch.softmax(mean.net_a(x), 1) + torch.softmax(mean.net_b(x), 1))
    torch.testing.assert_close(torch.softmax(out, 1), want)
    assert set(mean.state_dict()) == set(m.state_dict())  # the ensemble adds no state


def test_self_training_gradient_flow_and_warmup():
    m = build("self_training", iterations=10)  # refresh every 2 iterations
    assert m.refresh_every == 2
    batch = make_batch()
    t = m.terms(batch, 1)  # before the first refresh: no pseudo-label loss
    assert float(t["pseudo"].detach()) == 0.0 and float(t["pseudo_fraction"].detach()) == 0.0
    m.after_step(1)
    assert int(m.refreshes) == 1
    for a, b in zip(m.snapshot.state_dict().values(), m.student.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    t = m.terms(batch, 2)
    assert float(t["pseudo"].detach()) > 0 and float(t["pseudo_fraction"].detach()) == 1.0
    for name in ("sup", "pseudo"):
        backprop(m, t[name])
        assert has_grad(m.student), name
        assert all(g is None for g in grads(m.snapshot)), name
    assert m.predictor() is m.student


def test_self_training_threshold_masks_voxels():
    m = build("self_training", iterations=10)
    batch = make_batch()
    with torch.no_grad():
        p = torch.softmax(m.snapshot(batch.unlabeled), 1)
        conf = p.max(1).values
        threshold = float(conf.median())
        keep = conf >= threshold
        ce = torch.nn.functional.cross_entropy(m.student(batch.unlabeled), p.argmax(1), reduction="none")
    m.params = m.params.model_copy(update={"threshold": threshold})
    t = m.terms(batch, 5)
    assert 0 < keep.float().mean() < 1
    torch.testing.assert_close(t["pseudo_fraction"], keep.float().mean())
    torch.testing.assert_close(t["pseudo"].detach(), ce[keep].mean(), rtol=1e-4, atol=1e-5)
    t = build("self_training", threshold=1.0).terms(batch, 5)  # nothing kept: zero, not NaN
    assert float(t["pseudo"].detach()) == 0.0 and float(t["pseudo_fraction"].detach()) == 0.0


# -- through the real engine -----------------------------------------------------

TERMS = {
    "mean_teacher": {"sup", "cons", "rampup"},
    "cps": {"sup_a", "sup_b", "cps", "rampup"},
    "self_training": {"sup", "pseudo", "pseudo_fraction"},
}


def history(out) -> pd.DataFrame:
    return pd.DataFrame(out.history).drop(columns="time_s")


@pytest.mark.parametrize("name", sorted(TERMS))
def test_trains_through_the_engine_deterministically(name, tiny_study, tmp_path):
    path = tiny_study(method={"name": name}, dataset={"labeled_ratio": 0.5})
    a = run_trial(load_study(path), "t", tmp_path / "a")
    assert a.trial["status"] == "completed", a.trial["error"]
    assert a.trial["n_unlabeled"] > 0
    hist = history(a)
    losses = hist.dropna(subset=["loss"])
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses.loss)
    assert {f"term_{k}" for k in TERMS[name]} <= set(hist.columns)
    assert losses[[f"term_{k}" for k in TERMS[name]]].notna().all().all()
    if name == "self_training":  # refresh every round(0.2·6) = 1 iteration: pseudo-labels used
        assert (losses.term_pseudo_fraction.iloc[1:] > 0).all()
    b = run_trial(load_study(path), "t", tmp_path / "b")
    assert hist.equals(history(b))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(b.cases))


@pytest.mark.parametrize("name", sorted(TERMS))
def test_resume_is_bit_identical(name, tiny_study, tmp_path):
    """Teacher / twin / snapshot weights and counters all live in the checkpoint."""
    path = tiny_study(method={"name": name}, train={"checkpoint_every": 2})
    study = load_study(path)
    whole = run_trial(study, "t", tmp_path / "whole")
    first = Trainer(study, tmp_path / "split").fit(stop_at=4)
    assert first.status == "paused" and first.iterations == 4
    resumed = run_trial(study, "t", tmp_path / "split")
    assert history(whole).equals(history(resumed))
    assert pd.DataFrame(whole.cases).equals(pd.DataFrame(resumed.cases))
    assert whole.trial["test_dice"] == resumed.trial["test_dice"]
