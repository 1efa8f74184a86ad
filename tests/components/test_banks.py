"""Memory banks against naive Python-list references."""

from __future__ import annotations

import random
from collections import deque

import pytest
import torch

from vrsearch.components.banks import ClassFIFOBank, FIFOQueue, sync_queue_mirrors


def _random_pushes(seed: int, num_classes: int, dim: int, steps: int = 30):
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        n = rng.choice([0, 1, 2, 3, 7, 13, 25])
        feats = torch.randn(n, dim, generator=g)
        classes = torch.randint(0, num_classes, (n,), generator=g)
        if rng.random() < 0.2:  # bursts of one class, larger than the bank
            classes = torch.full((n,), rng.randrange(num_classes))
        yield feats, classes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_bank_matches_list_reference(seed):
    C, S, D = 4, 5, 3
    bank = ClassFIFOBank(C, S, D)
    ref = [deque(maxlen=S) for _ in range(C)]
    for feats, classes in _random_pushes(seed, C, D):
        bank.push(feats, classes)
        for f, c in zip(feats, classes.tolist(), strict=True):
            ref[c].append(f.clone())
        for c in range(C):
            got = bank.get(c)
            want = torch.stack(list(ref[c])) if ref[c] else torch.zeros(0, D)
            assert got.shape == (len(ref[c]), D)
            assert torch.equal(got, want)
            assert int(bank.count[c]) == len(ref[c])


def test_class_bank_keeps_newest_when_overfull():
    bank = ClassFIFOBank(2, 3, 1)
    feats = torch.arange(8, dtype=torch.float32)[:, None]
    bank.push(feats, torch.tensor([0, 1, 0, 0, 0, 0, 1, 0]))
    assert bank.get(0).flatten().tolist() == [4.0, 5.0, 7.0]
    assert bank.get(1).flatten().tolist() == [1.0, 6.0]


def test_class_bank_means_and_empty_classes():
    C, S, D = 4, 3, 2
    bank = ClassFIFOBank(C, S, D)
    mean, valid = bank.means()
    assert not valid.any() and torch.equal(mean, torch.zeros(C, D))
    feats = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [7.0, 8.0], [9.0, 10.0], [2.0, 2.0]])
    bank.push(feats, torch.tensor([0, 0, 2, 0, 0, 2]))
    mean, valid = bank.means()
    assert valid.tolist() == [True, False, True, False]
    torch.testing.assert_close(mean[0], feats[[1, 3, 4]].mean(0))  # the oldest one was overwritten
    torch.testing.assert_close(mean[2], feats[[2, 5]].mean(0))
    assert torch.equal(mean[1], torch.zeros(D)) and torch.equal(mean[3], torch.zeros(D))
    for c in (1, 3):
        assert bank.get(c).shape == (0, D)


def test_banks_store_detached_copies():
    x = torch.randn(4, 3, requires_grad=True)
    bank, queue = ClassFIFOBank(2, 4, 3), FIFOQueue(5, 3)
    bank.push(x * 2, torch.tensor([0, 1, 1, 0]))
    queue.push(x * 2)
    for stored in (bank.bank, bank.get(1), bank.means()[0], queue.queue, queue.items()):
        assert not stored.requires_grad and stored.grad_fn is None
    before = queue.items().clone()
    with torch.no_grad():
        x.add_(1.0)  # later changes to the source do not leak into the bank
    assert torch.equal(queue.items(), before)


def test_class_bank_state_dict_round_trip():
    C, S, D = 3, 4, 2
    bank = ClassFIFOBank(C, S, D)
    for feats, classes in _random_pushes(5, C, D, steps=8):
        bank.push(feats, classes)
    assert {"bank", "ptr", "count"} <= set(bank.state_dict())
    other = ClassFIFOBank(C, S, D)
    other.load_state_dict(bank.state_dict())
    more = torch.randn(6, D), torch.tensor([0, 1, 2, 2, 2, 2])
    bank.push(*more)
    other.push(*more)
    for c in range(C):
        assert torch.equal(bank.get(c), other.get(c))
    assert torch.equal(bank.ptr, other.ptr) and torch.equal(bank.count, other.count)


