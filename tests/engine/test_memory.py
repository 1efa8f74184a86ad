"""peak_allocation: peak bytes allocated above the entry level while a function runs."""

from __future__ import annotations

import pytest
import torch

from vrsearch.engine.memory import infer_device, peak_allocation

MB = 1_000_000
N40 = 10_000_000  # float32 elements in 40 MB


def _one_tensor():
    t = torch.ones(N40)
    return float(t[0])


def _two_sequential():
    a = torch.ones(N40)
    s = float(a.sum())
    del a
    b = torch.ones(N40)
    s += float(b.sum())
    del b
    return s


def _two_alive():
    a, b = torch.ones(N40), torch.ones(N40)
    return float(a[0] + b[0])


def test_single_40mb_tensor():
    result, peak = peak_allocation(_one_tensor)
    assert result == 1.0
    assert 40 * MB <= peak < 60 * MB


def test_sequential_tensors_do_not_add_up():
    result, peak = peak_allocation(_two_sequential)
    assert result == 2.0 * N40
    assert 40 * MB <= peak < 60 * MB


def test_simultaneous_tensors_add_up():
    _, peak = peak_allocation(_two_alive)
    assert 80 * MB <= peak < 100 * MB


def test_noop_reports_almost_nothing():
    result, peak = peak_allocation(lambda: 7)
    assert result == 7
    assert peak < 1 * MB


def test_memory_held_at_entry_is_not_counted():
    held = torch.ones(N40)  # allocated before the call, freed by nobody inside it
    _, peak = peak_allocation(lambda x: float(x.sum()), held)
    assert peak < 1 * MB


def test_freeing_memory_from_an_earlier_measurement_does_not_hide_new_allocations():
    # the profiler reports the free of a block a *previous* profiled call allocated;
    # it must not be netted against this call's allocations
    box = {}
    _, first = peak_allocation(lambda: box.update(t=torch.ones(N40)))
    assert 40 * MB <= first < 60 * MB

    def replace():
        box["t"] = None  # frees the earlier call's 40 MB
        box["t"] = torch.ones(N40)

    _, second = peak_allocation(replace)
    assert 40 * MB <= second < 60 * MB


def test_args_kwargs_and_backward():
    w = torch.randn(1000, 1000, requires_grad=True)  # 4 MB

    def step(x, *, scale):
        loss = (x @ w * scale).square().mean()  # [2500, 1000] activation: 10 MB
        loss.backward()
        return loss.item()

    x = torch.randn(2500, 1000)
    _, peak = peak_allocation(step, x, scale=2.0)
    assert 10 * MB <= peak < 60 * MB
    assert w.grad is not None


def test_device_inference_and_errors():
    assert infer_device(1, torch.zeros(1)) == torch.device("cpu")
    assert infer_device(a=torch.zeros(1)) == torch.device("cpu")
    assert infer_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="cpu and cuda"):
        peak_allocation(lambda: None, device="meta")
