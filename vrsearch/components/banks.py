"""Memory banks of detached embeddings (METHODS.md, "Memory banks").

* :class:`ClassFIFOBank`: one fixed-size FIFO ring buffer per class (MONA /
  ARCO class-aware negatives, DVCL HqC anchors, You et al.; DVCL).
* :class:`FIFOQueue`: a plain fixed-size FIFO ring buffer (MONA kNN bank,
  DVCL neighbour/outsider queues).

Both are preallocated and ring-buffer indexed; their storage and pointers are
registered buffers, so they are saved in ``state_dict`` (checkpoints resume
bit-exactly) and move with ``.to(device)``. Stored entries are always
detached copies: no gradient ever flows into a bank, and an empty bank (or
an empty class) contributes nothing: there are no random initial vectors.

``ClassFIFOBank.push`` is fully vectorised and never synchronises with the
host (no ``.item()``/``.tolist()``/boolean-mask indexing): per-class ranks
come from a stable sort and ``searchsorted``, and when more than ``S``
entries of one class arrive at once only the newest ``S`` are kept.

Weighted entries.  A :class:`ClassFIFOBank` entry carries a weight (default 1):
entries drawn by a stratified sampler (SG/SAG, :mod:`vrsearch.components.samplers`)
are not equally likely, and their sampler weights are what keeps a mean over
them unbiased.  ``means()`` is the weighted mean ``Σ w·x / Σ w`` per class (DVCL's
``P_c``) and ``weight`` gives importance weights to entries drawn uniformly
(MONA/ARCO negatives, :func:`vrsearch.losses.mona.negative_log_weights`).  Callers store
``n·w`` for a push of ``n`` entries of one class whose sampler weights ``w`` sum
to 1, so every push has mean weight 1 and pushes of equal size count equally.
"""

from __future__ import annotations

import torch
from torch import nn


def class_bounds(cls: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For class-sorted ``cls [N]``: (first position, number of entries) of every class
    (``searchsorted``, no host sync)."""
    ids = torch.arange(num_classes, device=cls.device)
    start = torch.searchsorted(cls, ids)
    return start, torch.searchsorted(cls, ids, right=True) - start


class ClassFIFOBank(nn.Module):
    """Class-aware FIFO bank: ``bank [C, S, D]``, ``ptr [C]``, ``count [C]``.

    ``ptr[c]`` is the slot the next class-``c`` entry goes to; ``count[c]`` the
    number of valid entries (``≤ S``); ``weight [C, S]`` the entries' weights (0 in
    empty slots). ``get(c)`` returns the valid entries oldest → newest; ``means()``
    the per-class weighted mean with a validity mask.
    """

    bank: torch.Tensor
    ptr: torch.Tensor
    count: torch.Tensor
    weight: torch.Tensor

    def __init__(self, num_classes: int, size_per_class: int, dim: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        if num_classes < 1 or size_per_class < 1 or dim < 1:
            raise ValueError("num_classes, size_per_class and dim must be positive")
        self.num_classes, self.size, self.dim = int(num_classes), int(size_per_class), int(dim)
        self.register_buffer("bank", torch.zeros(num_classes, size_per_class, dim, dtype=dtype))
        self.register_buffer("ptr", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self.register_buffer("weight", torch.zeros(num_classes, size_per_class, dtype=dtype))

    @torch.no_grad()
    def push(self, features: torch.Tensor, classes: torch.Tensor, weight: torch.Tensor | None = None) -> None:
        """Append ``features [N, D]`` with integer ``classes [N]`` in ``[0, C)`` and
        non-negative ``weight [N]`` (default 1).

        Entries of one class are appended in their order in ``features``; a
        class receiving more than ``S`` entries keeps its newest ``S``."""
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be [N, {self.dim}], got {tuple(features.shape)}")
        if classes.shape != features.shape[:1]:
            raise ValueError(f"classes must be [{features.shape[0]}], got {tuple(classes.shape)}")
        n_items = features.shape[0]
        if n_items == 0:
            return
        dev, S = self.bank.device, self.size
        if weight is not None and weight.shape != features.shape[:1]:
            raise ValueError(f"weight must be [{features.shape[0]}], got {tuple(weight.shape)}")
        classes = classes.to(dev, torch.long)
        features = features.detach().to(dev, self.bank.dtype)
        weight = (
            torch.ones(n_items, dtype=self.weight.dtype, device=dev)
            if weight is None
            else weight.detach().to(dev, self.weight.dtype)
        )
        sorted_c, order = torch.sort(classes, stable=True)  # grouped by class, arrival order kept
        start, n = class_bounds(sorted_c, self.num_classes)  # first sorted position, entries per class
        c_start, c_n = start[sorted_c], n[sorted_c]
        rank = torch.arange(n_items, device=dev) - c_start  # 0-based arrival rank inside its class
        # Every entry writes to its slot the value of the *newest* entry of its class
        # that maps to the same slot, so colliding writes carry identical values and
        # the result is deterministic: only the newest S per class survive.
        newest = rank + S * torch.div(c_n - 1 - rank, S, rounding_mode="floor")
        slot = (self.ptr[sorted_c] + rank) % S
        src = order[c_start + newest]
        self.bank[sorted_c, slot] = features[src]
        self.weight[sorted_c, slot] = weight[src]
        self.ptr.copy_((self.ptr + n) % S)
        self.count.copy_(torch.clamp(self.count + n, max=S))

    def get(self, c: int) -> torch.Tensor:
        """Valid entries of class ``c``, oldest → newest: ``[count_c, D]``."""
        k = int(self.count[c])
        idx = (self.ptr[c] - k + torch.arange(k, device=self.bank.device)) % self.size
        return self.bank[c, idx]

    def means(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [C, D], valid [C] bool)``: the weighted mean ``Σ w·x / Σ w`` of each
        class's valid entries (the plain mean when every weight is 1); a class with
        no entry or zero total weight has mean 0 and ``valid=False``."""
        mask = torch.arange(self.size, device=self.bank.device)[None, :] < self.count[:, None]
        w = torch.where(mask, self.weight, 0.0)
        total = torch.einsum("cs,csd->cd", w, self.bank)
        wsum = w.sum(1)
        mean = total / wsum.clamp_min(torch.finfo(w.dtype).tiny)[:, None]
        return mean, wsum > 0

    def reset(self) -> None:
        self.bank.zero_()
        self.ptr.zero_()
        self.count.zero_()
        self.weight.zero_()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, size_per_class={self.size}, dim={self.dim}"


