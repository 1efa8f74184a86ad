"""Voxel groups of the samplers from runs of equal labels (the fast path beside
``voxel_groups.Segments``, for spatially coherent labels).

A *run* is a maximal stretch of voxels, contiguous in memory, with one label and
one eligibility (mask) value: it starts where either changes, at every row and at
every cell border along the last axis (with one cell per image and no centroids,
only at every image).  Organs, pseudo-labels and confidence masks change a few
times per row, so a FLARE-sized batch of 2 M voxels has ~2·10⁴ runs (one cell)
to ~10⁵ (5 cells per axis), and everything the samplers need follows from the
runs alone:

* the candidate classes and each run's class slot come from the runs' labels
  (``voxel_groups.class_slots`` on one value per run, not per voxel);
* listing the runs stably by (class, box) (a radix sort of small keys) lists
  each group's members in raster order, so a running sum of the run lengths
  gives every group's size and turns "the r-th member" into one
  ``searchsorted`` and an offset: no scan of a segment;
* a run's coordinates are constant along the other axes and consecutive along
  the last one, so the coordinate sums of a group (SAG's centroid) are sums
  over its runs of ``L·x`` and ``L·z₀ + L(L−1)/2``.

Work: one comparison, one count and one nonzero over the voxels, then arrays of
runs.  On fragmented labels (noise, checkerboard masks) runs approach the voxels
and the segment counts are cheaper: :func:`find_runs` then returns ``None``
after the count, and the sampler uses ``voxel_groups.Segments``.  Both give the
same voxel rank for rank (``tests/components/test_voxel_groups.py``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from vrsearch.components.voxel_groups import box_of, stable_argsort

#: use runs while they are at most this fraction of the voxels (else the segment counts)
RUNS_AT = 0.125
#: find the runs of CPU tensors with numpy (comparison, count, nonzero: 4×, 27×, 7× torch's speed on one thread)
NUMPY_ON_CPU = True


@functools.lru_cache(maxsize=4)
def _row_cuts(B: int, spatial: tuple[int, ...], g: int, device: torch.device) -> torch.Tensor:
    """``[B·V]`` bool: the voxel opens a row or a cell along the last axis."""
    last = spatial[-1]
    z = torch.arange(last, device=device)
    opens = torch.ones(last, dtype=torch.bool, device=device)
    opens[1:] = (z[1:] * g) // last != (z[:-1] * g) // last
    return opens.repeat(B * math.prod(spatial[:-1]))


@functools.lru_cache(maxsize=4)
def _row_coords(B: int, rest: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per axis but the last, the coordinate of every row of the batch (``[B·R]``)."""
    row = torch.arange(math.prod(rest), device=device)
    return tuple(c.repeat(B) for c in torch.unravel_index(row, rest)) if rest else ()


@functools.lru_cache(maxsize=4)
def _boxes(B: int, spatial: tuple[int, ...], g: int, device: torch.device) -> torch.Tensor:
    """``[B·V]`` every voxel's box ``b·G + cell`` (16 or 32 bits): one gather per run
    instead of a division per axis."""
    small = torch.int16 if B * g ** len(spatial) < 2**15 else torch.int32
    return box_of(torch.arange(B * math.prod(spatial), device=device), spatial, g).to(small)


