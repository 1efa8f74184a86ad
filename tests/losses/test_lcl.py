"""LCL loss (Chaitanya et al. 2023, Eq. 3-4): naive reference, skips, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from vrsearch.losses.lcl import local_contrastive_loss, local_contrastive_terms


def naive_lcl(emb, labels, batch, index, cls, weight, K, tau, matching, classes, normalize_first=False):
    """Explicit Python loops over images, classes, anchors and voxels."""
    B, V = emb.shape[:2]
    flat_emb = emb.reshape(B, V, -1)
    flat_lab = labels.reshape(B, -1)
    N = flat_lab.shape[1]

    def mean(b, c):
        acc, n = torch.zeros(V, dtype=emb.dtype), 0
        for j in range(N):
            if int(flat_lab[b, j]) == c:
                v = flat_emb[b, :, j]
                acc = acc + (v / v.norm() if normalize_first else v)
                n += 1
        return acc / n if n else None

    def cos(a, b):
        return (a @ b) / (a.norm() * b.norm())

    def present_means(b):
        means = {k: mean(b, k) for k in classes}
        return {k: m for k, m in means.items() if m is not None}

    def anchor_loss(zi, c, own, other):
        """intra/partner: one ratio against ``own``; inter: one term per positive
        (own and other image), each over the pool of both images' means."""
        if other is None:
            pos = torch.exp(cos(zi, own[c]) / tau)
            neg = sum(torch.exp(cos(zi, own[k]) / tau) for k in own if k != c)
            return -torch.log(pos / (pos + neg))
        pool = sum(torch.exp(cos(zi, m) / tau) for m in [*own.values(), *other.values()])
        terms = [-torch.log(torch.exp(cos(zi, means[c]) / tau) / pool) for means in (own, other) if c in means]
        return sum(terms) / len(terms)

    image_losses = []
    for b in range(B):
        p = (b + 1) % B
        own = present_means(p if matching == "partner" else b)
        other = present_means(p) if matching == "inter" and p != b else None
        class_losses = []
        for c in classes:
            if c not in own:
                continue
            num, den = 0.0, 0.0
            for i in range(len(index)):
                if int(batch[i]) != b or int(cls[i]) != c:
                    continue
                zi = flat_emb[b, :, int(index[i]) - b * N]
                num = num + weight[i] * anchor_loss(zi, c, own, other)
                den = den + weight[i]
            if den:
                class_losses.append(num / den)
        if class_losses:
            image_losses.append(sum(class_losses) / len(class_losses))
    return sum(image_losses) / len(image_losses)


def make_case(seed=0, K=4):
    g = torch.Generator().manual_seed(seed)
    B, V, S = 2, 3, (5, 4, 3)
    emb = torch.randn(B, V, *S, generator=g, dtype=torch.float64)
    labels = torch.randint(0, K, (B, *S), generator=g)
    labels[1][labels[1] == 2] = 3  # class 2 absent from image 1
    labels[0][labels[0] == 1] = 0  # class 1 absent from image 0
    N = labels[0].numel()
    batch, index, cls = [], [], []
    for b in range(B):
        for c in range(K):
            where = (labels[b].reshape(-1) == c).nonzero()[:, 0]
            if len(where) == 0:
                continue
            pick = where[torch.randint(0, len(where), (3,), generator=g)]
            batch += [b] * 3
            index += (pick + b * N).tolist()
            cls += [c] * 3
    weight = torch.rand(len(index), generator=g, dtype=torch.float64) + 0.5
    return emb, labels, torch.tensor(batch), torch.tensor(index), torch.tensor(cls), weight


@pytest.mark.parametrize("matching", ["intra", "inter", "partner"])
@pytest.mark.parametrize("classes", [None, [0, 1, 2, 3]])
@pytest.mark.parametrize("normalize_first", [False, True])
def test_matches_naive_reference(matching, classes, normalize_first):
    K, tau = 4, 0.1
    emb, labels, batch, index, cls, weight = make_case(K=K)
    got = local_contrastive_loss(emb, labels, (batch, index, cls, weight), K, tau, matching, classes, normalize_first)
    want = naive_lcl(
        emb,
        labels,
        batch,
        index,
        cls,
        weight,
        K,
        tau,
        matching,
        classes if classes is not None else [1, 2, 3],
        normalize_first,
    )
    assert math.isfinite(float(got))
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_uniform_weights_equal_plain_mean_and_float32():
    emb, labels, batch, index, cls, _ = make_case(seed=4, K=3)
    labels = labels.clamp_max(2)
    ones = torch.ones(len(index), dtype=torch.float64)
    want = naive_lcl(emb, labels, batch, index, cls, ones, 3, 0.5, "inter", [1, 2])
    got = local_contrastive_loss(emb.float(), labels, (batch, index, cls), 3, tau=0.5, matching="inter")
    assert float(got) == pytest.approx(float(want), rel=1e-5)


