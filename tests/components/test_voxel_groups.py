"""The sort-free group structure of the samplers (vrsearch.components.voxel_groups)
against a stable sort of every voxel by group: same sizes, same coordinate sums
and, rank for rank, the same "r-th member in raster order" — by the segment scan
and, with one cell per image, by the sorted members it switches to for many draws."""

from __future__ import annotations

import math

import pytest
import torch

import vrsearch.components.voxel_groups as vg


def _brute(labels, mask, g):
    """Members of every (b, class, cell) group in raster order, by a stable sort."""
    B, *spatial = labels.shape
    V = math.prod(spatial)
    K = int(labels.max()) + 1
    coords = torch.stack(torch.unravel_index(torch.arange(V), tuple(spatial)), 1)
    cell = torch.zeros(V, dtype=torch.long)
    for ax, size in enumerate(spatial):
        cell = cell * g + coords[:, ax] * g // size
    G = g ** len(spatial)
    key = (torch.arange(B).view(B, 1) * K + labels.reshape(B, V)) * G + cell  # (b, class, cell)
    key = torch.where(mask.reshape(B, V), key, B * K * G).reshape(-1)
    order = torch.sort(key, stable=True).indices
    counts = torch.bincount(key, minlength=B * K * G + 1)[:-1]
    return order, counts, K, G, coords


@pytest.mark.parametrize("shape", [(2, 9, 7, 11), (3, 13, 10), (1, 5, 6, 100), (2, 3, 4, 50)], ids=str)
@pytest.mark.parametrize("g", [1, 3, 5])
@pytest.mark.parametrize("segment", [48, 4])
@pytest.mark.parametrize("sort_at", [math.inf, 0.0], ids=["scan", "sort"])
@pytest.mark.parametrize("centroids", [True, False], ids=["packed", "counts"])
@pytest.mark.parametrize("narrow", [2**31, 0], ids=["32bit", "64bit"])
def test_sizes_sums_and_every_rank_match_a_stable_sort(shape, g, segment, sort_at, centroids, narrow, monkeypatch):
    monkeypatch.setattr(vg, "SEGMENT", segment)  # short segments: several per cell row
    monkeypatch.setattr(vg, "SORT_AT", sort_at)  # many draws with one cell per image: sorted members
    monkeypatch.setattr(vg, "NARROW", narrow)  # 0: the 64-bit indices and sums of very large batches
    vg.layout.cache_clear()
    gen = torch.Generator().manual_seed(sum(shape) + g)
    labels = torch.randint(0, 4, shape, generator=gen)
    mask = torch.rand(shape, generator=gen) > 0.25
    order, counts, K, G, coords = _brute(labels, mask, g)
    B, spatial = shape[0], tuple(shape[1:])
    slot = labels.reshape(-1).masked_fill(~mask.reshape(-1), K)
    given = slot.clone()
    seg = vg.Segments(slot, K, B, spatial, g, centroids=centroids)
    assert torch.equal(slot, given)  # the caller's labels are never written
    grp = vg.Groups(seg, True, False, K, B, G)
    assert torch.equal(grp.arrange(seg.per_box()), counts)
    # centroid sums, axis by axis
    V = math.prod(spatial)
    members = order[: int(counts.sum())]
    gid = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    if centroids:
        for ax, sums in enumerate(seg.coord_sums()):
            want = torch.zeros(counts.numel(), dtype=torch.long).index_add_(0, gid, coords[members % V, ax])
            assert torch.equal(grp.arrange(sums), want), ax
        # the same for a few groups only (SAG reads the groups it reflects in), any order
        some = torch.randperm(counts.numel(), generator=gen)[: counts.numel() // 3]
        gcls = grp.grid(torch.arange(K), along_class=True)[some]
        gbox = grp.grid(torch.arange(B * G), along_class=False)[some]
        for ax, sums in enumerate(seg.coord_sums(gcls, gbox)):
            want = torch.zeros(counts.numel(), dtype=torch.long).index_add_(0, gid, coords[members % V, ax])
            assert torch.equal(sums, want[some]), ax
        with pytest.raises(ValueError, match="both"):
            seg.coord_sums(gcls, None)
    else:
        with pytest.raises(ValueError, match="centroids=True"):
            seg.coord_sums()
    # every rank of every group
    rank = torch.arange(members.numel()) - (torch.cumsum(counts, 0) - counts)[gid]
    gcls = grp.grid(torch.arange(K), along_class=True)
    gstart = grp.grid(seg.lay.bounds[:-1], along_class=False)
    assert torch.equal(seg.select(gcls[gid], gstart[gid], rank), members)
    assert (seg._members is not None) == (g == 1 and sort_at == 0.0)  # the path under test was taken
    # the group of any voxel
    flat = torch.arange(B * V)
    key = grp.key_at(flat, g, spatial)
    want = torch.full((B * V,), counts.numel(), dtype=torch.long)
    want[members] = gid
    assert torch.equal(key, want)
    vg.layout.cache_clear()