class FIFOQueue(nn.Module):
    """Plain FIFO ring buffer ``queue [size, D]`` of detached entries.

    The number of pushed rows is a shape, so the pointer and count are also
    mirrored as Python ints: ``len()`` and ``items()`` never synchronise with
    the device. The mirrors are refreshed from the buffers after
    ``load_state_dict``."""

    queue: torch.Tensor
    ptr: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, dim: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError("size and dim must be positive")
        self.size, self.dim = int(size), int(dim)
        self.register_buffer("queue", torch.zeros(size, dim, dtype=dtype))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._ptr = self._count = 0
        self.register_load_state_dict_post_hook(FIFOQueue._sync_mirrors)

    @staticmethod
    def _sync_mirrors(module: FIFOQueue, incompatible: object = None) -> None:
        module._ptr, module._count = int(module.ptr), int(module.count)

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Append ``x [N, D]``; when ``N > size`` only the newest ``size`` rows are kept."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must be [N, {self.dim}], got {tuple(x.shape)}")
        x = x.detach().to(self.queue.device, self.queue.dtype)[-self.size :]
        n = x.shape[0]
        if n == 0:
            return
        slots = (self._ptr + torch.arange(n, device=self.queue.device)) % self.size
        self.queue[slots] = x
        self._ptr = (self._ptr + n) % self.size
        self._count = min(self._count + n, self.size)
        self.ptr.fill_(self._ptr)
        self.count.fill_(self._count)

    def items(self) -> torch.Tensor:
        """Valid entries, oldest → newest: ``[count, D]``."""
        if self._count < self.size:
            return self.queue[: self._count]
        return torch.roll(self.queue, -self._ptr, dims=0)

    def __len__(self) -> int:
        return self._count

    def reset(self) -> None:
        self.queue.zero_()
        self.ptr.zero_()
        self.count.zero_()
        self._ptr = self._count = 0

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}"


def sync_queue_mirrors(module: nn.Module, *_: object) -> None:
    """Refresh the host mirrors of every :class:`FIFOQueue` inside ``module`` from
    their buffers. Needed whenever the buffers are overwritten behind the queues'
    backs — DDP broadcasts rank 0's buffers before each forward — so it has the
    signature of a forward pre-hook (``module.register_forward_pre_hook``)."""
    for m in module.modules():
        if isinstance(m, FIFOQueue):
            FIFOQueue._sync_mirrors(m)
