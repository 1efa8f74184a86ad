"""L_contrast's drawn-pairs similarity (vrsearch.losses.sampled_dot.sampled_dot) equals the
gathered full product, values and gradient, with repeated and unsorted pairs."""

from __future__ import annotations

import torch

from vrsearch.losses.sampled_dot import sampled_dot


def test_sampled_pairs_equal_the_gathered_product_and_its_gradient():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(37, 16, generator=g, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(50, 16, generator=g, dtype=torch.float64)
    idx = torch.randint(0, 50, (37, 23), generator=g)
    idx[:, 1] = idx[:, 0]  # repeats in a row
    weight = torch.randn(37, 23, generator=g, dtype=torch.float64)
    got = sampled_dot(q, keys, idx)
    (grad,) = torch.autograd.grad((got * weight).sum(), q)
    q2 = q.detach().clone().requires_grad_(True)
    want = (q2 @ keys.T).gather(1, idx)
    (want_grad,) = torch.autograd.grad((want * weight).sum(), q2)
    assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert torch.allclose(grad, want_grad, rtol=1e-12, atol=1e-12)
    # teeth: a different draw gives different values
    assert not torch.allclose(sampled_dot(q, keys, idx.roll(1, 1)), want)


def test_low_precision_inputs_are_computed_in_float32_and_returned_in_their_dtype():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(9, 8, generator=g).bfloat16().requires_grad_(True)
    keys = torch.randn(11, 8, generator=g).bfloat16()
    idx = torch.randint(0, 11, (9, 5), generator=g)
    out = sampled_dot(q, keys, idx)
    out.sum().backward()
    assert out.dtype == q.grad.dtype == torch.bfloat16
    want = (q.detach().float() @ keys.float().T).gather(1, idx)
    assert torch.allclose(out.float(), want, rtol=1e-2, atol=2e-2)


def test_backward_inside_cpu_autocast():
    """A backward called under ``torch.autocast("cpu", bfloat16)`` still runs (the sparse kernels have
    no bf16) and gives the gradient of the gathered full product."""
    g = torch.Generator().manual_seed(2)
    q = torch.randn(7, 6, generator=g, requires_grad=True)
    keys, idx = torch.randn(10, 6, generator=g), torch.randint(0, 10, (7, 4), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        sampled_dot(q, keys, idx).sum().backward()
    want = torch.zeros(7, 10).scatter_add_(1, idx, torch.ones(7, 4)) @ keys
    assert torch.allclose(q.grad, want, atol=1e-5)
