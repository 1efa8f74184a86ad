"""Voxel groups of the samplers (``samplers.py``) without sorting the voxels.

A group is (image, grid cell) ∩ class ∩ mask (NS: image ∩ class, or class over
the batch).  The sampler needs, per group, its size, the coordinate sums of
its members (SAG's centroid) and "the r-th member in raster order" for a few
thousand ranks r.  A stable sort of every voxel by group gives all three, but
it is the dominant cost on a FLARE-sized batch, so instead:

* A *segment* is one run of the last axis inside one cell: (image, all other
  coordinates, cell along the last axis).  Its voxels are contiguous in memory
  and belong to one cell box.  One ``bincount`` over ``segment·(K+1) + slot``
  (slot = class position in ``cand``, K for ineligible voxels) counts every
  class in every segment.
* Listing the segments box by box (cells in raster order, rows inside a box in
  raster order: a cached permutation) lists each box's voxels in raster order,
  so a per-class cumulative count over the segments gives every group's size
  (the count at its box's end minus the count at its start) and turns a rank
  into a segment (``searchsorted``) plus a rank inside that segment, resolved
  by scanning the segment (at most ``ceil(n/g)`` voxels per draw).
* Coordinate sums (SAG's centroids): along the other axes a segment's
  coordinates are constant, so they follow from the counts; the last
  coordinate is summed in the same pass, packed above the count in one
  integer per voxel (``1 + (z << shift)``, ``index_add_``).  Only the groups
  asked for are summed (SAG: those with a pair to reflect, 10–18 % of them on a
  FLARE-sized batch), over their own segments (contiguous in the list). NS and SG need no
  centroid, so for them the pass only counts (``bincount`` on 32-bit
  indices: the whole pass — indices, scatter, unpacking — 4.1 ms against
  5.9 ms for the packed one on 2×64×128×128 labels, one thread).

On spatially coherent labels ``voxel_runs.Runs`` gives the same from runs of
equal labels, cheaper; the samplers take it unless the labels are fragmented.

Work: a few linear passes over the voxels and arrays of segments × classes
(the voxels × (K+1)·g / (last axis) counts), no sort of the voxels — except
with one cell per image (NS) and so many draws that scanning costs more than
sorting (``SORT_AT``): then one stable sort of the voxels by class lists every
class's members in the same order.  Either way the result is the same voxel
as the sorted-members path, rank for rank.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

#: above this many candidate values (no ``classes`` given), only the present ones are kept
DENSE_RANGE = 64
#: longest row segment (voxels scanned per draw) unless a cell's row is shorter
SEGMENT = 48
#: with one cell per image, draws × segment width above this many times the voxels: sort instead of scanning
SORT_AT = 1.0
#: the segment counts use 32-bit indices and sums below this bound (64-bit above it)
NARROW = 2**31


def stable_argsort(key: torch.Tensor) -> torch.Tensor:
    """Stable argsort of small non-negative int keys (same result on every path)."""
    if key.device.type == "cpu" and (key.numel() == 0 or int(key.max()) < 2**16):
        return torch.from_numpy(np.argsort(key.numpy().astype(np.uint16), kind="stable"))
    return torch.sort(key, stable=True).indices


@dataclass(frozen=True)
class Layout:
    """Segments of a ``[B, *spatial]`` batch split into ``g`` cells per axis, listed
    box by box (boxes b·G + cell in order, rows inside a box in raster order)."""

    base: torch.Tensor  # [B·V] position of every voxel's segment in that list
    base32: torch.Tensor  # the same in 32 bits (where the counts' indices fit)
    start: torch.Tensor  # [S] flat index of the segment's first voxel
    width: torch.Tensor  # [S] voxels
    bounds: torch.Tensor  # [B·G + 1] where each box starts in the list
    coords: tuple[torch.Tensor, ...]  # per other axis, [S] its coordinate (constant along a segment)
    unit: torch.Tensor  # [B·V] 1 + (last coordinate << shift): counts and last-axis sums in one integer
    shift: int
    packed_max: int  # the largest packed sum a segment can reach


def box_of(flat: torch.Tensor, spatial: tuple[int, ...], g: int) -> torch.Tensor:
    """Box ``b·G + cell`` of voxels (flat indices into ``[B, *spatial]``), ``G = g**ndim``
    cells per image in raster order; the cell of coordinate x along an axis of size n
    is ``floor(x·g/n)``."""
    V = math.prod(spatial)
    box = torch.div(flat, V, rounding_mode="floor") * g ** len(spatial)
    if g == 1:
        return box
    cell, v = torch.zeros_like(flat), flat % V
    for ax, size in enumerate(spatial):
        cell = cell * g + torch.div(v, math.prod(spatial[ax + 1 :]), rounding_mode="floor") % size * g // size
    return box + cell


@functools.lru_cache(maxsize=4)
def layout(B: int, spatial: tuple[int, ...], g: int, device: torch.device) -> Layout:
    *rest, last = spatial
    R = math.prod(rest)
    cell_width = -(-last // g)
    p = g * -(-cell_width // SEGMENT)  # parts of a row: g cells, each cut to ≤ SEGMENT voxels
    part = (torch.arange(last, device=device) * p) // last  # nests in the cells: part // (p/g) = cell
    width = torch.bincount(part, minlength=p)
    zstart = torch.cumsum(width, 0) - width
    nseg = R * p  # per image, natural order (b, row, part)
    row = torch.arange(R, device=device)
    coords = torch.stack(torch.unravel_index(row, tuple(rest)), 1) if rest else row.new_zeros(R, 0)
    cell = torch.zeros(R, dtype=torch.long, device=device)
    for ax, size in enumerate(rest):
        cell = cell * g + coords[:, ax] * g // size
    G = g ** len(spatial)
    box = (
        (torch.arange(B, device=device) * G).view(B, 1, 1)
        + (cell * g).view(1, R, 1)
        + (torch.arange(p, device=device) // (p // g)).view(1, 1, p)
    ).reshape(-1)
    order = stable_argsort(box.cpu()).to(device)
    rank = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=device))
    seg_of_voxel = torch.arange(R, device=device).unsqueeze(1) * p + part
    base = rank[(seg_of_voxel.reshape(1, -1) + torch.arange(B, device=device).unsqueeze(1) * nseg).reshape(-1)]
    seg_row, seg_part = (order % nseg) // p, order % p
    start = (order // nseg) * math.prod(spatial) + seg_row * last + zstart[seg_part]
    bounds = torch.searchsorted(box[order], torch.arange(B * G + 1, device=device))
    shift = int(width.max()).bit_length()  # a segment's count stays below 2**shift
    unit = (1 + (torch.arange(last, device=device) << shift)).repeat(B * R)
    packed_max = int(width.max()) * (1 + ((last - 1) << shift))
    unit = unit.to(torch.int32) if packed_max < NARROW else unit
    seg_coords = tuple(coords[seg_row, ax] for ax in range(len(rest)))
    base32 = base.to(torch.int32) if base.numel() == 0 or int(base.max()) < NARROW else base
    return Layout(base, base32, start, width[seg_part], bounds, seg_coords, unit, shift, packed_max)


def _cumulate(hist: torch.Tensor) -> torch.Tensor:
    """Exclusive running sum (64-bit) with the total appended (``[n + 1]``)."""
    out = torch.zeros(hist.numel() + 1, dtype=torch.long, device=hist.device)
    torch.cumsum(hist, 0, dtype=torch.long, out=out[1:])
    return out


class Segments:
    """Class counts of every segment and what follows from them.  Counts are held
    class-major, ``cum[c·S + j]`` = voxels of classes < c plus class-c voxels in
    segments before j: one non-decreasing sequence over all classes."""

    def __init__(self, slot: torch.Tensor, K: int, B: int, spatial: tuple[int, ...], g: int, centroids: bool = True):
        self.slot, self.K, self.B, self.spatial, self.g = slot, K, B, spatial, g
        self.lay = layout(B, spatial, g, slot.device)
        self.S = S = self.lay.start.numel()
        self.packed: torch.Tensor | None = None
        # 32-bit indices (and packed sums) where they fit: half the memory traffic of the pass
        narrow = (K + 1) * S < NARROW and (not centroids or self.lay.packed_max < NARROW)
        dtype = torch.int32 if narrow else torch.long
        # a copy, never the caller's labels: slot K (ineligible) lands past K·S
        idx = slot.to(dtype, copy=True).mul_(S).add_(self.lay.base32 if narrow else self.lay.base)
        if centroids:  # per (class, segment): count + (sum of the last coordinate << shift), one pass
            self.packed = torch.zeros((K + 1) * S, dtype=dtype, device=slot.device).index_add_(
                0, idx, self.lay.unit.to(dtype)
            )[: K * S]
            self.hist = self.packed & ((1 << self.lay.shift) - 1)
        else:  # counts only
            self.hist = torch.bincount(idx, minlength=(K + 1) * S)[: K * S]
        self.cum = _cumulate(self.hist)
        self.hist_ks = self.hist.view(K, S)
        self._members: torch.Tensor | None = None

    def per_box(self, cum: torch.Tensor | None = None) -> torch.Tensor:
        """``[K, B·G]`` sums over each box, from a class-major running sum (default: counts)."""
        cum = self.cum if cum is None else cum
        at = cum[torch.arange(self.K, device=cum.device).unsqueeze(1) * self.S + self.lay.bounds]
        return at[:, 1:] - at[:, :-1]

    def coord_sums(self, cls: torch.Tensor | None = None, box: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per axis, the sums of the members' coordinates (exact integers) of the groups
        (class slot ``cls``, box ``box``), or ``[K, B·G]`` of every group by default.  Only
        the listed groups' segments are read (SAG needs the centroids of the groups it
        reflects in, a small part of them): along an other axis a segment's coordinate
        is constant, so its sum is count × coordinate; the last axis's sum is packed with
        the counts.  A group's segments are contiguous in the list, so each sum is a
        difference of one running sum over the gathered segments."""
        if self.packed is None:
            raise ValueError("coordinate sums need Segments(..., centroids=True)")
        lay, nbox = self.lay, self.lay.bounds.numel() - 1
        if (cls is None) != (box is None):
            raise ValueError("coord_sums takes both cls and box, or neither")
        every = cls is None
        if cls is None or box is None:  # every group (the check above: both are None)
            cls = torch.arange(self.K, device=lay.start.device).repeat_interleave(nbox)
            box = torch.arange(nbox, device=lay.start.device).repeat(self.K)
        lo = lay.bounds.index_select(0, box)
        n = lay.bounds.index_select(0, box + 1) - lo
        owner = torch.repeat_interleave(torch.arange(n.numel(), device=n.device), n)
        ends = torch.cumsum(n, 0)
        seg = torch.arange(owner.numel(), device=n.device) + (lo - (ends - n)).index_select(0, owner)
        at = cls.index_select(0, owner) * self.S + seg
        count = self.hist.index_select(0, at)
        values = [count * c.index_select(0, seg) for c in lay.coords]
        values.append(self.packed.index_select(0, at) >> lay.shift)
        out = []
        for v in values:  # per group: the running sum at its last segment minus at its first
            run = _cumulate(v)
            out.append(run.index_select(0, ends) - run.index_select(0, ends - n))
        return [o.view(self.K, nbox) for o in out] if every else out

    @property
    def total(self) -> int:
        return int(self.cum[-1])

    def slot_at(self, flat: torch.Tensor) -> torch.Tensor:
        """Class slot of voxels (flat indices)."""
        return self.slot.index_select(0, flat)

    def box_at(self, flat: torch.Tensor) -> torch.Tensor:
        """Box ``b·G + cell`` of voxels (flat indices)."""
        return box_of(flat, self.spatial, self.g)

    def select(self, cls: torch.Tensor, box: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """Flat index of the ``rank``-th voxel of class slot ``cls`` counted from box ``box``
        on (raster order inside each box)."""
        # gathers by index_select: on the CPU several times faster than indexing with a tensor
        target = self.cum.index_select(0, cls * self.S + self.lay.bounds.index_select(0, box)) + rank
        widest = int(self.lay.width.max())  # voxels scanned per draw
        if self.g == 1 and rank.numel() * widest > SORT_AT * self.slot.numel():
            return self.members().index_select(0, target)
        pos = torch.searchsorted(self.cum[1:], target, right=True)  # = cls·S + segment
        inside = target - self.cum.index_select(0, pos)
        pos = pos - cls * self.S
        first, width = self.lay.start.index_select(0, pos), self.lay.width.index_select(0, pos)
        span = torch.arange(widest, device=cls.device)
        at = (first.unsqueeze(1) + span).clamp_(max=self.slot.numel() - 1)
        hit = self.slot.index_select(0, at.view(-1)).view(at.shape) == cls.unsqueeze(1)
        hit &= span < width.unsqueeze(1)
        # the rank-th hit of each row, with 8-bit running counts where a segment is that short
        count = torch.uint8 if widest < 256 else torch.long
        nth = torch.cumsum(hit, 1, dtype=count) == (inside + 1).to(count).unsqueeze(1)
        nth &= hit
        return first + nth.view(torch.uint8).argmax(1)

    def members(self) -> torch.Tensor:
        """With one cell per image the list is the flat order, so every class's members in
        list order, class after class, are the voxels stably sorted by class slot: position
        ``cum[c·S + j] + r`` of this order is what :meth:`select` finds by scanning.  One
        sort of the voxels, worth it only for many draws (DVCL's negatives: ~10⁵)."""
        if self._members is None:
            self._members = stable_argsort(self.slot)
        return self._members


def class_slots(
    lab: torch.Tensor, elig: torch.Tensor | None, classes: Sequence[int] | None, dev: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate class values ``cand`` (absent ones simply get no voxels) and every
    voxel's position in ``cand``, ``len(cand)`` for a voxel that is no candidate or
    not eligible."""
    lo, hi = (int(v) for v in torch.aminmax(lab))
    if classes is not None:
        cand = torch.tensor(sorted({int(c) for c in classes}), dtype=torch.long, device=dev)
    elif hi - lo < 2**16:
        cand = torch.arange(lo, hi + 1, device=dev)
        if cand.numel() > DENSE_RANGE:  # keep the present values only (the segment counts grow with them)
            cand = cand[torch.bincount(lab - lo, minlength=hi - lo + 1) > 0]
    else:
        cand = torch.unique(lab if elig is None else lab[elig])
    K = int(cand.numel())
    if K == 0:  # no class to draw from (e.g. an empty class list, or a mask with no voxel)
        return cand, torch.full_like(lab, 0)
    if classes is None and lo == 0 and K == hi + 1:
        slot = lab  # the values are their own positions
    elif hi - lo < 2**16:
        lut = torch.full((hi - lo + 1,), K, dtype=torch.long, device=dev)
        inr = (cand >= lo) & (cand <= hi)
        lut[cand[inr] - lo] = torch.arange(K, device=dev)[inr]
        slot = lut.gather(0, lab - lo if lo else lab)
    else:
        at = torch.searchsorted(cand, lab).clamp(max=K - 1)
        slot = torch.where(cand[at] == lab, at, K)
    return cand, slot if elig is None else slot.masked_fill(~elig, K)


class GroupCounts(Protocol):
    """What :class:`Groups` reads of a group structure: :class:`Segments` here, or
    ``voxel_runs.Runs`` (the same voxels rank for rank)."""

    K: int
    B: int
    spatial: tuple[int, ...]
    g: int

    @property
    def total(self) -> int: ...

    def per_box(self) -> torch.Tensor: ...

    def slot_at(self, flat: torch.Tensor) -> torch.Tensor: ...

    def box_at(self, flat: torch.Tensor) -> torch.Tensor: ...

    def select(self, cls: torch.Tensor, box: torch.Tensor, rank: torch.Tensor) -> torch.Tensor: ...

    def coord_sums(self, cls: torch.Tensor | None = None, box: torch.Tensor | None = None) -> list[torch.Tensor]: ...


@dataclass
class Groups:
    """Groups in output order, unit-major (module doc): per image (b, class, cell),
    else (class, b, cell); NS has one cell, and over the batch one group per class."""

    seg: GroupCounts
    per_image: bool
    pooled: bool  # NS over the batch: a class's boxes (images) form one group
    K: int
    B: int
    G: int  # cells per image

    @property
    def gpu(self) -> int:  # groups per unit
        return 1 if self.pooled else self.G if self.per_image else self.B * self.G

    def arrange(self, per_box: torch.Tensor, pool: Callable[..., torch.Tensor] = torch.sum) -> torch.Tensor:
        """``[K, B·G]`` per (class, box) → one value per group, in group order."""
        if self.pooled:
            return pool(per_box, 1)
        t = per_box.reshape(self.K, self.B, self.G)
        return (t.permute(1, 0, 2) if self.per_image else t).reshape(-1)

    def grid(self, values: torch.Tensor, along_class: bool) -> torch.Tensor:
        """Group order of a per-class (``along_class``) or per-box quantity."""
        full = values.view(-1, 1).expand(self.K, self.B * self.G) if along_class else values.expand(self.K, -1)
        return self.arrange(full, pool=lambda t, d: t[:, 0])

    def key_at(self, flat: torch.Tensor) -> torch.Tensor:
        """Group index of voxels (the number of groups where none)."""
        s, box = self.seg.slot_at(flat), self.seg.box_at(flat)
        b, cell = torch.div(box, self.G, rounding_mode="floor"), box % self.G
        key = ((b * self.K + s) if self.per_image else (s * self.B + b)) * self.G + cell
        return torch.where(s < self.K, key, self.K * self.B * self.G)
