"""SPCL loss: naive triple-loop reference, detached closed-form weights, γ ramp."""

from __future__ import annotations

import math

import pytest
import torch

from vrsearch.losses.spcl import (
    linear_gamma,
    multi_meta_label_loss,
    pairwise_contrastive_terms,
    positive_mask,
    self_paced_contrastive_loss,
    self_paced_regularizer,
    self_paced_weights,
)

TAU = 0.5
# repeated meta-labels; label 9 has a single sample (no positive)
LABELS = torch.tensor([0, 1, 0, 2, 1, 9, 0])


def naive_loss(z: torch.Tensor, labels: list[int], tau: float, gamma: float, weighting: str) -> float:
    """Eq. (2)-(3)-(6) with explicit loops over i, j, a (float64 Python arithmetic)."""
    z = [[float(v) for v in row / row.norm()] for row in z.double()]
    m = len(z)
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    total = 0.0
    for i in range(m):
        positives = [j for j in range(m) if j != i and labels[j] == labels[i]]
        if not positives:
            continue  # no positive: contributes 0, still counted in 2N
        acc = 0.0
        for j in positives:
            denom = 0.0
            for a in range(m):
                if a != i:
                    denom += math.exp(dot(z[i], z[a]) / tau)
            ell = -math.log(math.exp(dot(z[i], z[j]) / tau) / denom)
            if weighting == "hard":
                w = 1.0 if ell < gamma else 0.0
                reg = -gamma * w
            else:
                w = max(0.0, 1.0 - ell / gamma)
                reg = gamma * (w * w / 2 - w)
            acc += w * ell + reg
        total += acc / len(positives)
    return total / m


def _z(seed: int = 0, m: int = 7, d: int = 4) -> torch.Tensor:
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed))


def _gamma_mid(z: torch.Tensor, labels: torch.Tensor) -> float:
    """A γ between the pairs' ℓ values, so both weightings give a mix of weights."""
    ell = pairwise_contrastive_terms(z.double(), TAU)[positive_mask(labels)]
    return float(ell.median()) + 1e-3