def test_absent_classes_are_skipped_and_counted():
    emb, labels, batch, index, cls, weight = make_case(K=4)
    out = local_contrastive_terms(emb, labels, (batch, index, cls, weight), 4, 0.1, "intra")
    # image 0 has classes {2, 3} in foreground, image 1 has {1, 3}
    assert float(out.n_classes) == pytest.approx(2.0)
    assert out.n_images == 2
    partner = local_contrastive_terms(emb, labels, (batch, index, cls, weight), 4, 0.1, "partner")
    # partner: each image's anchors meet the other image's means -> only class 3 is in both
    assert float(partner.n_classes) == pytest.approx(1.0)
    # inter pools both images' means: every class with anchors has its own mean, so all are used
    inter = local_contrastive_terms(emb, labels, (batch, index, cls, weight), 4, 0.1, "inter")
    assert float(inter.n_classes) == pytest.approx(2.0) and inter.n_anchors == out.n_anchors


def test_inter_pools_both_images_and_single_image_batches_reduce_to_intra():
    """The pooled loss differs from both one-image readings on a generic case, and
    with B = 1 (x' = x) every matching is intra (no duplicated means in the pool)."""
    emb, labels, batch, index, cls, weight = make_case(seed=6, K=4)
    value = {
        m: float(local_contrastive_loss(emb, labels, (batch, index, cls, weight), 4, 0.1, m))
        for m in ("intra", "inter", "partner")
    }
    assert len({round(v, 9) for v in value.values()}) == 3
    one = batch == 0
    single = (batch[one], index[one], cls[one], weight[one])
    alone = [
        float(local_contrastive_loss(emb[:1], labels[:1], single, 4, 0.1, m)) for m in ("intra", "inter", "partner")
    ]
    assert alone[0] == pytest.approx(alone[1], rel=1e-12) and alone[0] == pytest.approx(alone[2], rel=1e-12)


def test_single_class_gives_zero_and_no_anchor_gives_zero_with_graph():
    emb = torch.randn(1, 4, 3, 3, 1, requires_grad=True)
    labels = torch.ones(1, 3, 3, 1, dtype=torch.long)
    sample = (torch.zeros(2, dtype=torch.long), torch.tensor([0, 4]), torch.ones(2, dtype=torch.long))
    assert float(local_contrastive_loss(emb, labels, sample, 3).detach()) == pytest.approx(0.0, abs=1e-7)
    empty = (torch.zeros(0, dtype=torch.long),) * 3
    loss = local_contrastive_loss(emb, labels, empty, 3)
    loss.backward()
    assert float(loss.detach()) == 0.0 and emb.grad is not None


def test_shape_and_argument_checks():
    emb = torch.randn(2, 3, 4, 4, 1)
    with pytest.raises(ValueError, match="labels"):
        local_contrastive_loss(emb, torch.zeros(2, 4, 4, dtype=torch.long), ((),) * 3, 2)
    empty = (torch.zeros(0, dtype=torch.long),) * 3
    with pytest.raises(ValueError, match="matching"):
        local_contrastive_loss(emb, torch.zeros(2, 4, 4, 1, dtype=torch.long), empty, 2, matching="cross")


@pytest.mark.parametrize("matching", ["intra", "inter", "partner"])
def test_gradient_reaches_anchors_and_mean_sources(matching):
    K = 3
    g = torch.Generator().manual_seed(1)
    B, V, S = 2, 4, (6, 5, 1)
    labels = torch.randint(0, K, (B, *S), generator=g)
    emb = torch.randn(B, V, *S, generator=g, requires_grad=True)
    N = labels[0].numel()
    # one anchor of class 1 and one of class 2 in each image
    batch, index, cls = [], [], []
    for b in range(B):
        for c in (1, 2):
            j = int((labels[b].reshape(-1) == c).nonzero()[0, 0])
            batch.append(b), index.append(b * N + j), cls.append(c)
    sample = (torch.tensor(batch), torch.tensor(index), torch.tensor(cls))
    local_contrastive_loss(emb, labels, sample, K, 0.1, matching).backward()
    grad = emb.grad.movedim(1, -1).reshape(-1, V).norm(dim=1)
    anchors = torch.tensor(index)
    assert (grad[anchors] > 0).all()
    # voxels that are never anchors but feed a foreground class mean get gradient too
    flat = labels.reshape(-1)
    mean_only = torch.ones_like(flat, dtype=torch.bool)
    mean_only[anchors] = False
    fg = mean_only & (flat > 0)
    assert fg.any() and (grad[fg] > 0).all()
    # background is not a class of the loss by default: no gradient there
    assert torch.all(grad[flat == 0] == 0)


