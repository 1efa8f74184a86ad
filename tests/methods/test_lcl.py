"""LCL method: schedule, snapshot, gate, gradient flow, engine runs, study schema."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch
import yaml

from tests.methods.common import MODEL, C, build_method, make_batch  # noqa: F401
from vrsearch.components.views import step_generator
from vrsearch.engine.trainer import Trainer
from vrsearch.engine.trial import run_trial
from vrsearch.methods import get_method
from vrsearch.methods.base import BuildContext
from vrsearch.methods.lcl import LCL, agreement_dice
from vrsearch.study import load_study
from vrsearch.study.load import StudyError
from vrsearch.study.schema import ModelConfig


def build(iterations: int = 20, **params) -> LCL:
    return build_method("lcl", iterations, **params)


# -- schedule and snapshot --------------------------------------------------------


def test_paper_schedule_and_defaults():
    spec = get_method("lcl")
    knobs = spec.knobs()
    assert knobs["loss"] == "dice" and knobs["lambda_cont"] == 0.1 and knobs["tau"] == 0.1
    assert knobs["samples_per_class"] == 3 and knobs["refreshes"] == 3 and knobs["gate"] == 0.0
    m = build(iterations=20000)  # paper: 5000 warm-up, then 3 x 5000 joint iterations
    assert m.warmup == 5000 and m.period == 5000
    due = [m.refreshes_due(i) for i in (0, 4999, 5000, 9999, 10000, 15000, 19999)]
    assert due == [0, 0, 1, 1, 2, 3, 3]
    assert build(iterations=100, warmup_iterations=10, refreshes=2).period == 45


def test_snapshot_refreshes_and_is_in_state_dict():
    m = build(iterations=8, warmup_iterations=2, refreshes=2)  # refreshes at 2 and 5
    batch = make_batch()
    assert "refresh_count" in m.state_dict()
    assert any(k.startswith("labeller.") for k in m.state_dict())
    opt = torch.optim.SGD(m.trainable_parameters(), lr=0.5)
    counts = []
    for it in range(8):
        out = m(batch, it)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        counts.append(int(m.refresh_count))
        if it == 2:  # the snapshot is the network as it was at the start of iteration 2
            snap = [p.clone() for p in m.labeller.parameters()]
    assert counts == [0, 0, 1, 1, 1, 2, 2, 2]
    assert not all(torch.equal(a, b) for a, b in zip(snap, m.labeller.parameters(), strict=True))
    # no parameter of the snapshot is trained or receives a gradient
    assert all(p.grad is None and not p.requires_grad for p in m.labeller.parameters())
    assert {id(p) for p in m.trainable_parameters()} == {id(p) for p in m.net.parameters()}
    assert not m.labeller.training and m.net.training
    # restoring the state restores snapshot and counter
    other = build(iterations=8, warmup_iterations=2, refreshes=2)
    other.load_state_dict(m.state_dict())
    assert int(other.refresh_count) == 2
    assert all(torch.equal(a, b) for a, b in zip(other.labeller.parameters(), m.labeller.parameters(), strict=True))


def test_warmup_is_supervised_only_and_joint_logs_terms():
    m = build(warmup_iterations=1, sampler="sag", grid=9)
    warm = m(make_batch(), 0)
    assert set(warm.terms) == {"sup"} and float(warm.loss.detach()) == float(warm.terms["sup"])
    out = m(make_batch(), 1)
    assert set(out.terms) == {"sup", "cont", "gate_kept", "n_classes", "reflect_outside"}
    assert all(math.isfinite(float(v)) for v in out.terms.values())
    assert float(out.terms["cont"]) > 0 and float(out.terms["gate_kept"]) == 1.0
    assert float(out.loss.detach()) == pytest.approx(float(out.terms["sup"] + 0.1 * out.terms["cont"]), rel=1e-6)
    # same iteration, same state: same numbers (the step generator is seeded by seed and iteration)
    again = build(warmup_iterations=1, sampler="sag", grid=9)
    again.load_state_dict(m.state_dict())
    assert float(again(make_batch(), 1).terms["cont"]) == float(out.terms["cont"])
    # the step generator it draws from differs across seeds and iterations
    draws = [torch.rand(8, generator=step_generator(s, i)) for s, i in ((0, 1), (1, 1), (0, 2))]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])


@pytest.mark.parametrize("matching", ["intra", "inter", "partner"])
def test_every_matching_runs_a_joint_step(matching):
    m = build(warmup_iterations=0, matching=matching)
    out = m(make_batch(), 0)
    assert math.isfinite(float(out.terms["cont"])) and float(out.terms["cont"]) > 0


# -- gradient flow ----------------------------------------------------------------


def test_contrastive_gradient_reaches_feature_head_not_snapshot():
    m = build(warmup_iterations=0, matching="inter")
    out = m(make_batch(), 0)
    m.zero_grad(set_to_none=True)
    (out.loss - out.terms["sup"]).backward()  # = λ·L_cont
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.net.feature_head.parameters())
    assert all(p.grad is None for p in m.labeller.parameters())


@pytest.mark.parametrize("matching", ["intra", "inter"])
def test_the_step_with_the_projected_embeddings_equals_the_dense_step(matching, monkeypatch):
    """The method forms the embeddings only at the anchors and in the class means
    (``project``); forming them at every voxel instead (the loss's dense path, the head's
    full output) gives the same step: loss and every parameter's gradient ≤ 1e-5 relative."""
    import vrsearch.methods.lcl as lcl_module
    from vrsearch.losses.lcl import local_contrastive_terms

    m = build(warmup_iterations=0, matching=matching)
    batch = make_batch()
    z_full = m.net(batch.image, features=True)[1]
    u, (W, bias) = m.net(batch.image, features="hidden")[1], m.net.projection()
    torch.testing.assert_close(torch.einsum("ov,bv...->bo...", W, u) + bias.view(1, -1, 1, 1, 1), z_full)

    def step():
        m.zero_grad(set_to_none=True)
        out = m(batch, 0)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}

    projected = step()
    # the dense reference: the network's full head output at every voxel, the loss without project
    from vrsearch.models.nets import SegNet

    real_forward, real_terms = SegNet.forward, local_contrastive_terms
    monkeypatch.setattr(
        SegNet,
        "forward",
        lambda net, x, features=False: real_forward(net, x, True if features == "hidden" else features),
    )
    monkeypatch.setattr(lcl_module, "local_contrastive_terms", lambda *a, project=None, **kw: real_terms(*a, **kw))
    reference = step()
    torch.testing.assert_close(projected[0], reference[0], rtol=1e-5, atol=1e-7)
    assert projected[1].keys() == reference[1].keys() and "net.feature_head.2.weight" in projected[1]
    for name, grad in reference[1].items():
        torch.testing.assert_close(projected[1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


class _Recorder(torch.nn.Module):
    def __init__(self, loss):
        super().__init__()
        self.loss, self.calls = loss, []

    def forward(self, logits, target):
        self.calls.append((logits, target))
        out = self.loss(logits, target)
        self.calls[-1] += (out,)
        return out


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_pseudo_labels_never_reach_the_segmentation_loss(norm):
    spec = get_method("lcl")
    model = ModelConfig(channels=(4, 8), feature_dim=4, num_res_units=0, norm=norm)
    ctx = BuildContext(model, C, 10, seed=0)
    state = spec.build(spec.validate({"warmup_iterations": 0}), ctx).state_dict()
    grads = []
    for unlabeled in (2, 0):
        m = spec.build(spec.validate({"warmup_iterations": 0}), ctx).train()
        m.load_state_dict(state)
        m.sup = _Recorder(m.sup)
        batch = make_batch(unlabeled=unlabeled)
        m(batch, 0)
        assert len(m.sup.calls) == 1
        logits, target, sup = m.sup.calls[0]
        assert torch.equal(target, batch.label) and logits.shape[0] == batch.image.shape[0]
        grads.append(torch.autograd.grad(sup, list(m.net.parameters()), allow_unused=True))
    for a, b in zip(*grads, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)


# -- gate -------------------------------------------------------------------------


def test_agreement_dice():
    a = torch.tensor([[0, 1, 1, 2], [0, 0, 0, 0], [1, 1, 0, 0]])
    b = torch.tensor([[0, 1, 2, 2], [0, 0, 0, 0], [0, 0, 2, 2]])
    got = agreement_dice(a, b, 3)
    assert got.tolist() == pytest.approx([(2 / 3 + 2 / 3) / 2, 1.0, 0.0])


def test_gate_drops_unlabeled_patches_and_one_keeps_fewer():
    kept = {}
    for gate in (0.0, 0.9, 1.0):
        m = build(warmup_iterations=0, gate=gate)
        out = m(make_batch(unlabeled=4), 0)
        kept[gate] = float(out.terms["gate_kept"])
        assert math.isfinite(float(out.loss.detach()))
    assert kept[0.0] == 1.0 and kept[1.0] <= kept[0.9] <= 1.0 and kept[1.0] < 1.0


# -- engine -----------------------------------------------------------------------

SHORT = {
    "name": "lcl",
    "params": {"warmup_iterations": 2, "refreshes": 2, "sampler": "sg", "grid": 9, "matching": "inter", "gate": 0.5},
}


def fit(study_path, ckpt, **kw):
    return run_trial(load_study(study_path), "t", ckpt, **kw)


def test_trains_through_engine_deterministically(tiny_study, tmp_path):
    path = tiny_study(method=SHORT)
    a, b = fit(path, tmp_path / "a"), fit(path, tmp_path / "b")
    assert a.trial["status"] == "completed", a.trial["error"]
    hist = pd.DataFrame(a.history)
    assert {"loss", "term_sup", "term_cont", "term_gate_kept", "term_n_classes", "term_reflect_outside"} <= set(hist)
    joint = hist[hist.iteration > 2].dropna(subset=["loss"])
    assert len(joint) == 4 and joint.term_cont.notna().all() and joint.loss.map(math.isfinite).all()
    assert hist[hist.iteration.isin([1, 2])].term_cont.isna().all()  # warm-up: L_sup only
    assert pd.DataFrame(a.history).drop(columns="time_s").equals(pd.DataFrame(b.history).drop(columns="time_s"))
    assert pd.DataFrame(a.cases).equals(pd.DataFrame(b.cases))


def test_resume_is_bit_exact_across_a_refresh(tiny_study, tmp_path):
    path = tiny_study(method=SHORT, train={"checkpoint_every": 3})  # refreshes at 2 and 4
    whole = fit(path, tmp_path / "whole")
    study = load_study(path)
    first = Trainer(study, tmp_path / "split").fit(stop_at=3)
    assert first.status == "paused" and first.iterations == 3
    resumed = run_trial(study, "t", tmp_path / "split")
    cols = lambda out: pd.DataFrame(out.history).drop(columns="time_s")  # noqa: E731
    assert cols(whole).equals(cols(resumed))
    assert pd.DataFrame(whole.cases).equals(pd.DataFrame(resumed.cases))


# -- study schema -----------------------------------------------------------------

EVERY_KNOB = {
    "loss": "dice_ce",
    "lambda_cont": 1.0,
    "tau": 0.2,
    "samples_per_class": 5,
    "matching": "inter",
    "warmup_fraction": 0.1,
    "warmup_iterations": 7,
    "refreshes": 4,
    "gate": 0.8,
    "sampler": "sag",
    "grid": 25,
    "rounding": "random",
    "include_background": True,
}


def test_every_knob_round_trips_through_the_study(tiny_study):
    study = load_study(tiny_study(method={"name": "lcl", "params": EVERY_KNOB}))
    assert study.method.params == EVERY_KNOB
    dumped = yaml.safe_load(yaml.safe_dump(study.method.params))
    again = load_study(tiny_study(method={"name": "lcl", "params": dumped}))
    assert again.method.params == EVERY_KNOB
    assert get_method("lcl").validate(study.method.params).model_dump() == EVERY_KNOB


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"lambda_cnt": 0.1}, "did you mean 'lambda_cont'"),
        ({"grid": 12}, "grid"),
        ({"matching": "cross"}, "matching"),
        ({"gate": 1.5}, "gate"),
        ({"tau": 0}, "tau"),
    ],
)
def test_bad_knobs_are_study_errors(tiny_study, bad, match):
    with pytest.raises(StudyError, match=match):
        load_study(tiny_study(method={"name": "lcl", "params": bad}))
