"""A trial's set-up forgets what an earlier trial of the same process compiled, and names the
kernels it trains on."""

from __future__ import annotations

import subprocess
import sys

import torch
from torch._dynamo.utils import counters

from vrsearch.engine.setup import forget_earlier_trials, kernels, seed_everything


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


def test_kernels_name_the_instruction_set_aten_dispatches_to():
    here = kernels(torch.device("cpu"))
    assert here == f"torch {torch.__version__}, cpu {torch.backends.cpu.get_cpu_capability()}"
    # a process that caps ATen's dispatch (ATEN_CPU_CAPABILITY) says so: another order of float sums
    code = "import torch; from vrsearch.engine.setup import kernels; print(kernels(torch.device('cpu')))"
    capped = subprocess.run(
        [sys.executable, "-c", code], env={"ATEN_CPU_CAPABILITY": "default"}, capture_output=True, text=True
    )
    assert capped.returncode == 0, capped.stderr
    assert capped.stdout.strip() == f"torch {torch.__version__}, cpu DEFAULT"