def test_scatter_and_matmul_class_means_agree():
    from vrsearch.losses.lcl import class_means

    emb, labels, *_ = make_case(seed=2)
    (m1, c1), (m2, c2) = class_means(emb, labels, 5, matmul=False), class_means(emb, labels, 5, matmul=True)
    torch.testing.assert_close(m1, m2)
    assert torch.equal(c1, c2) and float(c1[:, 4].sum()) == 0.0


@pytest.mark.parametrize("matching", ["intra", "inter", "partner"])
def test_gradient_equals_the_naive_references(matching):
    """Autograd through the vectorised loss equals autograd through the double-loop
    reference: the same function of every embedding, anchors and mean sources alike."""
    emb, labels, batch, index, cls, weight = make_case(seed=8, K=4)
    emb = emb.requires_grad_()
    local_contrastive_loss(emb, labels, (batch, index, cls, weight), 4, 0.2, matching).backward()
    got = emb.grad.clone()
    emb.grad = None
    naive_lcl(emb, labels, batch, index, cls, weight, 4, 0.2, matching, [1, 2, 3]).backward()
    assert got.abs().sum() > 0
    torch.testing.assert_close(got, emb.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("matching", ["intra", "inter", "partner"])
def test_the_projected_path_equals_the_dense_one(matching, dtype):
    """``project=(W, b)`` with ``u`` gives the loss and the gradients (in u, W and b) of the
    dense path on ``z = W u + b`` formed at every voxel: to rounding in float64, ≤ 1e-5
    relative in float32; an absent class still has no mean."""
    u, labels, batch, index, cls, weight = make_case(seed=11, K=4)
    g = torch.Generator().manual_seed(12)
    u = u.to(dtype).requires_grad_()
    W = torch.randn(5, u.shape[1], generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    bias = torch.randn(5, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
    sample = (batch, index, cls, weight.to(dtype))
    z = torch.einsum("ov,bv...->bo...", W, u) + bias.view(1, -1, 1, 1, 1)
    dense = local_contrastive_loss(z, labels, sample, 4, 0.2, matching)
    dense_grads = torch.autograd.grad(dense, (u, W, bias))
    projected = local_contrastive_loss(u, labels, sample, 4, 0.2, matching, project=(W, bias))
    projected_grads = torch.autograd.grad(projected, (u, W, bias))
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(projected, dense, **tol)
    for got, want in zip(projected_grads, dense_grads):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, **tol)


def test_projection_is_refused_with_normalize_first():
    from vrsearch.losses.lcl import class_means

    u, labels, *_ = make_case(seed=2)
    with pytest.raises(ValueError, match="normalize_first"):
        class_means(u, labels, 4, normalize_first=True, project=(torch.eye(3, dtype=u.dtype), torch.zeros(3)))


@pytest.mark.parametrize("matmul", [False, True])
def test_class_means_count_exactly_under_bf16_autocast(matmul):
    """Under bf16 autocast the counts and sums stay float32: a class of 3000 voxels counts
    3000 (a bf16 count stops at 256 on CUDA and rounds on CPU), and the projected means,
    where the count scales the bias, match a float64 reference."""
    from vrsearch.losses.lcl import class_means

    g = torch.Generator().manual_seed(3)
    labels = torch.zeros(1, 60, 50, 1, dtype=torch.long)
    labels[0, :30] = 1  # 1500 voxels of class 1, 1500 of class 0
    labels = torch.cat([labels, torch.ones_like(labels)])  # image 1: 3000 voxels of class 1
    u = torch.randn(2, 4, 60, 50, 1, generator=g).to(torch.bfloat16)
    W, b = torch.randn(3, 4, generator=g), torch.randn(3, generator=g) * 5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        means, counts = class_means(u, labels, 2, matmul=matmul, project=(W, b))
    assert counts.tolist() == [[1500.0, 1500.0], [0.0, 3000.0]]
    want, _ = class_means(u.double(), labels, 2, matmul=matmul, project=(W.double(), b.double()))
    torch.testing.assert_close(means.double(), want, rtol=1e-5, atol=1e-6)


def test_a_step_with_no_class_used_still_reaches_the_projection():
    """No anchor (nothing contributes): the loss is a zero on the graph of u, W and b, so
    each gets a zero gradient (as every parameter of the dense head did), not none."""
    u, labels, *_ = make_case(seed=5)
    u = u.requires_grad_()
    W, b = (
        torch.randn(5, u.shape[1], dtype=u.dtype, requires_grad=True),
        torch.zeros(5, dtype=u.dtype, requires_grad=True),
    )
    empty = torch.zeros(0, dtype=torch.long)
    out = local_contrastive_terms(u, labels, (empty, empty, empty), 4, 0.2, "intra", project=(W, b))
    assert out.n_images == 0 and float(out.loss.detach()) == 0.0
    grads = torch.autograd.grad(out.loss, (u, W, b))
    assert all(g is not None and torch.all(g == 0) for g in grads)