@pytest.mark.parametrize("weighting", ["hard", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference(weighting, seed):
    z = _z(seed)
    for gamma in (_gamma_mid(z, LABELS), 2.0 * _gamma_mid(z, LABELS), 0.3):
        loss, stats = self_paced_contrastive_loss(z, LABELS, tau=TAU, gamma=gamma, weighting=weighting)
        ref = naive_loss(z, LABELS.tolist(), TAU, gamma, weighting)
        assert abs(float(loss) - ref) <= 1e-5 * max(abs(ref), 1e-8), (gamma, float(loss), ref)
        assert int(stats["pairs"]) == 3 * 2 + 2 * 1  # label 0: 3·2 ordered pairs, label 1: 2
    w = self_paced_weights(pairwise_contrastive_terms(z, TAU), _gamma_mid(z, LABELS), weighting)
    mixed = w[positive_mask(LABELS)]
    assert (mixed > 0).any() and (mixed < 1).any()


def test_sample_without_positive_contributes_zero_but_counts():
    z = _z(3)
    loss, _ = self_paced_contrastive_loss(z, LABELS, tau=TAU, gamma=5.0)
    # label 9 (index 5) has no positive; dropping it from P but keeping M = 7
    ref = naive_loss(z, LABELS.tolist(), TAU, 5.0, "linear")
    assert float(loss) == pytest.approx(ref, rel=1e-5)
    alone = torch.arange(7)  # nobody has a positive
    zero, stats = self_paced_contrastive_loss(z, alone, tau=TAU, gamma=5.0)
    assert float(zero) == 0.0 and int(stats["pairs"]) == 0


@pytest.mark.parametrize("weighting", ["hard", "linear"])
def test_weights_are_detached(weighting):
    z = _z(4).double().requires_grad_(True)
    gamma = _gamma_mid(z.detach(), LABELS)
    loss, _ = self_paced_contrastive_loss(z, LABELS, tau=TAU, gamma=gamma, weighting=weighting)
    (g,) = torch.autograd.grad(loss, z)

    # reference: Σ_i 1/|P(i)| Σ_j w_ij ℓ_ij / M with w computed from a detached ℓ
    ell = pairwise_contrastive_terms(z, TAU)
    e = ell.detach()
    w = (e < gamma).double() if weighting == "hard" else (1 - e / gamma).clamp(min=0)
    pos = positive_mask(LABELS).double()
    ref = ((w * ell * pos).sum(1) / pos.sum(1).clamp(min=1)).sum() / z.shape[0]
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12)
    if weighting == "linear":
        # Σ w(ℓ)·ℓ with w left attached would give a different gradient ((1 − 2ℓ/γ)∇ℓ).
        # (With R included the two agree: ∂(wℓ + R)/∂w = 0 at the interior argmin.)
        ell = pairwise_contrastive_terms(z, TAU)
        w_live = (1 - ell / gamma).clamp(min=0)
        live = ((w_live * ell) * pos).sum(1) / pos.sum(1).clamp(min=1)
        (g_live,) = torch.autograd.grad(live.sum() / z.shape[0], z)
        assert not torch.allclose(g, g_live)


@pytest.mark.parametrize("weighting", ["hard", "linear"])
def test_closed_form_weight_is_the_argmin(weighting):
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    gamma = 3.0
    ells = torch.tensor([0.0, 0.5, 1.3, 2.2, 2.9, 3.1, 4.0, 7.5, 30.0], dtype=torch.float64)
    w = self_paced_weights(ells, gamma, weighting)
    for ell, wk in zip(ells, w):
        objective = grid * ell + self_paced_regularizer(grid, gamma, weighting)
        best = grid[int(objective.argmin())]
        assert float(wk) == pytest.approx(float(best), abs=2e-5), (float(ell), float(wk), float(best))


def test_weights_do_not_require_grad():
    ell = torch.rand(5, 5, requires_grad=True)
    for kind in ("hard", "linear"):
        assert not self_paced_weights(ell, 1.0, kind).requires_grad


def test_multi_meta_label_total_and_terms():
    z = _z(5, m=8)
    labels = {"position": torch.tensor([0, 0, 1, 1, 2, 0, 1, 2]), "patient": torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])}
    lambdas = {"position": 1.0, "patient": 0.25}
    total, terms = multi_meta_label_loss(z, labels, lambdas, tau=TAU, gamma=4.0)
    ref = {k: naive_loss(z, v.tolist(), TAU, 4.0, "linear") for k, v in labels.items()}
    assert float(total) == pytest.approx(ref["position"] + 0.25 * ref["patient"], rel=1e-5)
    assert float(terms["patient"]) == pytest.approx(ref["patient"], rel=1e-5)
    assert 0.0 <= float(terms["mean_weight"]) <= 1.0


def test_shape_and_argument_checks():
    with pytest.raises(ValueError, match="do not match"):
        self_paced_contrastive_loss(_z(), torch.zeros(3, dtype=torch.long), tau=TAU, gamma=1.0)
    with pytest.raises(ValueError, match="weighting"):
        self_paced_weights(torch.rand(3), 1.0, "soft")
    with pytest.raises(ValueError, match="gamma"):
        self_paced_weights(torch.rand(3), 0.0, "hard")


def test_linear_gamma_ramp():
    assert linear_gamma(0, 11, 2.0, 50.0) == 2.0
    assert linear_gamma(5, 11, 2.0, 50.0) == pytest.approx(26.0)
    assert linear_gamma(10, 11, 2.0, 50.0) == 50.0
    assert linear_gamma(99, 11, 2.0, 50.0) == 50.0
    values = [linear_gamma(i, 20, 1.0, 80.0) for i in range(20)]
    assert values == sorted(values)