class Runs:
    """Runs listed by (class slot, box), boxes ``b·G + cell``; the same interface as
    ``voxel_groups.Segments`` (``per_box``, ``select``, ``coord_sums``, ``total``,
    ``slot_at``, ``box_at``)."""

    def __init__(
        self, start: torch.Tensor, slot: torch.Tensor, K: int, B: int, spatial: tuple[int, ...], g: int, rowwise: bool
    ):
        """``start``: first voxel of every run (:func:`find_runs`), ``slot``: its class slot
        (``K``: no candidate, or not eligible); ``rowwise``: cut at every row, so
        coordinate sums are defined."""
        self.K, self.B, self.spatial, self.g, self.rowwise = K, B, spatial, g, rowwise
        self.first, self.first_slot = start, slot  # in voxel order, for slot_at
        V, dev = math.prod(spatial), start.device
        length = torch.diff(start, append=start.new_tensor([B * V]))
        self.nbox = B * g ** len(spatial)
        box = _boxes(B, spatial, g, dev).index_select(0, start) if g > 1 else start // V
        key = slot * self.nbox + box  # runs of slot K sort after every group and are never read
        order = stable_argsort(key)
        self.start, self.length = start.index_select(0, order), length.index_select(0, order)
        self.cum = torch.zeros(self.length.numel() + 1, dtype=torch.long, device=dev)
        torch.cumsum(self.length, 0, out=self.cum[1:])
        # where each group's runs begin in the list, groups (class, box) in order
        self.bounds = torch.searchsorted(key.index_select(0, order), torch.arange(K * self.nbox + 1, device=dev))

    def slot_at(self, flat: torch.Tensor) -> torch.Tensor:
        """Class slot of voxels (flat indices): the slot of the run holding each."""
        return self.first_slot.index_select(0, torch.searchsorted(self.first, flat, right=True) - 1)

    def box_at(self, flat: torch.Tensor) -> torch.Tensor:
        """Box ``b·G + cell`` of voxels (flat indices), from the cached table."""
        if self.g == 1:
            return torch.div(flat, math.prod(self.spatial), rounding_mode="floor")
        return _boxes(self.B, self.spatial, self.g, flat.device).index_select(0, flat).long()

    @property
    def total(self) -> int:
        return int(self.cum[self.bounds[-1]])

    def per_box(self) -> torch.Tensor:
        """``[K, B·G]`` group sizes."""
        at = self.cum.index_select(0, self.bounds)
        return (at[1:] - at[:-1]).view(self.K, self.nbox)

    def select(self, cls: torch.Tensor, box: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
        """Flat index of the ``rank``-th voxel (raster order) of class slot ``cls`` counted
        from box ``box`` on (ranks past the box run on into the class's next boxes)."""
        target = self.cum.index_select(0, self.bounds.index_select(0, cls * self.nbox + box)) + rank
        run = torch.searchsorted(self.cum[1:], target, right=True)
        return self.start.index_select(0, run) + (target - self.cum.index_select(0, run))

    def coord_sums(self, cls: torch.Tensor | None = None, box: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Per axis, the sums of the members' coordinates of groups (``cls``, ``box``), or
        ``[K, B·G]`` of every group by default (exact integers)."""
        if not self.rowwise:
            raise ValueError("coordinate sums need runs cut at every row (Runs with centroids)")
        if (cls is None) != (box is None):
            raise ValueError("coord_sums takes both cls and box, or neither")
        every = cls is None or box is None
        gid = torch.arange(self.K * self.nbox, device=self.start.device) if every else cls * self.nbox + box
        lo, hi = self.bounds.index_select(0, gid), self.bounds.index_select(0, gid + 1)
        *rest, last = self.spatial
        row = torch.div(self.start, last, rounding_mode="floor")  # a run lies in one row
        along = [self.length * c.index_select(0, row) for c in _row_coords(self.B, tuple(rest), row.device)]
        z0 = self.start - row * last  # z₀ + (z₀+1) + … + (z₀+L−1) = L(2z₀ + L − 1)/2
        along.append(self.length * (2 * z0 + self.length - 1) // 2)
        out = []
        for v in along:
            run = torch.zeros(v.numel() + 1, dtype=torch.long, device=v.device)
            torch.cumsum(v, 0, out=run[1:])
            sums = run.index_select(0, hi) - run.index_select(0, lo)
            out.append(sums.view(self.K, self.nbox) if every else sums)
        return out


def find_runs(
    lab: torch.Tensor, elig: torch.Tensor | None, B: int, spatial: tuple[int, ...], g: int, rowwise: bool
) -> torch.Tensor | None:
    """First voxel of every run of equal label and eligibility (flat ``[B·V]`` labels and
    mask), cut at every row and cell along the last axis when ``rowwise``, else at every
    image; ``None`` when the runs exceed ``RUNS_AT`` of the voxels (the segment counts
    are cheaper)."""
    cut = _row_cuts(B, spatial, g, lab.device) if rowwise else math.prod(spatial)
    if NUMPY_ON_CPU and lab.device.type == "cpu":
        return _starts_numpy(lab.numpy(), None if elig is None else elig.numpy(), cut)
    opens = torch.ones_like(lab, dtype=torch.bool)
    torch.ne(lab[1:], lab[:-1], out=opens[1:])
    if elig is not None:
        opens[1:] |= elig[1:] != elig[:-1]
    if isinstance(cut, int):
        opens[::cut] = True
    else:
        opens |= cut
    return None if int(opens.sum()) > RUNS_AT * lab.numel() else torch.nonzero(opens).squeeze(1)


def _starts_numpy(lab: np.ndarray, elig: np.ndarray | None, cut: torch.Tensor | int) -> torch.Tensor | None:
    """:func:`find_runs` on the CPU, in numpy, a quarter of the voxels at a time, so
    that on fragmented labels it gives up after the first quarter (the count only
    grows, so it gives up exactly when the whole count would exceed ``RUNS_AT``)."""
    n = lab.size
    opens = np.empty(n, dtype=bool)
    count, step = 0, -(-n // 4)
    for lo in range(0, n, step):
        a, hi = max(lo, 1), min(lo + step, n)  # opens[0] is set below: a row's and an image's start
        np.not_equal(lab[a:hi], lab[a - 1 : hi - 1], out=opens[a:hi])
        if elig is not None:
            opens[a:hi] |= elig[a:hi] != elig[a - 1 : hi - 1]
        if isinstance(cut, int):  # image starts
            opens[lo:hi][(-lo) % cut :: cut] = True
        else:  # row and cell cuts
            opens[lo:hi] |= cut.numpy()[lo:hi]
        count += int(np.count_nonzero(opens[lo:hi]))
        if count > RUNS_AT * n:
            return None
    return torch.from_numpy(np.flatnonzero(opens))
