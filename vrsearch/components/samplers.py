"""Pixel/voxel samplers NS, SG and SAG (METHODS.md "Shared pieces"; ARCO, You et
al., NeurIPS 2023, Section 3.3, Lemma 3.1, Theorem 3.2, Appendix A).

* ``ns``  naive sampling: uniform (with replacement) over the class's voxels.
* ``sg``  stratified group sampling (ARCO Sec. 3.3): each image is split into
  ``g`` equal cells per axis (``grid`` 9/16/25 -> g = 3/4/5, g**ndim cells; the
  cell of coordinate x along an axis of size n is ``floor(x*g/n)``); a group is
  (image, cell) ∩ class ∩ mask.  The quota ``per_class`` of a unit (one image
  and class with ``per_image=True``; one class over the batch otherwise) is
  shared among its groups in proportion to their sizes (ARCO Thm 3.2) by
  largest-remainder rounding: group m gets ``floor(n·N_m/N)`` plus one if its
  remainder ``n·N_m mod N`` is among the largest ``n − Σ floor`` of its unit;
  ties go to the lower group index, i.e. lower (image,) cell in raster order.
  Exact integer arithmetic, so the rule is deterministic.  Empty cells get no
  quota.  Draws inside a group are uniform with replacement.
* ``sag`` stratified antithetic group sampling (ARCO Sec. 3.3, Lemma 3.1): as
  SG, but a group with quota q draws ceil(q/2) voxels uniformly ("primaries")
  and takes floor(q/2) partners ``p' = 2·c_m − p`` of the first floor(q/2)
  primaries, c_m the centroid of the group's voxels rounded half-up per axis.
  With q odd the last primary is an unpaired plain uniform draw.  Ruling
  (METHODS.md): a partner that is not a voxel of the group (other cell, other
  class, masked out, or outside the image) is replaced by a fresh uniform draw
  from the group; those are counted in ``n_outside``.

Rounding and weights (``rounding``; METHODS.md Ruling 2026-12: a group whose
quota rounds to zero must stay reachable).  ``largest`` is ARCO's rule above:
fixed quotas n_m and ``weight = (N_m/N)/n_m`` (NS: ``1/per_class``), so that
``Σ_{samples of a unit} weight·f`` estimates the unit's mean of f without the
small bias of the plain mean under rounded quotas.  It is exactly unbiased iff
every non-empty group of the unit gets n_m ≥ 1; a group rounded down to 0 is
never sampled, and the weights of the unit then sum to the covered fraction
Σ_{n_m>0} N_m/N < 1 (e.g. per_class=3 with 9 cells).  ``random`` (an
extension, not in ARCO) keeps the floors and hands the n − Σ floor extra draws
out by systematic sampling over the remainders (one uniform offset per unit),
so E[n_m] = n·N_m/N exactly, the total is still n, and the plain weight
``1/per_class`` is exactly unbiased for any n; quotas then vary per call.
``auto`` (the default) is ``largest`` in every unit it covers (each non-empty
group gets ≥ 1 draw: ARCO's sampler exactly, where it is unbiased) and
``random`` in the others; the choice depends on the counts only, so it is
exactly unbiased too.  Measured by ``benchmarks/sampler_variance.py`` (400
draws; the class-mean estimate of a smooth field on long-tailed labels, 8
classes; MSE relative to NS; max over the units of |bias|/SE):

    setting (per class)               rounding  max|bias|/SE   MSE/NS median  max
    LCL, 3 per image, grid 16, SG     largest   1342           0.98           6.06
                                      random    3.0            0.82           1.02
                                      auto      2.3            0.78           1.06
    LCL, 3 per image, grid 25, SG     largest   2935           0.91           7.50
                                      random    2.1            0.80           1.05
                                      auto      2.4            0.84           1.28
    ARCO, 256 over 4 images, grid 25  largest   361            0.056          27.4
      SG                              random    1.5            0.058          0.62
                                      auto      1.7            0.054          0.56
    DVCL, 256 over 8 images, grid 16  largest   330            0.049          17.9
      SG                              random    2.0            0.055          0.30
                                      auto      1.6            0.054          0.27

(ARCO at grid 16, where most groups get a draw: largest 10.1, random 1.5, auto
1.8 SE, MSE max 0.39 / 0.42 / 0.42.  SAG: the same pattern, e.g. ARCO grid 25
largest 407 / random 2.2 / auto 1.2 SE.)
``largest`` is biased by hundreds to thousands of standard errors once a unit
has more groups than draws and its MSE reaches 6–27× NS; ``random`` and
``auto`` are unbiased (|bias|/SE ≤ 3 over 16–32 units is what zero bias
gives) and their MSE is the same within the Monte-Carlo noise of these
numbers (±~10 %); ``auto`` is the default because it is ARCO's sampler
wherever that one is valid.  With 3 draws per class stratification gains
little (median MSE ~0.8× NS) and a unit can lose (up to 1.28× NS here):
rounded quotas cannot be proportional with 3 draws, and ARCO Thm 3.2 assumes
they are.

SAG and the Ruling.  Every primary p is uniform on its group G, but the
partner is not: with S = {v ∈ G : 2c−v ∈ G} (the reflection is a bijection of
S onto itself) and k = |G∖S|, the Ruling gives it the marginal
``1[v∈S]/|G| + k/|G|²``, which over-weights the symmetric core S, so giving
both members of a pair the SG weight would be biased.  Pair weights (in units
of the SG weight) fix that exactly without touching the samples: a reflected
pair (p ∈ S) gets (1, 1); a failed pair (p ∉ S, so p is uniform on G∖S) whose
replacement v is also ∉ S gets (1, 1) (two independent uniform draws on G∖S);
a failed pair whose replacement is in S gets (2, 0).  Then
E[pair] = (2/|G|)·Σ_S f + (2/|G|)·Σ_{G∖S} f = 2·mean_G f, i.e. SAG is exactly
as unbiased as SG with the same rounding, and every pair's weights sum to 2,
so the weights of a unit sum to the same value as SG's (1 under full
coverage) and the estimate is shift-invariant.  (Importance weights on the
partner, ρ = (1/|G|)/P(p'=v), are also unbiased but multiply the level of f
by a random weight; on a field with a large mean that made SAG worse than NS.)

Order of the output: by group (image-major with ``per_image=True``, class-major
otherwise; cells in raster order); within a group SAG lists ceil(q/2)
primaries, then the partner of primary 0, 1, ...  Every random number comes from
``torch.rand`` on ``generator`` (which must live on the labels'
device), so equal generator states give equal samples.  Cost is a few linear
passes over the voxels and arrays of runs of equal labels (``voxel_runs.py``)
or, on fragmented labels, of (row segment × class) counts (``voxel_groups.py``;
the same voxels rank for rank): no sort of the voxels and never a |voxels|²
object.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vrsearch.components.antithetic import antithetic
from vrsearch.components.voxel_groups import GroupCounts, Groups, Segments, class_slots
from vrsearch.components.voxel_runs import Runs, find_runs
from vrsearch.core.knobs import ROUNDING_HELP  # re-exported: older method sources read it here (method_ab.py)

__all__ = ["GRIDS", "ROUNDINGS", "ROUNDING_HELP", "SAMPLERS", "VoxelSample", "sample_voxels"]

SAMPLERS = ("ns", "sg", "sag")
GRIDS = (9, 16, 25)
ROUNDINGS = ("auto", "largest", "random")
_CELLS = {9: 3, 16: 4, 25: 5}


@dataclass
class VoxelSample:
    """Sampled voxels; every tensor has one entry per sample (see module doc)."""

    index: torch.Tensor  # [N] int64 flat indices into labels.reshape(-1)
    batch: torch.Tensor  # [N] int64 image index
    cls: torch.Tensor  # [N] int64 class value
    weight: torch.Tensor  # [N] float importance weight (module doc)
    n_reflected: int = 0  # SAG: antithetic partners attempted
    n_outside: int = 0  # SAG: partners outside their group, replaced by a uniform draw

    def __len__(self) -> int:
        return int(self.index.numel())

    def coords(self, shape: Sequence[int]) -> torch.Tensor:
        """``[N, ndim]`` integer spatial coordinates; ``shape`` = labels.shape."""
        spatial = tuple(int(s) for s in shape[1:])
        return torch.stack(torch.unravel_index(self.index % math.prod(spatial), spatial), dim=1)


def _empty(device: torch.device, dtype: torch.dtype) -> VoxelSample:
    z = torch.zeros(0, dtype=torch.long, device=device)
    return VoxelSample(z, z.clone(), z.clone(), torch.zeros(0, dtype=dtype, device=device))


def _check(
    labels: torch.Tensor, per_class: int, method: str, grid: int, mask: torch.Tensor | None, rounding: str
) -> None:
    if method not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {method!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {GRIDS}, got {grid!r}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    if labels.dim() not in (3, 4):
        raise ValueError(f"labels must be [B, X, Y] or [B, X, Y, Z], got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError("labels must be an integer tensor")
    if mask is not None and tuple(mask.shape) != tuple(labels.shape):
        raise ValueError(f"mask shape {tuple(mask.shape)} != labels shape {tuple(labels.shape)}")
    if int(per_class) < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")


def _quotas(
    counts: torch.Tensor, n_units: int, gpu: int, n: int, rounding: str, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Proportional quotas ``n·N_m/N`` (ARCO Thm 3.2: |D_m| ∝ |P_m|), exact total n per
    unit, rounded per ``rounding`` (module doc). Returns (quota per group, fixed per
    unit, unit populations repeated per group)."""
    dev = counts.device
    pop = counts.view(n_units, gpu).sum(1)
    popg = pop.repeat_interleave(gpu).clamp(min=1)
    num = n * counts
    base, rem = num // popg, (num % popg).view(n_units, gpu)
    left = torch.where(pop > 0, n - base.view(n_units, gpu).sum(1), 0).unsqueeze(1)
    nonempty = counts.view(n_units, gpu) > 0
    if rounding != "random":  # largest remainder; ties: lower group index first
        order = torch.sort(-torch.where(nonempty, rem, -1), dim=1, stable=True).indices
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(gpu, device=dev).expand(n_units, gpu))
        extra = rank < left
        # fixed quotas: always with "largest"; with "auto" where every non-empty group of
        # the unit gets at least one draw (the unit is covered)
        fixed = ~(nonempty & (base.view(n_units, gpu) + extra == 0)).any(1)
        if rounding == "largest":
            fixed = torch.ones_like(fixed)
    if rounding != "largest":  # systematic: points t, t+N, ... over the cumulated remainders
        N = pop.clamp(min=1).unsqueeze(1)
        t = (torch.rand(n_units, 1, generator=generator, device=dev, dtype=torch.float64) * N).long()
        t = torch.minimum(t, N - 1)
        hi_c = torch.cumsum(rem, 1)
        systematic = torch.div(t - (hi_c - rem), N, rounding_mode="floor") - torch.div(
            t - hi_c, N, rounding_mode="floor"
        )
        if rounding == "random":
            extra, fixed = systematic, torch.zeros(n_units, dtype=torch.bool, device=dev)
        else:  # auto: largest remainder where it covers the unit, systematic elsewhere
            extra = torch.where(fixed.unsqueeze(1), extra, systematic.bool())
    return base + extra.reshape(-1).long(), fixed, popg


