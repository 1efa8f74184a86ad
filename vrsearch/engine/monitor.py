"""The training step's losses, kept on the device (:class:`LossMonitor`): nothing waits
for the GPU between log, evaluation and checkpoint points, and the first non-finite
loss is still found and named (:class:`TrialDiverged`)."""

from __future__ import annotations

import numpy as np
import torch


class TrialDiverged(RuntimeError):
    """The loss became NaN/Inf; the message says when and which terms.

    ``completed``: the iterations completed before the first non-finite one."""

    def __init__(self, message: str, completed: int | None = None):
        super().__init__(message)
        self.completed = completed


#: "no non-finite loss yet" in :class:`LossMonitor` (above any iteration, so MIN over ranks works)
NO_DIVERGENCE = 2**62


class LossMonitor:
    """The step's loss and terms, kept on the device: nothing here waits for the GPU
    except :meth:`row` and :meth:`check`, which the loop calls at log, evaluation
    and checkpoint points only.

    Each iteration's ``[loss, *terms]`` is one float64 vector (exact for fp32/bf16/fp16
    values and integer counts) appended to the log window. The first iteration
    whose loss is not finite, and its vector, are recorded with ``torch.where``
    on the device; ``layouts`` names the entries of each distinct set of terms."""

    def __init__(self, device: torch.device):
        self.device = device
        self.layouts: list[tuple[str, ...]] = []
        self._index: dict[tuple[str, ...], int] = {}
        self.window: list[tuple[int, torch.Tensor]] = []
        self.first_bad = torch.full((), NO_DIVERGENCE, dtype=torch.int64, device=device)  # 1-based
        self.bad_layout = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_values: dict[int, torch.Tensor] = {}

    def add(self, iteration: int, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Record 1-based ``iteration``'s loss and terms (no host synchronisation)."""
        names = ("loss", *terms)
        k = self._index.get(names)
        if k is None:
            k = self._index[names] = len(self.layouts)
            self.layouts.append(names)
        values = [loss, *terms.values()]
        vec = torch.stack([v.detach().to(self.device, torch.float64, non_blocking=True).reshape(()) for v in values])
        self.window.append((k, vec))
        first = torch.logical_not(torch.isfinite(vec[0])) & (self.first_bad == NO_DIVERGENCE)
        self.first_bad = torch.where(first, iteration, self.first_bad)
        self.bad_layout = torch.where(first, k, self.bad_layout)
        prev = self.bad_values.get(k)
        self.bad_values[k] = torch.where(first, vec, vec if prev is None else prev)

    def row(self) -> dict[str, float]:
        """Window means per name (over the iterations that logged it); clears the window."""
        host: dict[int, np.ndarray] = {}
        for k in {k for k, _ in self.window}:
            host[k] = torch.stack([v for j, v in self.window if j == k]).cpu().numpy()
        seen: dict[int, int] = dict.fromkeys(host, 0)
        series: dict[str, list[float]] = {}
        for k, _ in self.window:  # iteration order, as the values were logged
            for name, x in zip(self.layouts[k], host[k][seen[k]], strict=True):
                series.setdefault("loss" if name == "loss" else f"term_{name}", []).append(float(x))
            seen[k] += 1
        self.window.clear()
        return {k: float(np.mean(v)) for k, v in series.items()}

    def check(self, world: int) -> None:
        """Raise :class:`TrialDiverged` if some iteration's loss was not finite: the first
        such one over all ranks (MIN all-reduce; every rank reaches the same points), with
        the loss and terms of a rank where it happened (gathered, so rank 0 names them)."""
        first = self.first_bad
        if world > 1:
            first = first.clone()
            torch.distributed.all_reduce(first, op=torch.distributed.ReduceOp.MIN)
        k = int(first.item())
        if k == NO_DIVERGENCE:
            return
        message = self.message(k)
        if world > 1:
            parts: list = [None] * world
            torch.distributed.all_gather_object(parts, message)
            message = next((m for m in parts if m is not None), None)
        raise TrialDiverged(message or f"loss became non-finite at iteration {k}", completed=k - 1)

    def message(self, iteration: int) -> str | None:
        """The divergence message of this rank (None if its loss was finite at ``iteration``)."""
        if int(self.first_bad.item()) != iteration:
            return None
        names = self.layouts[int(self.bad_layout.item())]
        values = self.bad_values[self._index[names]].tolist()
        terms = ", ".join(f"{n}={v:.4g}" for n, v in zip(names[1:], values[1:], strict=True))
        return f"loss became {values[0]} at iteration {iteration} ({terms})"
