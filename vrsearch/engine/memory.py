"""Peak memory a function allocates, on CUDA or CPU.

:func:`peak_allocation` runs ``fn`` once and reports the highest number of
bytes that were allocated *above the level at entry* while it ran (memory
held before the call, inputs included, is not counted; a result that is
still alive at the end counts towards the peak like anything else).

* CUDA: the caching allocator's own counters —
  ``max_memory_allocated − memory_allocated`` at entry, after
  ``reset_peak_memory_stats`` (which resets the device's global peak
  statistic: do not nest measurements). Here a block held at entry and
  freed inside ``fn`` does lower the level; on CPU it does not (below).
* CPU: there is no allocator counter, so ``fn`` runs under
  ``torch.profiler.profile(profile_memory=True)`` and the allocation events
  (signed byte counts: ``+n`` on allocation, ``−n`` on free) are replayed in
  time order; the peak is the largest running sum. Caveats: only memory
  allocated through PyTorch's CPU allocator is seen (not NumPy, not oneDNN's
  private scratchpads); frees of blocks allocated *before* the call are
  ignored (the profiler reports them when an earlier profiled call allocated
  them, so events are matched by address to this call's own allocations and
  the level never goes below 0); the profiler slows ``fn`` down — use this
  for memory, never for timing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")

__all__ = ["peak_allocation", "infer_device"]


def infer_device(*args: Any, **kwargs: Any) -> torch.device:
    """Device of the first tensor among ``args``/``kwargs`` (CPU when there is none)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def _cuda_peak(
    fn: Callable[..., T], device: torch.device, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[T, int]:
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn(*args, **kwargs)
    torch.cuda.synchronize(device)
    return result, max(0, torch.cuda.max_memory_allocated(device) - base)


def _allocation_events(prof: torch.profiler.profile) -> list[tuple[int, int, int]]:
    """``(time ns, address, signed bytes)`` of every CPU allocation/free the profiler saw, in time order."""
    from torch._C._profiler import _ExtraFields_Allocation  # the profiler's (private) typed event tree

    results = prof.profiler.kineto_results if prof.profiler is not None else None
    if results is None:
        raise RuntimeError("the profiler recorded no events (was it stopped before its block ended?)")
    events: list[tuple[int, int, int]] = []
    stack = list(results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        fields = node.extra_fields  # an allocation's fields are of this type (its tag is Allocation)
        if isinstance(fields, _ExtraFields_Allocation) and fields.device.type == "cpu":
            events.append((node.start_time_ns, int(fields.ptr), int(fields.alloc_size)))
    events.sort(key=lambda e: e[0])
    return events


def _cpu_peak(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[T, int]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn(*args, **kwargs)
    live: dict[int, int] = {}  # address -> bytes of the blocks allocated inside this call
    level = peak = 0
    for _, ptr, nbytes in _allocation_events(prof):
        if nbytes > 0:
            live[ptr] = nbytes
        elif ptr in live:  # freeing one of this call's blocks
            nbytes = -live.pop(ptr)
        else:  # freeing a block allocated before the call: not part of the level above entry
            continue
        level += nbytes
        peak = max(peak, level)
    return result, peak


def peak_allocation(
    fn: Callable[..., T], *args: Any, device: torch.device | str | None = None, **kwargs: Any
) -> tuple[T, int]:
    """Run ``fn(*args, **kwargs)`` once; return ``(result, peak bytes above the level at entry)``.

    ``device`` picks the allocator to watch; by default the device of the
    first tensor argument, else CPU. CUDA uses the allocator's counters, CPU
    replays the profiler's memory events (see the module docstring)."""
    dev = torch.device(device) if device is not None else infer_device(*args, **kwargs)
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        return _cuda_peak(fn, dev, args, kwargs)
    if dev.type != "cpu":
        raise ValueError(f"peak_allocation supports cpu and cuda devices, got {dev}")
    return _cpu_peak(fn, args, kwargs)
