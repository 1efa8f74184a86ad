"""Teachers (EMA, snapshots, CPS twins) and what teachers output: pseudo-labels,
confidence, entropy; plus the ramp-up schedule they are weighted with."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vrsearch.components.pseudo import class_argmax, entropy, pseudo_labels
from vrsearch.components.schedules import fraction_of, sigmoid_rampup
from vrsearch.components.teachers import EMATeacher, FrozenCopy, twin_networks


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 2, 1))


def _train_step(net: nn.Module, opt, x: torch.Tensor) -> None:
    opt.zero_grad()
    net(x).square().mean().backward()
    opt.step()


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_matches_naive_formula(warmup):
    torch.manual_seed(0)
    student = small_net().double()
    teacher = EMATeacher(student, decay=0.9, warmup=warmup)
    ref = [p.detach().clone() for p in student.parameters()]
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    for step in range(1, 8):
        _train_step(student, opt, torch.randn(2, 1, 5, 5, dtype=torch.float64))
        t = min(1 - 1 / (step + 1), 0.9) if warmup else 0.9
        assert teacher.momentum(step) == t
        ref = [t * r + (1 - t) * p.detach() for r, p in zip(ref, student.parameters(), strict=True)]
        teacher.update(student, step)
        for r, q in zip(ref, teacher.module.parameters(), strict=True):
            torch.testing.assert_close(q, r, rtol=1e-12, atol=1e-12)
        for b, s in zip(teacher.module.buffers(), student.buffers(), strict=True):
            assert torch.equal(b, s)  # BatchNorm statistics are copied, not averaged
    if warmup:  # the first update with step=1 averages teacher and student equally
        assert teacher.momentum(1) == 0.5


def test_teacher_never_gets_gradients():
    student = small_net()
    teacher = EMATeacher(student, 0.99)
    assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 1, 4, 4, requires_grad=True)
    out = teacher(x)
    assert not out.requires_grad
    (student(x).sum() + out.sum()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    state = {k for k in teacher.state_dict()}
    assert "module.1.running_mean" in state and "module.0.weight" in state


def test_frozen_copy_is_an_exact_snapshot():
    torch.manual_seed(1)
    student = small_net()
    snap = FrozenCopy(student)
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    _train_step(student, opt, torch.randn(2, 1, 4, 4))
    assert not all(torch.equal(a, b) for a, b in zip(snap.parameters(), student.parameters(), strict=True))
    snap.copy_from(student)
    for a, b in zip(snap.state_dict().values(), student.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert all(not p.requires_grad for p in snap.parameters())


def test_twins_differ_are_reproducible_and_keep_global_rng():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = twin_networks(small_net, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    a2, b2 = twin_networks(small_net, seed=7)
    pa, pb = torch.cat([p.flatten() for p in a.parameters()]), torch.cat([p.flatten() for p in b.parameters()])
    assert not torch.equal(pa, pb)
    assert torch.equal(pa, torch.cat([p.flatten() for p in a2.parameters()]))
    assert torch.equal(pb, torch.cat([p.flatten() for p in b2.parameters()]))
    a3, _ = twin_networks(small_net, seed=8)  # seed+1's A is seed's B
    assert torch.equal(pb, torch.cat([p.flatten() for p in a3.parameters()]))


def _naive_entropy(p: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(p.shape[0], *p.shape[2:], dtype=p.dtype)
    for b in range(p.shape[0]):
        for i in range(p.shape[2]):
            for j in range(p.shape[3]):
                out[b, i, j] = -sum(float(v) * math.log(float(v)) for v in p[b, :, i, j] if float(v) > 0)
    return out


def _probs() -> torch.Tensor:
    torch.manual_seed(3)
    p = torch.softmax(torch.randn(2, 4, 3, 3, dtype=torch.float64), 1)
    p[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # one-hot: entropy 0
    p[1, :, 1, 2] = torch.tensor([0.5, 0.0, 0.5, 0.0])  # tie and zeros
    p[1, :, 2, 2] = 0.25  # uniform: entropy log 4
    return p


def test_entropy_matches_naive_reference_with_zeros():
    p = _probs()
    e = entropy(p)
    torch.testing.assert_close(e, _naive_entropy(p))
    assert e[0, 0, 0] == 0.0
    assert e[1, 2, 2] == pytest.approx(math.log(4))
    q = p.clone().requires_grad_(True)
    entropy(q).sum().backward()
    assert torch.isfinite(q.grad).all()
    torch.testing.assert_close(entropy(p.movedim(1, -1), dim=-1), e)


def test_pseudo_labels_match_naive_reference():
    p = _probs()
    labels, conf = pseudo_labels(p)
    assert labels.dtype == torch.long and labels.shape == (2, 3, 3) and conf.shape == (2, 3, 3)
    for b in range(2):
        for i in range(3):
            for j in range(3):
                vals = p[b, :, i, j].tolist()
                assert labels[b, i, j] == vals.index(max(vals))  # ties → lowest index
                assert conf[b, i, j] == max(vals)
    assert labels[0, 0, 0] == 1 and labels[1, 1, 2] == 0 and labels[1, 2, 2] == 0


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_class_argmax_is_argmax_with_its_ties(dim):
    """The fast arg-max equals torch.argmax on every dimension, on random maps and on
    maps full of ties (first maximal index), and on a NaN (which argmax picks)."""
    g = torch.Generator().manual_seed(dim + 7)
    for x in (torch.rand(3, 14, 6, 5, 4, generator=g), torch.randint(0, 3, (3, 14, 6, 5, 4), generator=g).float()):
        assert torch.equal(class_argmax(x, dim), x.argmax(dim))
    x = torch.rand(2, 5, 3, generator=g)
    x[1, 3, 2] = float("nan")
    assert torch.equal(class_argmax(x, 1), x.argmax(1))


def test_sigmoid_rampup_and_reexport():
    from vrsearch.engine.schedules import sigmoid_rampup as engine_rampup

    assert engine_rampup is sigmoid_rampup
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(50, 10) == 1.0 and sigmoid_rampup(3, 0) == 1.0
    assert fraction_of(0.4, 6) == 2 and fraction_of(0.0, 100) == 0
