"""Voxel samplers NS / SG / SAG (vrsearch.components.samplers; ARCO Sec. 3.3, Thm 3.2).

Exactness is checked against a naive loop-over-voxels reference on tiny
tensors; unbiasedness and variance by Monte Carlo, where one call on a batch
of D identical images gives D independent draws (every group draws its own
uniforms), so each MC test costs a handful of calls.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import pytest
import torch

from vrsearch.components.samplers import GRIDS, SAMPLERS, sample_voxels

CELLS = {9: 3, 16: 4, 25: 5}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- naive reference
def ref_groups(labels, grid, per_class, *, classes=None, mask=None, per_image=True):
    """Loops over voxels.  Returns (members, quota): members[(b, c, cell)] = list of
    coordinates; quota by largest remainder, ties to the lower (image, cell)."""
    g = CELLS[grid]
    B, *spatial = labels.shape
    members = defaultdict(list)
    for b in range(B):
        for x in itertools.product(*[range(s) for s in spatial]):
            c = int(labels[(b, *x)])
            if (classes is not None and c not in classes) or (mask is not None and not bool(mask[(b, *x)])):
                continue
            cell = tuple(xi * g // s for xi, s in zip(x, spatial))
            members[(b, c, cell)].append(x)
    units = defaultdict(list)
    for key in sorted(members, key=lambda k: (k[1], k[0], k[2])):  # (b, cell) raster inside a unit
        units[key[:2] if per_image else key[1]].append(key)
    quota = {}
    for keys in units.values():
        N = sum(len(members[k]) for k in keys)
        for k in keys:
            quota[k] = per_class * len(members[k]) // N
        left = per_class - sum(quota[k] for k in keys)
        ranked = sorted(range(len(keys)), key=lambda i: (-(per_class * len(members[keys[i]]) % N), i))
        for i in ranked[:left]:
            quota[keys[i]] += 1
    return members, quota


def sample_groups(s, labels, grid):
    """Group (b, c, cell) of every sample, in output order (python loop over samples)."""
    g = CELLS[grid]
    spatial = labels.shape[1:]
    coords = s.coords(labels.shape).tolist()
    out = []
    for b, c, x in zip(s.batch.tolist(), s.cls.tolist(), coords):
        assert int(labels[(b, *x)]) == c
        out.append((b, c, tuple(xi * g // n for xi, n in zip(x, spatial))))
    return out, coords


def random_labels(shape, seed, n_classes=3):
    labels = torch.randint(0, n_classes, shape, generator=gen(seed))
    labels[0, : shape[1] // 2] = 1  # some spatial structure, not only noise
    return labels


SHAPES = [(2, 8, 8), (2, 7, 5), (2, 6, 6, 6)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("method", ["sg", "sag"])
@pytest.mark.parametrize("per_image", [True, False])
def test_group_quotas_match_naive_reference(shape, grid, method, per_image):
    labels = random_labels(shape, seed=grid + len(shape))
    mask = torch.rand(shape, generator=gen(1)) > 0.2
    for per_class, kw in [(7, {}), (11, {"mask": mask}), (5, {"classes": [0, 2]})]:
        members, quota = ref_groups(labels, grid, per_class, per_image=per_image, **kw)
        expected = {k: q for k, q in quota.items() if q > 0}
        for seed in range(3):
            s = sample_voxels(
                labels,
                per_class,
                method=method,
                grid=grid,
                generator=gen(seed),
                per_image=per_image,
                rounding="largest",
                **kw,
            )
            groups, coords = sample_groups(s, labels, grid)
            assert Counter(groups) == expected  # every draw: per-group counts == quotas
            # weights: (N_g/N_unit)/n_g, exactly (ρ aside for SAG partners)
            if method == "sg":
                for k, w in zip(groups, s.weight.tolist()):
                    unit = [u for u in members if (u[:2] == k[:2] if per_image else u[1] == k[1])]
                    N = sum(len(members[u]) for u in unit)
                    assert w == pytest.approx(len(members[k]) / N / quota[k], rel=1e-6)
            else:
                check_sag_pairs(s, groups, coords, members, quota, labels.shape[1:])


def check_sag_pairs(s, groups, coords, members, quota, spatial):
    """Naive SAG check: partner i of a group = reflection of primary i through the
    rounded centroid when that is a voxel of the group, else a replacement."""
    outside = reflected = 0
    i = 0
    while i < len(groups):
        k = groups[i]
        q = quota[k]
        run = coords[i : i + q]
        assert groups[i : i + q] == [k] * q  # a group's samples are contiguous
        pts = members[k]
        centre = [(2 * sum(p[a] for p in pts) + len(pts)) // (2 * len(pts)) for a in range(len(spatial))]
        h = (q + 1) // 2
        for j in range(q // 2):
            r = tuple(2 * c - x for c, x in zip(centre, run[j]))
            reflected += 1
            if all(0 <= ri < n for ri, n in zip(r, spatial)) and r in set(pts):
                assert tuple(run[h + j]) == r
            else:
                outside += 1
        i += q
    assert (s.n_reflected, s.n_outside) == (reflected, outside)


def test_tie_break_is_lower_cell_first():
    labels = torch.ones(1, 6, 6, dtype=torch.long)  # 9 cells of 2×2: 4/9 each, all ties
    s = sample_voxels(labels, 4, method="sg", grid=9, generator=gen(0), rounding="largest")
    cells = Counter(sample_groups(s, labels, 9)[0])
    assert cells == {(0, 1, (0, 0)): 1, (0, 1, (0, 1)): 1, (0, 1, (0, 2)): 1, (0, 1, (1, 0)): 1}


# ---------------------------------------------------------------- counts, classes, mask
@pytest.mark.parametrize("method", SAMPLERS)
@pytest.mark.parametrize("ndim", [2, 3])
def test_exact_counts_classes_and_mask(method, ndim):
    shape = (3,) + (10,) * ndim
    labels = torch.zeros(shape, dtype=torch.long)
    labels[0, 2:5] = 1
    labels[1, 1:3] = 2
    labels[1, 5:9] = 1
    labels[2, :] = 3  # image 2 holds only class 3
    labels[(0,) + (9,) * ndim] = 4  # a single voxel
    kw = dict(method=method, grid=16, generator=gen(0))
    s = sample_voxels(labels, 13, **kw)
    counts = Counter(zip(s.batch.tolist(), s.cls.tolist()))
    assert counts == {(0, 0): 13, (0, 1): 13, (0, 4): 13, (1, 0): 13, (1, 1): 13, (1, 2): 13, (2, 3): 13}
    assert s.index.dtype == torch.long and torch.equal(labels.reshape(-1)[s.index], s.cls)
    assert torch.equal(s.batch, s.index // labels[0].numel())
    # one-voxel class: every sample is that voxel (with replacement)
    assert set(s.index[s.cls == 4].tolist()) == {int(torch.nonzero(labels.reshape(-1) == 4))}

    s = sample_voxels(labels, 13, per_image=False, **kw)
    assert Counter(s.cls.tolist()) == {0: 13, 1: 13, 2: 13, 3: 13, 4: 13}

    s = sample_voxels(labels, 5, classes=[1, 3, 7], **kw)
    assert Counter(zip(s.batch.tolist(), s.cls.tolist())) == {(0, 1): 5, (1, 1): 5, (2, 3): 5}

    mask = torch.rand(shape, generator=gen(5)) < 0.3
    s = sample_voxels(labels, 9, mask=mask, **kw)
    assert bool(mask.reshape(-1)[s.index].all())
    present = {(b, int(c)) for b in range(3) for c in torch.unique(labels[b][mask[b]])}
    assert Counter(zip(s.batch.tolist(), s.cls.tolist())) == {k: 9 for k in present}
    empty = sample_voxels(labels, 9, mask=torch.zeros_like(mask), **kw)
    assert len(empty) == 0 and empty.weight.numel() == 0


def test_coords_and_bad_arguments():
    labels = torch.randint(0, 2, (2, 5, 6, 7), generator=gen(0))
    s = sample_voxels(labels, 4, method="sg", grid=9, generator=gen(0))
    c = s.coords(labels.shape)
    assert c.shape == (len(s), 3)
    assert torch.equal(labels[s.batch, c[:, 0], c[:, 1], c[:, 2]], s.cls)
    with pytest.raises(ValueError):
        sample_voxels(labels, 4, method="xx")
    with pytest.raises(ValueError):
        sample_voxels(labels, 4, grid=10)
    with pytest.raises(ValueError):
        sample_voxels(labels.float(), 4)
    with pytest.raises(ValueError):
        sample_voxels(labels[0, 0], 4)


@pytest.mark.parametrize("method", SAMPLERS)
@pytest.mark.parametrize("rounding", ["largest", "random"])
def test_determinism(method, rounding):
    labels = random_labels((2, 12, 12, 12), seed=3, n_classes=4)
    kw = dict(method=method, grid=25, rounding=rounding)
    a = sample_voxels(labels, 32, generator=gen(7), **kw)
    b = sample_voxels(labels, 32, generator=gen(7), **kw)
    c = sample_voxels(labels, 32, generator=gen(8), **kw)
    assert torch.equal(a.index, b.index) and torch.equal(a.weight, b.weight) and a.n_outside == b.n_outside
    assert not torch.equal(a.index, c.index)
    assert len(sample_voxels(labels, 32, **kw)) == len(a)  # default generator works


# ---------------------------------------------------------------- SAG on a hand-made L
def test_sag_l_shaped_group_outside_count_marginal_and_pair_weights():
    """L in cell (0,0) of a 9×9 image (grid 9): centroid (1.4, 0.6) -> (1, 1);
    S = {(0,0), (2,2)}, k = 3 of |G| = 5.  Partner marginal under the Ruling
    (module doc): 1/5 + 3/25 on S, 3/25 off S.  Pair weights (SG weight 1/4):
    reflected or replacement ∉ S -> (1/4, 1/4); replacement ∈ S -> (1/2, 0)."""
    L = [(0, 0), (1, 0), (2, 0), (2, 1), (2, 2)]
    D = 2000
    labels = torch.zeros(D, 9, 9, dtype=torch.long)
    for x in L:
        labels[(slice(None), *x)] = 1
    s = sample_voxels(labels, 4, method="sag", grid=9, generator=gen(0), classes=[1])
    xy = s.coords(labels.shape).view(D, 4, 2)
    assert set(map(tuple, xy.reshape(-1, 2).tolist())) <= set(L)
    prim, part = xy[:, :2], xy[:, 2:]
    in_s = lambda t: (t == 0).all(-1) | (t == 2).all(-1)  # noqa: E731  (0,0) or (2,2)
    ok = in_s(prim)
    assert torch.equal(part[ok], (2 * torch.tensor([1, 1]) - prim)[ok])
    assert s.n_reflected == 2 * D and s.n_outside == int((~ok).sum()) > 0
    freq = Counter(map(tuple, part.reshape(-1, 2).tolist()))
    n = 2 * D
    for x in L:
        p = (1 / 5 if x in [(0, 0), (2, 2)] else 0) + 3 / 25
        assert abs(freq[x] - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (x, freq[x], n * p)
    w = s.weight.view(D, 4).double()
    twin = ~ok & in_s(part)
    assert twin.any() and (~ok & ~in_s(part)).any()
    assert torch.allclose(w[:, :2], 0.25 * (1 + twin.double()))
    assert torch.allclose(w[:, 2:], 0.25 * (~twin).double())
    assert torch.allclose(w.sum(1), torch.ones(D, dtype=torch.float64))


# ---------------------------------------------------------------- Monte Carlo: bias and variance
def structured_case(ndim: int):
    """One image: classes of very different sizes and shapes, and a field f =
    smooth gradient + a step offset, so class means differ across cells."""
    n = 24 if ndim == 2 else 10
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float64)] * ndim, indexing="ij")
    x, y = axes[0], axes[1]
    labels = torch.zeros((n,) * ndim, dtype=torch.long)
    labels[((x - n * 0.35) ** 2 + (y - n * 0.4) ** 2) < (n * 0.28) ** 2] = 1  # disk / cylinder
    labels[(x >= n * 0.7) & (y < n * 0.3)] = 2  # corner block
    labels[(x >= n * 0.7) & (x < n * 0.8) & (y < n * 0.9)] = 2  # -> L-shape
    labels[(x - y).abs() < 1.0] = 3  # thin diagonal stripe
    f = torch.sin(x / 3.0) + 0.15 * y + 1.5 * (y > n / 2) + 0.5 * labels
    if ndim == 3:
        f = f + 0.1 * axes[2]
    return labels, f


def mc_estimates(labels, f, D, per_class, **kw):
    """D independent draws: one call on D copies of the image; returns [D, K]."""
    lab = labels.expand(D, *labels.shape).contiguous()
    s = sample_voxels(lab, per_class, **kw)
    K = int(labels.max()) + 1
    est = torch.zeros(D * K, dtype=torch.float64)
    est.index_add_(0, s.batch * K + s.cls, s.weight.double() * f.reshape(-1)[s.index % f.numel()])
    wsum = torch.zeros(D * K, dtype=torch.float64).index_add_(0, s.batch * K + s.cls, s.weight.double())
    return est.view(D, K), wsum.view(D, K)


def var_se(x: torch.Tensor) -> tuple[float, float]:
    """Sample variance and its standard error sqrt((m4 − σ⁴)/D) (kurtosis-aware)."""
    d = x - x.mean()
    v = float((d**2).mean())
    return float(x.var()), math.sqrt(max(float((d**4).mean()) - v * v, 0.0) / x.numel())


@pytest.mark.parametrize("ndim", [2, 3])
def test_monte_carlo_unbiased_and_variance(ndim):
    torch.manual_seed(0)
    labels, f = structured_case(ndim)
    K = int(labels.max()) + 1
    truth = torch.stack([f[labels == c].mean() for c in range(K)])
    D = 3000
    # largest remainder is exactly unbiased iff every non-empty group gets ≥ 1 draw;
    # the disk has 1-voxel slivers (N/N_g = 135 in 2D, 90 for background in 3D)
    per_class = 136 if ndim == 2 else 91
    var = {}
    for method in SAMPLERS:
        est, wsum = mc_estimates(labels, f, D, per_class, method=method, grid=9, generator=gen(11))
        # precondition: every non-empty group covered (weights sum to 1) -> exactly unbiased
        assert torch.allclose(wsum, torch.ones_like(wsum))
        mean, se = est.mean(0), est.std(0) / math.sqrt(D)
        # |bias| < 4 SE: a false alarm has probability ~6e-5 per class
        assert ((mean - truth).abs() < 4 * se + 1e-12).all(), (method, mean - truth, se)
        var[method] = [var_se(est[:, c]) for c in range(K)]
    # why SAG needs its pair weights: the Ruling's partners with plain SG weights are biased
    lab = labels.expand(D, *labels.shape).contiguous()
    s = sample_voxels(lab, per_class, method="sag", grid=9, generator=gen(11))
    w_sg = sample_voxels(lab, per_class, method="sg", grid=9, generator=gen(11)).weight.double()
    naive = torch.zeros(D * K, dtype=torch.float64)
    naive = naive.index_add_(0, s.batch * K + s.cls, w_sg * f.reshape(-1)[s.index % f.numel()]).view(D, K)
    z = (naive.mean(0) - truth) / (naive.std(0) / math.sqrt(D))
    assert s.n_outside > 0 and float(z.abs().max()) > 10
    for c in range(K):
        (v_ns, s_ns), (v_sg, s_sg), (v_sag, s_sag) = var["ns"][c], var["sg"][c], var["sag"][c]
        # ARCO Thm 3.2 (SG ≤ NS) and the SAG counterpart, within 4 SE of the difference
        assert v_sg <= v_ns + 4 * math.hypot(s_ns, s_sg), (c, v_sg, v_ns)
        assert v_sag <= v_ns + 4 * math.hypot(s_ns, s_sag), (c, v_sag, v_ns)
    # background and disk span several cells over which f varies: SG clearly lower
    for c in (0, 1):
        assert var["sg"][c][0] < 0.8 * var["ns"][c][0], (c, var["sg"][c][0], var["ns"][c][0])


def test_monte_carlo_per_batch_unbiased():
    """per_image=False: one unit per class over a batch of two different images."""
    l0, f0 = structured_case(2)
    l1, f1 = l0.flip(0).clone(), f0.flip(1) * 0.5
    labels, f = torch.stack([l0, l1]), torch.stack([f0, f1])
    K = int(labels.max()) + 1
    truth = torch.stack([f[labels == c].mean() for c in range(K)])
    g, draws = gen(3), 240  # a loop of calls: the draws share one unit per class
    for method in SAMPLERS:
        rows, vals = [], []
        for d in range(draws):
            s = sample_voxels(labels, 136, method=method, grid=16, per_image=False, generator=g)  # covers all groups
            rows.append(d * K + s.cls)
            vals.append(s.weight.double() * f.reshape(-1)[s.index])
        est = torch.zeros(draws * K, dtype=torch.float64).index_add_(0, torch.cat(rows), torch.cat(vals)).view(draws, K)
        mean, se = est.mean(0), est.std(0) / math.sqrt(draws)
        assert ((mean - truth).abs() < 4 * se + 1e-12).all(), (method, mean - truth, se)


def test_small_quota_largest_remainder_misses_groups_random_rounding_is_unbiased():
    """With 3 draws over many groups, largest remainder leaves groups at quota 0
    (never sampled: weights sum to the covered fraction < 1); systematic random
    rounding keeps E[n_m] = n·N_m/N and the 1/n weights exactly unbiased."""
    labels, f = structured_case(2)
    truth = f[labels == 0].mean()
    D = 3000
    _, wsum = mc_estimates(labels, f, 50, 3, method="sg", grid=25, generator=gen(0), rounding="largest")
    assert (wsum[:, 0] < 0.99).all()
    for method, rounding in itertools.product(SAMPLERS, ["random", "auto"]):
        est, wsum = mc_estimates(labels, f, D, 3, method=method, grid=25, generator=gen(1), rounding=rounding)
        se = float(est[:, 0].std()) / math.sqrt(D)
        assert abs(float(est[:, 0].mean()) - float(truth)) < 4 * se, (method, rounding)
        assert torch.allclose(wsum[:, 0], torch.ones(D, dtype=torch.float64))
    s = sample_voxels(labels.expand(D, 24, 24), 3, method="sg", grid=25, generator=gen(2), rounding="random")
    assert Counter(zip(s.batch.tolist(), s.cls.tolist())) == {(b, c): 3 for b in range(D) for c in range(4)}


def test_wide_label_values():
    """Label values over a range ≥ 2**16, negative ones included, are grouped and drawn exactly
    (the drawn voxels equal a stable sort's, rank for rank: tests/components/test_voxel_groups.py)."""
    labels = random_labels((2, 9, 7, 5), seed=4, n_classes=4)
    wide = torch.where(labels == 3, 100_000, labels) - 7  # range ≥ 2**16, negative values
    s = sample_voxels(wide, 6, method="sag", grid=9, generator=gen(0))
    expect = {(b, int(c)): 6 for b in range(2) for c in torch.unique(wide[b])}
    assert Counter(zip(s.batch.tolist(), s.cls.tolist())) == expect
    assert torch.equal(wide.reshape(-1)[s.index], s.cls)
    for method in SAMPLERS:  # nothing to draw from: an empty sample, as for a narrow label range
        none = sample_voxels(wide, 6, method=method, grid=9, generator=gen(0), mask=torch.zeros_like(wide).bool())
        assert none.index.numel() == 0, method
        assert sample_voxels(wide, 6, method=method, grid=9, generator=gen(0), classes=[]).index.numel() == 0


@pytest.mark.parametrize("method", ["sg", "sag"])
def test_auto_rounding_keeps_largest_remainder_only_where_it_covers_every_group(method):
    """``auto`` (the default): a unit whose largest-remainder quotas give every
    non-empty group a draw keeps them, every call, with weights (N_m/N)/n_m; any
    other unit gets systematic random quotas (E n_m = n·N_m/N, total n) and
    weights 1/n.  Here class 3 (the thin diagonal stripe) is covered by 7 draws
    at grid 25 and the other classes are not."""
    labels, _ = structured_case(2)
    n, D = 7, 4000
    members, quota = ref_groups(labels[None], 25, n)
    covered = {c for c in range(4) if all(quota[k] > 0 for k in members if k[1] == c)}
    assert covered == {3}
    s = sample_voxels(labels.expand(D, 24, 24), n, method=method, grid=25, generator=gen(4))
    groups = Counter((c, cell) for _, c, cell in sample_groups(s, labels.expand(D, 24, 24), 25)[0])
    for (_, c, cell), q in quota.items():
        N = sum(len(v) for k, v in members.items() if k[1] == c)
        if c in covered:  # exactly the largest-remainder quota in every one of the D draws
            assert groups[(c, cell)] == D * q
        else:  # E[n_m] = n·N_m/N; n_m ∈ {floor, floor + 1}, so Var ≤ 1/4 per draw
            expect = D * n * len(members[(0, c, cell)]) / N
            assert abs(groups[(c, cell)] - expect) <= 4 * math.sqrt(D / 4) + 1e-9, (c, cell)
    w = s.weight.double().view(D, -1)
    cls = s.cls.view(D, -1)[0]
    if method == "sg":
        assert torch.allclose(w[:, cls != 3], torch.full_like(w[:, cls != 3], 1 / n))
        stripe = [(cell, q) for (_, c, cell), q in quota.items() if c == 3]  # raster order = output order
        n3 = sum(len(members[(0, 3, cell)]) for cell, _ in stripe)
        want = [len(members[(0, 3, cell)]) / n3 / q for cell, q in stripe for _ in range(q)]
        assert torch.allclose(w[:, cls == 3], torch.tensor(want, dtype=torch.float64).expand(D, -1))
    unit_sums = torch.zeros(D, 4, dtype=torch.float64).index_add_(1, cls, w)
    assert torch.allclose(unit_sums, torch.ones_like(unit_sums))  # weights of every unit sum to 1