@pytest.mark.parametrize("seed", [0, 1])
def test_fifo_queue_matches_list_reference(seed):
    S, D = 7, 2
    queue, ref = FIFOQueue(S, D), deque(maxlen=S)
    assert len(queue) == 0 and queue.items().shape == (0, D)
    for feats, _ in _random_pushes(seed, 1, D):
        queue.push(feats)
        ref.extend(f.clone() for f in feats)
        assert len(queue) == len(ref)
        want = torch.stack(list(ref)) if ref else torch.zeros(0, D)
        assert torch.equal(queue.items(), want)


def test_fifo_queue_state_dict_round_trip():
    queue = FIFOQueue(4, 2)
    queue.push(torch.randn(6, 2))
    queue.push(torch.randn(1, 2))
    other = FIFOQueue(4, 2)
    other.load_state_dict(queue.state_dict())
    assert len(other) == 4 and torch.equal(other.items(), queue.items())
    x = torch.randn(3, 2)
    queue.push(x)
    other.push(x)
    assert torch.equal(other.items(), queue.items())


def test_bank_shape_errors():
    with pytest.raises(ValueError):
        ClassFIFOBank(2, 3, 4).push(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError):
        FIFOQueue(3, 4).push(torch.randn(4))


def test_queue_mirrors_follow_buffers_overwritten_like_ddp_broadcast():
    """DDP copies rank 0's buffers into every rank before forward; the forward pre-hook
    ``sync_queue_mirrors`` must make len()/items() agree with the copied buffers."""
    rank0, other = FIFOQueue(8, 2), FIFOQueue(8, 2)
    rank0.push(torch.arange(10.0).reshape(5, 2))
    other.push(torch.ones(2, 2))
    holder = torch.nn.ModuleDict({"q": other})
    holder.register_forward_pre_hook(sync_queue_mirrors)
    for name, buf in rank0.named_buffers():  # what DDP's buffer broadcast does
        getattr(other, name).copy_(buf)
    assert len(other) == 2  # stale until the hook runs
    holder.forward = lambda: None  # ModuleDict has no forward; the hook runs on __call__
    holder()
    assert len(other) == 5 and torch.equal(other.items(), rank0.items())
    other.push(torch.full((4, 2), 7.0))
    assert len(other) == 8 and torch.equal(other.items()[-4:], torch.full((4, 2), 7.0))


def test_class_bank_weights_follow_their_entries_and_weight_the_means():
    """Weights ride with their entries through the ring buffer (newest S kept) and
    ``means()`` is Σ w·x / Σ w over the valid entries; a class whose entries all have
    weight 0 is not valid."""
    C, S, D = 3, 4, 2
    bank = ClassFIFOBank(C, S, D)
    ref = [deque(maxlen=S) for _ in range(C)]
    g = torch.Generator().manual_seed(3)
    for feats, classes in _random_pushes(7, C, D, steps=20):
        w = torch.rand(len(classes), generator=g) * 2
        bank.push(feats, classes, w)
        for f, c, wi in zip(feats, classes.tolist(), w, strict=True):
            ref[c].append((f.clone(), float(wi)))
    mean, valid = bank.means()
    for c in range(C):
        if not ref[c]:
            assert not bool(valid[c])
            continue
        want = sum(wi * f for f, wi in ref[c]) / sum(wi for _, wi in ref[c])
        torch.testing.assert_close(mean[c], want, rtol=1e-5, atol=1e-6)
        k = int(bank.count[c])
        slots = (bank.ptr[c] - k + torch.arange(k)) % S
        assert bank.weight[c, slots].tolist() == pytest.approx([wi for _, wi in ref[c]])
    assert "weight" in bank.state_dict()
    zero = ClassFIFOBank(2, 3, 1)
    zero.push(torch.ones(2, 1), torch.tensor([0, 1]), torch.tensor([0.0, 2.0]))
    assert zero.means()[1].tolist() == [False, True]
    with pytest.raises(ValueError, match="weight"):
        zero.push(torch.ones(2, 1), torch.tensor([0, 1]), torch.ones(3))
