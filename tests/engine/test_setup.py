"""A trial's set-up forgets what an earlier trial of the same process compiled."""

from __future__ import annotations

import torch
from torch._dynamo.utils import counters

from vrsearch.engine.setup import forget_earlier_trials, seed_everything


def _graphs_after_a_call(fn) -> int:
    fn(torch.ones(3))
    return counters["stats"]["unique_graphs"]


def test_a_new_trial_recompiles_instead_of_reusing_an_earlier_trials_graphs():
    fn = torch.compile(lambda x: x * 2 + 1, backend="eager")
    first = _graphs_after_a_call(fn)
    assert _graphs_after_a_call(fn) == first  # the same process keeps the compiled graph
    seed_everything(0, deterministic=False)  # a reused actor's next trial starts here
    assert _graphs_after_a_call(fn) == first + 1  # compiled afresh: the earlier cache was dropped


def test_forgetting_never_initialises_cuda():
    before = torch.cuda.is_initialized()
    forget_earlier_trials()
    forget_earlier_trials()
    assert torch.cuda.is_initialized() == before