def sample_voxels(
    labels: torch.Tensor,
    per_class: int,
    *,
    method: str = "ns",
    grid: int = 16,
    generator: torch.Generator | None = None,
    classes: Sequence[int] | None = None,
    per_image: bool = True,
    mask: torch.Tensor | None = None,
    rounding: str = "auto",
) -> VoxelSample:
    """Draw ``per_class`` voxels (with replacement) of every class present in each
    image (``per_image=True``) or in the batch (``per_image=False``).

    labels: integer ``[B, X, Y]`` or ``[B, X, Y, Z]``; classes: the class values
    to sample (default: every value present among eligible voxels, 0 included);
    mask: bool, labels' shape, restricts the eligible voxels.  See the module
    docstring for the NS/SG/SAG definitions, rounding, weights and ordering."""
    _check(labels, per_class, method, grid, mask, rounding)
    dev, wdtype, n = labels.device, torch.get_default_dtype(), int(per_class)
    built = _build_groups(labels, method, grid, classes, per_image, mask) if n else None
    if built is None:
        return _empty(dev, wdtype)
    cand, grp = built
    counts = grp.arrange(grp.seg.per_box())
    quota, fixed, popg = _quotas(counts, counts.numel() // grp.gpu, grp.gpu, n, rounding, generator)
    sgrp, j, flat = _uniform_draws(grp, counts, quota, generator)
    # fixed quotas: (N_m/N)/n_m; random quotas: 1/n (module doc)
    weight = torch.where(
        fixed.repeat_interleave(grp.gpu), counts.double() / popg.double() / quota.clamp(min=1).double(), 1.0 / n
    )[sgrp]
    n_reflected = n_outside = 0
    if method == "sag":
        h = (quota[sgrp] + 1) // 2
        pp = torch.nonzero(j >= h).squeeze(1)  # partner slots
        n_reflected = int(pp.numel())
        if n_reflected:
            spatial = grp.seg.spatial
            flat, weight, n_outside = antithetic(
                flat,
                weight,
                pp,
                h,
                sgrp,
                _centres(grp, counts, spatial, torch.nonzero(quota >= 2).squeeze(1)),  # the groups with pairs
                grp.key_at,
                labels.numel(),
            )
    V = labels[0].numel()
    return VoxelSample(
        index=flat,
        batch=flat // V,
        cls=cand[grp.grid(torch.arange(grp.K, device=dev), True)[sgrp]],
        weight=weight.to(wdtype),
        n_reflected=n_reflected,
        n_outside=n_outside,
    )


def _build_groups(
    labels: torch.Tensor,
    method: str,
    grid: int,
    classes: Sequence[int] | None,
    per_image: bool,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, Groups] | None:
    """Candidate classes and the groups, from runs of equal labels (``voxel_runs.py``) or,
    on fragmented labels, from row-segment counts (``voxel_groups.py``); None when no
    voxel is eligible."""
    dev, B, spatial = labels.device, int(labels.shape[0]), tuple(int(s) for s in labels.shape[1:])
    if labels.numel() == 0:
        return None
    lab = labels.reshape(-1)
    if lab.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch gathers none of these
        lab = lab.long()
    elig = None if mask is None else mask.reshape(-1).to(device=dev, dtype=torch.bool)
    g, sag = 1 if method == "ns" else _CELLS[grid], method == "sag"
    rowwise = g > 1 or sag  # SAG's centroids need runs cut at every row, the cells at every cell border
    start = find_runs(lab, elig, B, spatial, g, rowwise)
    if start is not None:  # coherent labels: the classes of the runs are those of the voxels
        ok = None if elig is None else elig.index_select(0, start)
        cand, slot = class_slots(lab.index_select(0, start).long(), ok, classes, dev)
    else:
        cand, slot = class_slots(lab.long() if lab.dtype != torch.long else lab, elig, classes, dev)
    K = int(cand.numel())
    if K == 0:
        return None
    seg: GroupCounts = (
        Runs(start, slot, K, B, spatial, g, rowwise) if start is not None else Segments(slot, K, B, spatial, g, sag)
    )
    grp = Groups(seg, per_image, method == "ns" and not per_image, K, B, g ** len(spatial))
    return (cand, grp) if grp.seg.total > 0 else None


def _uniform_draws(
    grp: Groups, counts: torch.Tensor, quota: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``quota`` uniform draws (with replacement) in every group: the r-th member in raster
    order, r = ⌊u·N_m⌋. Returns (group, position inside the group, flat index) per draw."""
    dev = counts.device
    T = int(quota.sum())
    sgrp = torch.repeat_interleave(torch.arange(counts.numel(), device=dev), quota)
    j = torch.arange(T, device=dev) - (torch.cumsum(quota, 0) - quota)[sgrp]
    size = counts[sgrp]
    u = torch.rand(T, generator=generator, device=dev, dtype=torch.float64)
    gcls = grp.grid(torch.arange(grp.K, device=dev), along_class=True)
    gbox = grp.grid(torch.arange(grp.B * grp.G, device=dev), along_class=False)
    return sgrp, j, grp.seg.select(gcls[sgrp], gbox[sgrp], torch.minimum((u * size).long(), size - 1))


def _centres(grp: Groups, counts: torch.Tensor, spatial: tuple[int, ...], groups: torch.Tensor) -> torch.Tensor:
    """Flat index of the centroid of each group in ``groups``, rounded half up per axis
    (module doc); one entry per group, 0 for the groups not listed (never read)."""
    V, dev = math.prod(spatial), counts.device
    cnt = counts.index_select(0, groups).clamp(min=1)
    box = grp.grid(torch.arange(grp.B * grp.G, device=dev), along_class=False).index_select(0, groups)
    cls = grp.grid(torch.arange(grp.K, device=dev), along_class=True).index_select(0, groups)
    at = torch.div(box, grp.G, rounding_mode="floor") * V
    for ax, sums in enumerate(grp.seg.coord_sums(cls, box)):
        rounded = torch.div(2 * sums + cnt, 2 * cnt, rounding_mode="floor")
        at = at + rounded * math.prod(spatial[ax + 1 :])
    return torch.zeros_like(counts).index_copy_(0, groups, at)
