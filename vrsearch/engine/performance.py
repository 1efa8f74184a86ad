"""GPU-speed options of a trial (``train.precision``, ``channels_last``, ``compile``).

All are off on CPU by default (``precision: auto`` resolves to fp32 there), so
CPU runs stay bit-deterministic; each can be asked for explicitly on CPU too.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from vrsearch.errors import VrsearchError


class CompileError(VrsearchError):
    """``train.compile`` cannot work here (no toolchain, unsupported op): one line."""


@dataclass(frozen=True)
class Precision:
    """What ``train.precision`` resolved to on the trial's device."""

    name: str  # "fp32" | "bf16" | "fp16"
    #: autocast dtype of the forward; None = plain fp32 (no autocast)
    dtype: torch.dtype | None
    #: fp16: the loss is scaled by a ``GradScaler`` (fp16 gradients underflow otherwise)
    scaled: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[object]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.dtype)


def resolve_precision(choice: str, device: torch.device) -> Precision:
    """``auto``: bf16 on a CUDA GPU that supports it, else fp16 (scaled) on CUDA, fp32 elsewhere."""
    if choice == "auto":
        if device.type != "cuda":
            return Precision("fp32", None, False)
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice == "fp32":
        return Precision("fp32", None, False)
    if not torch.amp.is_autocast_available(device.type):
        raise VrsearchError(
            f"train.precision: {choice} needs autocast, which torch does not support on {device.type}; use fp32"
        )
    if choice == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise VrsearchError("train.precision: bf16 is not supported by this GPU; use fp16 or auto")
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)


def grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    """The loss scaler of fp16 training (None otherwise); a clear error if torch has none."""
    if not precision.scaled:
        return None
    try:
        return torch.amp.GradScaler(device.type)
    except Exception as exc:  # noqa: BLE001 - e.g. an old torch without a CPU GradScaler
        raise VrsearchError(
            f"train.precision: fp16 needs torch.amp.GradScaler on {device.type}, which this torch "
            f"({torch.__version__}) cannot make ({one_line(exc)}); use bf16 or fp32"
        ) from None


def to_channels_last(module: nn.Module) -> int:
    """Put every convolution weight of ``module`` in channels-last format (in place:
    the parameters stay the same objects); returns how many were converted.

    Only convolution weights: other 4D/5D buffers (banks, queues) may be
    ``view``-ed by their owners, which a permuted layout would break."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            w = m.weight
            fmt = torch.channels_last_3d if w.dim() == 5 else torch.channels_last if w.dim() == 4 else None
            if fmt is not None:
                w.data = w.data.contiguous(memory_format=fmt)
                n += 1
    return n


def one_line(exc: BaseException, limit: int = 240) -> str:
    """``Type: first line of the message`` (compiler errors span pages)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compile_failure(exc: BaseException, device: torch.device) -> CompileError:
    return CompileError(
        f"train.compile: torch.compile failed on {device.type} ({one_line(exc)}); set train.compile: false"
    )


def check_compiler(device: torch.device) -> None:
    """Compile and run (forward and backward) a tiny convolution with the default
    (inductor) backend, so that a missing toolchain is a one-line error before
    training starts rather than an exception from the first step's compilation."""
    try:
        conv = nn.Conv3d(1, 2, 3, padding=1).to(device)
        fn = torch.compile(lambda x: torch.relu(conv(x)).sum())
        fn(torch.randn(1, 1, 4, 4, 4, device=device, requires_grad=True)).backward()
    except Exception as exc:  # noqa: BLE001 - any toolchain failure (compiler, triton, inductor) is one line
        raise compile_failure(exc, device) from None


def compile_networks(module: nn.Module, device: torch.device) -> int:
    """``torch.compile`` each SegNet of a method in place; returns how many.

    Why the networks and not the step (``Method.forward``): nearly all FLOPs are
    in the networks, which are plain tensor-to-tensor modules of fixed shapes,
    while the steps have Python-side control flow on the iteration (ramp-ups),
    per-step generators, host mirrors refreshed by DDP pre-hooks, banks and
    temporary hooks: compiling them means graph breaks, recompilations and long
    compile times for little gain. ``nn.Module.compile`` (in place, unlike
    ``torch.compile(module)``) keeps the state-dict keys (checkpoints), the EMA
    teachers, DDP's wrapping of the method and ``predictor()`` (evaluation runs
    the compiled network too) unchanged.

    Several methods capture intermediate features with forward hooks registered
    on submodules of a network for one step; by default dynamo does not guard
    on such hooks and would silently never call them, so hook guards are turned
    on (the network then compiles once with and once without hooks)."""
    from vrsearch.models import SegNet

    check_compiler(device)
    import torch._dynamo

    torch._dynamo.config.skip_nnmodule_hook_guards = False
    nets = [m for m in module.modules() if isinstance(m, SegNet)]
    if not nets:
        raise CompileError(f"train.compile: {type(module).__name__} has no SegNet to compile; set train.compile: false")
    for net in nets:
        net.compile()
    return len(nets)


def is_compile_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from torch.compile (dynamo/inductor), not from the maths."""
    import torch._dynamo.exc

    return isinstance(exc, torch._dynamo.exc.TorchDynamoException)
