"""The sort-free group structures of the samplers (vrsearch.components.voxel_groups,
vrsearch.components.voxel_runs) against a stable sort of every voxel by group: same
sizes, same coordinate sums and, rank for rank, the same "r-th member in raster
order" — by the segment scan, by the sorted members it switches to for many draws
with one cell per image, and by the runs of equal labels; and the samplers draw the
same voxels with the same weights on either structure."""

from __future__ import annotations

import math

import pytest
import torch

import vrsearch.components.voxel_groups as vg
import vrsearch.components.voxel_runs as vr
from vrsearch.components.samplers import sample_voxels


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


def _labels(shape, seed, coherent):
    """Random labels and mask; ``coherent``: blocks of equal labels (runs along the last axis)."""
    gen = torch.Generator().manual_seed(seed)
    if not coherent:
        return torch.randint(0, 4, shape, generator=gen), torch.rand(shape, generator=gen) > 0.25
    coarse = (*shape[:-1], -(-shape[-1] // 6))
    labels = torch.randint(0, 4, coarse, generator=gen).repeat_interleave(6, -1)[..., : shape[-1]]
    mask = (torch.rand(coarse, generator=gen) > 0.25).repeat_interleave(6, -1)[..., : shape[-1]]
    return labels.contiguous(), mask.contiguous()


def _check_against_sort(seg, labels, mask, g, centroids, gen):
    """Sizes, coordinate sums (every group, and a third of them in any order), every
    rank of every group and the group of every voxel, against a stable sort."""
    order, counts, K, G, coords = _brute(labels, mask, g)
    B, spatial = labels.shape[0], tuple(labels.shape[1:])
    grp = vg.Groups(seg, True, False, K, B, G)
    assert torch.equal(grp.arrange(seg.per_box()), counts)
    assert seg.total == int(counts.sum())
    V = math.prod(spatial)
    members = order[: int(counts.sum())]
    gid = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    if centroids:
        for ax, sums in enumerate(seg.coord_sums()):
            want = torch.zeros(counts.numel(), dtype=torch.long).index_add_(0, gid, coords[members % V, ax])
            assert torch.equal(grp.arrange(sums), want), ax
        some = torch.randperm(counts.numel(), generator=gen)[: counts.numel() // 3]
        gcls = grp.grid(torch.arange(K), along_class=True)[some]
        gbox = grp.grid(torch.arange(B * G), along_class=False)[some]
        for ax, sums in enumerate(seg.coord_sums(gcls, gbox)):
            want = torch.zeros(counts.numel(), dtype=torch.long).index_add_(0, gid, coords[members % V, ax])
            assert torch.equal(sums, want[some]), ax
        with pytest.raises(ValueError, match="both"):
            seg.coord_sums(gcls, None)
    rank = torch.arange(members.numel()) - (torch.cumsum(counts, 0) - counts)[gid]
    gcls = grp.grid(torch.arange(K), along_class=True)
    gbox = grp.grid(torch.arange(B * G), along_class=False)
    assert torch.equal(seg.select(gcls[gid], gbox[gid], rank), members)
    flat = torch.arange(B * V)
    want = torch.full((B * V,), counts.numel(), dtype=torch.long)
    want[members] = gid
    assert torch.equal(grp.key_at(flat), want)


SHAPES = [(2, 9, 7, 11), (3, 13, 10), (1, 5, 6, 100), (2, 3, 4, 50)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("g", [1, 3, 5])
@pytest.mark.parametrize("segment", [48, 4])
@pytest.mark.parametrize("sort_at", [math.inf, 0.0], ids=["scan", "sort"])
@pytest.mark.parametrize("centroids", [True, False], ids=["packed", "counts"])
@pytest.mark.parametrize("narrow", [2**31, 0], ids=["32bit", "64bit"])
def test_segments_match_a_stable_sort(shape, g, segment, sort_at, centroids, narrow, monkeypatch):
    monkeypatch.setattr(vg, "SEGMENT", segment)  # short segments: several per cell row
    monkeypatch.setattr(vg, "SORT_AT", sort_at)  # many draws with one cell per image: sorted members
    monkeypatch.setattr(vg, "NARROW", narrow)  # 0: the 64-bit indices and sums of very large batches
    vg.layout.cache_clear()
    gen = torch.Generator().manual_seed(sum(shape) + g)
    labels, mask = _labels(shape, sum(shape) + g, coherent=False)
    K = int(labels.max()) + 1
    slot = labels.reshape(-1).masked_fill(~mask.reshape(-1), K)
    given = slot.clone()
    seg = vg.Segments(slot, K, shape[0], tuple(shape[1:]), g, centroids=centroids)
    assert torch.equal(slot, given)  # the caller's labels are never written
    _check_against_sort(seg, labels, mask, g, centroids, gen)
    if not centroids:
        with pytest.raises(ValueError, match="centroids=True"):
            seg.coord_sums()
    assert (seg._members is not None) == (g == 1 and sort_at == 0.0)  # the path under test was taken
    vg.layout.cache_clear()


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("g", [1, 3, 5])
@pytest.mark.parametrize("centroids", [True, False], ids=["rows", "images"])
@pytest.mark.parametrize("coherent", [True, False], ids=["blocks", "noise"])
@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "torch"])
def test_runs_match_a_stable_sort(shape, g, centroids, coherent, numpy, monkeypatch):
    monkeypatch.setattr(vr, "RUNS_AT", math.inf)  # runs even on noise
    monkeypatch.setattr(vr, "NUMPY_ON_CPU", numpy)  # False: the path of GPU tensors
    labels, mask = _labels(shape, sum(shape) + g, coherent)
    K = int(labels.max()) + 1
    flat, elig = labels.reshape(-1), mask.reshape(-1)
    start = vr.find_runs(flat, elig, shape[0], tuple(shape[1:]), g, rowwise=centroids or g > 1)
    assert start is not None  # cut where the label or the mask changes
    slot = flat[start].masked_fill(~elig[start], K)
    runs = vr.Runs(start, slot, K, shape[0], tuple(shape[1:]), g, rowwise=centroids or g > 1)
    _check_against_sort(runs, labels, mask, g, centroids or g > 1, torch.Generator().manual_seed(g))
    if not centroids and g == 1:  # runs cross rows: no coordinate sums
        with pytest.raises(ValueError, match="every row"):
            runs.coord_sums()


@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "torch"])
def test_runs_give_way_to_segments_on_fragmented_labels(numpy, monkeypatch):
    monkeypatch.setattr(vr, "NUMPY_ON_CPU", numpy)
    labels, mask = _labels((2, 16, 16, 32), 0, coherent=False)
    assert vr.find_runs(labels.reshape(-1), mask.reshape(-1), 2, (16, 16, 32), 3, True) is None
    slabs = (torch.arange(32) // 11).expand(2, 16, 16, 32).reshape(-1)  # 3 runs a row, cut by 3 cells
    start = vr.find_runs(slabs.contiguous(), None, 2, (16, 16, 32), 3, True)
    assert start is not None and start.numel() == 2 * 16 * 16 * 3
    # a mask that changes inside a label's run cuts it too
    mask = torch.ones(2 * 16 * 16 * 32, dtype=torch.bool)
    mask[5::32] = False
    monkeypatch.setattr(vr, "RUNS_AT", 0.25)
    assert vr.find_runs(slabs.contiguous(), mask, 2, (16, 16, 32), 3, True).numel() == 2 * 16 * 16 * 5


@pytest.mark.parametrize("method", ["ns", "sg", "sag"])
@pytest.mark.parametrize("coherent", [True, False], ids=["blocks", "noise"])
@pytest.mark.parametrize("shape", [(3, 10, 12, 40), (4, 30, 44), (1, 2, 3, 4)], ids=str)
@pytest.mark.parametrize(
    "dtype, numpy", [(torch.int64, True), (torch.uint8, True), (torch.uint16, True), (torch.int32, False)]
)
def test_samplers_draw_the_same_voxels_on_runs_and_segments(method, coherent, shape, dtype, numpy, monkeypatch):
    """Every field of the sample, for every grid, rounding, pooling and with a mask and
    a class list, label dtypes and the torch path (GPU tensors) too: the runs path (the
    fast one) is the segment path, to the bit."""
    monkeypatch.setattr(vr, "NUMPY_ON_CPU", numpy)
    labels, mask = _labels(shape, len(shape), coherent)
    labels = labels.to(dtype)
    settings = [
        dict(grid=grid, rounding=rounding, per_image=per_image, mask=m, classes=classes)
        for grid in (9, 16, 25)
        for rounding in ("auto", "largest", "random")
        for per_image, m, classes in ((True, None, None), (False, mask, None), (True, mask, [0, 2, 3, 7]))
    ]
    for i, kw in enumerate(settings):
        out = []
        for at in (math.inf, -1.0):  # every call on runs, then never
            monkeypatch.setattr(vr, "RUNS_AT", at)
            out.append(sample_voxels(labels, 7, method=method, generator=torch.Generator().manual_seed(i), **kw))
        a, b = out
        assert len(a) > 0
        for field in ("index", "batch", "cls", "weight"):
            assert torch.equal(getattr(a, field), getattr(b, field)), (field, kw)
        assert (a.n_reflected, a.n_outside) == (b.n_reflected, b.n_outside), kw
