"""A trial's set-up forgets what an earlier trial of the same process compiled, and sets torch's
determinism switch without importing TorchInductor."""

from __future__ import annotations

import ast
import subprocess
import sys

import torch
from torch._dynamo.utils import counters

from vrsearch.engine.setup import forget_earlier_trials, seed_everything, set_deterministic, sync_inductor


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


def test_the_determinism_switch_is_torchs_without_importing_inductor():
    """``set_deterministic`` leaves torch's switch as ``use_deterministic_algorithms`` does,
    without the 1.2-1.4 s import of TorchInductor (a fresh process: this one may have it)."""
    code = (
        "import sys, torch\n"
        "from vrsearch.engine.setup import seed_everything\n"
        "def state(): return (torch.are_deterministic_algorithms_enabled(), "
        "torch.is_deterministic_algorithms_warn_only_enabled())\n"
        "seen = []\n"
        "for mode in (True, False, True):\n"
        "    seed_everything(0, mode); ours = state()\n"
        "    assert 'torch._inductor' not in sys.modules\n"
        "    seen.append(ours)\n"
        "for mode in (True, False, True):\n"
        "    torch.use_deterministic_algorithms(mode, warn_only=True); seen.append(state())\n"
        "print(seen)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = ast.literal_eval(proc.stdout.strip())
    assert seen[:3] == seen[3:] and [on for on, _ in seen[:3]] == [True, False, True]


def test_inductors_flag_follows_the_switch_where_inductor_is_used():
    import torch._inductor.config as inductor_config

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        for mode in (True, False):
            set_deterministic(mode)  # Inductor loaded: its flag is set at once
            assert inductor_config.deterministic is mode
            inductor_config.deterministic = not mode  # as if set before Inductor was imported
            sync_inductor()  # what train.compile runs before compiling
            assert inductor_config.deterministic is mode
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
