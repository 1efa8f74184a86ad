"""What a trial sets up before its first step: seeds, the device, the optimiser."""

from __future__ import annotations

import random
import sys

import numpy as np
import torch
from torch.optim.optimizer import ParamsT

from vrsearch.core.config import OptimizerConfig


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed every generator and set (both ways) the process-wide determinism switches, so a
    trial in a process that ran other trials before (a reused Tune actor) starts from the
    same global state as one in a fresh process."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = False
    forget_earlier_trials()


def forget_earlier_trials() -> None:
    """Drop what an earlier trial of this process (a reused Tune actor) left behind: its
    ``torch.compile`` graphs and guards (each trial compiles its own networks; kept, they pile up
    and count against dynamo's recompile limit) and the CUDA allocator's cached blocks. Free when
    nothing was compiled and CUDA was never initialised."""
    if "torch._dynamo" in sys.modules:
        torch._dynamo.reset()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def kernels(device: torch.device) -> str:
    """Which numeric kernels the trial runs on (trials.parquet ``kernels``): PyTorch's version
    and, on the CPU, the vector instruction set ATen dispatches to (AVX512, AVX2, ..., capped by
    ``ATEN_CPU_CAPABILITY``), on a GPU its name, compute capability and cuDNN. Equal seeds give
    other numbers on other kernels: they sum in another order, and training amplifies the
    last-bit differences (README, "Reproducibility")."""
    where = device.type
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        where = (
            f"cuda {torch.cuda.get_device_name(index)} sm{major}{minor} cudnn {torch.backends.cudnn.version() or '-'}"
        )
    elif device.type == "cpu":
        where = f"cpu {torch.backends.cpu.get_cpu_capability()}"
    return f"torch {torch.__version__}, {where}"


def build_optimizer(o: OptimizerConfig, params: ParamsT) -> torch.optim.Optimizer:
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)
