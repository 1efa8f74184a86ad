"""MONA / ARCO losses: naive loop references, edge cases, gradient routing."""

from __future__ import annotations

import math

import pytest
import torch

from vrsearch.losses.mona import (
    anatomical_contrastive,
    equivariance_kl,
    knn_loss,
    loss_spread,
    sample_negative_indices,
)
from vrsearch.losses.mona_instance import relational_kl

REL = 1e-5


def val(t) -> float:
    """A Python float of a (possibly graph-carrying) scalar tensor."""
    return float(torch.as_tensor(t).detach())


def cos(a, b):
    return val(a @ b) / (val(a.norm()) * val(b.norm()))


def rnd(*shape, seed=0, grad=False):
    t = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return t.requires_grad_(grad)


# ----------------------------------------------------------------- relational_kl
def naive_relational_kl(u, v, w, tau_s, tau_t):
    total = 0.0
    for i in range(u.shape[0]):
        ls = [cos(u[i], w[j]) / tau_s for j in range(w.shape[0])]
        lt = [cos(v[i], w[j]) / tau_t for j in range(w.shape[0])]
        zs = math.log(sum(math.exp(x - max(ls)) for x in ls)) + max(ls)
        zt = math.log(sum(math.exp(x - max(lt)) for x in lt)) + max(lt)
        total += sum(math.exp(lt[j] - zt) * ((lt[j] - zt) - (ls[j] - zs)) for j in range(w.shape[0]))
    return total / u.shape[0]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_relational_kl_matches_reference(dtype):
    u, v, w = rnd(5, 7, seed=1), rnd(5, 7, seed=2), rnd(9, 7, seed=3)
    want = naive_relational_kl(u, v, w, 0.1, 0.01)
    got = relational_kl(u.to(dtype), v.to(dtype), w.to(dtype), tau_s=0.1, tau_t=0.01)
    assert math.isfinite(val(got)) and val(got) > 0
    assert val(got) == pytest.approx(want, rel=REL if dtype == torch.float64 else 1e-4)
    # identical student/teacher temperatures and inputs -> KL = 0
    assert val(relational_kl(u, u, w, 0.2, 0.2)) == pytest.approx(0.0, abs=1e-12)


def test_relational_kl_gradients_and_empty_bank():
    u, v, w = rnd(4, 6, seed=4, grad=True), rnd(4, 6, seed=5, grad=True), rnd(8, 6, seed=6, grad=True)
    relational_kl(u, v, w).backward()
    assert u.grad is not None and u.grad.abs().sum() > 0
    assert v.grad is None and w.grad is None
    empty = relational_kl(u, v, torch.zeros(0, 6, dtype=torch.float64))
    assert val(empty.detach()) == 0.0 and empty.requires_grad
    with pytest.raises(ValueError):
        relational_kl(u, v[:3], w)


# ------------------------------------------------------ anatomical_contrastive
def contrast_case(seed=0, Q=12, C=4, S=5, D=6):
    g = torch.Generator().manual_seed(seed)
    queries = torch.randn(Q, D, generator=g, dtype=torch.float64)
    query_cls = torch.randint(0, C, (Q,), generator=g)
    query_cls[:4] = torch.tensor([0, 1, 2, 3])  # every class has queries
    positives = torch.randn(C, D, generator=g, dtype=torch.float64)
    positive_valid = torch.tensor([True, True, False, True])[:C]  # class 2: no valid positive
    negatives = torch.randn(C, S, D, generator=g, dtype=torch.float64)
    negative_count = torch.tensor([S, 2, 0, 3])[:C]  # class 2: empty bank
    return queries, query_cls, positives, positive_valid, negatives, negative_count


def naive_contrast(queries, query_cls, positives, positive_valid, negatives, negative_count, tau, draws=None):
    """draws: None (whole bank) or per-query list of (k, s) bank entries."""
    losses = []
    for i in range(queries.shape[0]):
        c = int(query_cls[i])
        if not bool(positive_valid[c]):
            continue
        pos = math.exp(cos(queries[i], positives[c]) / tau)
        if draws is None:
            keys = [(k, s) for k in range(negatives.shape[0]) if k != c for s in range(int(negative_count[k]))]
        else:
            keys = draws[i]
        neg = sum(math.exp(cos(queries[i], negatives[k, s]) / tau) for k, s in keys)
        losses.append(-math.log(pos / (pos + neg)))
    return sum(losses) / len(losses)


@pytest.mark.parametrize("tau", [0.5, 0.07])
def test_contrast_full_bank_matches_reference(tau):
    case = contrast_case()
    got = anatomical_contrastive(*case, tau=tau)
    assert val(got) == pytest.approx(naive_contrast(*case, tau), rel=REL)
    got32 = anatomical_contrastive(*(t.float() if t.is_floating_point() else t for t in case), tau=tau)
    assert val(got32) == pytest.approx(naive_contrast(*case, tau), rel=1e-5)


def test_contrast_sampled_matches_reference_on_drawn_indices():
    case = contrast_case(seed=3)
    queries, query_cls, _, _, negatives, negative_count = case
    got = anatomical_contrastive(*case, tau=0.5, num_negatives=7, generator=torch.Generator().manual_seed(11))
    k, s, has_pool = sample_negative_indices(query_cls, negative_count, 7, torch.Generator().manual_seed(11))
    assert k.shape == s.shape == (queries.shape[0], 7) and bool(has_pool.all())
    draws = []
    for i in range(queries.shape[0]):
        c = int(query_cls[i])
        pairs = list(zip(k[i].tolist(), s[i].tolist()))
        for kk, ss in pairs:  # every draw is a stored entry of another class
            assert kk != c and 0 <= ss < int(negative_count[kk])
        draws.append(pairs)
    assert val(got) == pytest.approx(naive_contrast(*case, 0.5, draws=draws), rel=REL)
    again = anatomical_contrastive(*case, tau=0.5, num_negatives=7, generator=torch.Generator().manual_seed(11))
    assert val(again) == val(got)


@pytest.mark.parametrize("counts", [[3, 1, 0, 4], [0, 0, 5, 2], [6, 6, 6, 6], [0, 0, 0, 0], [0, 4, 0, 0]], ids=str)
@pytest.mark.parametrize("slots", [None, 6, 9], ids=["exact", "capacity", "larger"])
def test_negative_draw_r_is_the_r_th_entry_of_the_class_major_pool(counts, slots):
    """Draw by draw, ``(k, s)`` is entry ``r`` of the listed pool (other classes in order,
    their stored slots in order), ``r = raw mod P_c`` from the same generator stream,
    whether the lookup table is sized by the stored entries or by the bank's capacity."""
    counts_t, n = torch.tensor(counts), 9
    cls = torch.tensor([0, 1, 2, 3, 3, 0])
    k, s, has_pool = sample_negative_indices(cls, counts_t, n, torch.Generator().manual_seed(5), slots=slots)
    raw = torch.randint(0, 2**62, (cls.numel(), n), generator=torch.Generator().manual_seed(5))
    for row, c in enumerate(cls.tolist()):
        pool = [(kk, ss) for kk in range(4) if kk != c for ss in range(counts[kk])]
        assert bool(has_pool[row]) == bool(pool)
        want = [pool[int(x) % len(pool)] for x in raw[row]] if pool else [(0, 0)] * n
        assert list(zip(k[row].tolist(), s[row].tolist())) == want


def test_negative_sampling_is_uniform_over_the_pool():
    counts = torch.tensor([3, 1, 0, 4])
    cls = torch.tensor([0, 3, 2])
    n = 40000
    k, s, has_pool = sample_negative_indices(cls, counts, n, torch.Generator().manual_seed(0))
    assert bool(has_pool.all())
    for row, c in enumerate(cls.tolist()):
        pool = [(kk, ss) for kk in range(4) if kk != c for ss in range(int(counts[kk]))]
        flat = (k[row] * 10 + s[row]).tolist()
        freq = {p: flat.count(p[0] * 10 + p[1]) / n for p in pool}
        assert sum(freq.values()) == pytest.approx(1.0)  # nothing outside the pool
        for f in freq.values():  # 1/P each, ±5 binomial standard deviations
            sd = math.sqrt((1 / len(pool)) * (1 - 1 / len(pool)) / n)
            assert abs(f - 1 / len(pool)) < 5 * sd


def naive_weighted_contrast(
    queries,
    query_cls,
    positives,
    positive_valid,
    negatives,
    negative_count,
    tau,
    query_weight,
    negative_weight,
    draws=None,
):
    """Loops: each negative e of the pool of a class-c query enters as ω_e·e^{s}, with
    ω_e = w_e·P_c/W_c (P_c entries, W_c their total weight); the loss is the
    query-weighted mean Σ w_q ℓ_q / Σ w_q over counted queries."""
    C = negatives.shape[0]
    num = den = 0.0
    for i in range(queries.shape[0]):
        c = int(query_cls[i])
        if not bool(positive_valid[c]):
            continue
        pool = [(k, s) for k in range(C) if k != c for s in range(int(negative_count[k]))]
        scale = len(pool) / sum(float(negative_weight[k, s]) for k, s in pool) if pool else 0.0
        keys = pool if draws is None else draws[i]
        pos = math.exp(cos(queries[i], positives[c]) / tau)
        neg = sum(
            float(negative_weight[k, s]) * scale * math.exp(cos(queries[i], negatives[k, s]) / tau) for k, s in keys
        )
        num += float(query_weight[i]) * -math.log(pos / (pos + neg))
        den += float(query_weight[i])
    return num / den


@pytest.mark.parametrize("num_negatives", [None, 9])
def test_weighted_contrast_matches_reference(num_negatives):
    case = contrast_case(seed=13)
    queries, query_cls, _, _, _, negative_count = case
    g = torch.Generator().manual_seed(21)
    qw = torch.rand(queries.shape[0], generator=g, dtype=torch.float64) + 0.2
    nw = torch.rand(4, 5, generator=g, dtype=torch.float64) * 2
    nw[0, 1] = 0.0  # a stored entry of weight 0 never counts
    got = anatomical_contrastive(
        *case,
        tau=0.5,
        num_negatives=num_negatives,
        generator=torch.Generator().manual_seed(4),
        query_weight=qw,
        negative_weight=nw,
    )
    draws = None
    if num_negatives is not None:
        k, s, _ = sample_negative_indices(query_cls, negative_count, num_negatives, torch.Generator().manual_seed(4))
        draws = [list(zip(k[i].tolist(), s[i].tolist())) for i in range(queries.shape[0])]
    want = naive_weighted_contrast(*case, 0.5, qw, nw, draws)
    assert val(got) == pytest.approx(want, rel=1e-9)
    ones = anatomical_contrastive(*case, tau=0.5, query_weight=torch.ones_like(qw), negative_weight=torch.ones(4, 5))
    assert val(ones) == pytest.approx(naive_contrast(*case, 0.5), rel=1e-9)  # unit weights: the plain loss


def test_contrast_empty_pool_and_nothing_counted():
    q = rnd(3, 4, seed=7, grad=True)
    pos = rnd(2, 4, seed=8, grad=True)
    negs = rnd(2, 3, 4, seed=9)
    cls = torch.tensor([0, 0, 1])
    # no class-1 entries in the bank: class-0 queries have no negative (−log 1 = 0) but count
    loss = anatomical_contrastive(q, cls, pos, torch.tensor([True, True]), negs, torch.tensor([3, 0]))
    want = naive_contrast(q.detach(), cls, pos.detach(), torch.tensor([True, True]), negs, torch.tensor([3, 0]), 0.5)
    assert val(loss) == pytest.approx(want, rel=REL)
    sampled = anatomical_contrastive(
        q,
        cls,
        pos,
        torch.tensor([True, True]),
        negs,
        torch.tensor([3, 0]),
        num_negatives=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert math.isfinite(val(sampled))
    _, _, has_pool = sample_negative_indices(cls, torch.tensor([3, 0]), 3)
    assert has_pool.tolist() == [False, False, True]
    none = anatomical_contrastive(q, cls, pos, torch.tensor([False, False]), negs, torch.tensor([3, 3]))
    none.backward()
    assert val(none.detach()) == 0.0 and q.grad is not None and val(q.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("num_negatives", [None, 6])
def test_contrast_gradients(num_negatives):
    queries, query_cls, positives, valid, negatives, count = contrast_case(seed=5)
    queries.requires_grad_(), positives.requires_grad_(), negatives.requires_grad_()
    gen = torch.Generator().manual_seed(1)
    anatomical_contrastive(
        queries, query_cls, positives, valid, negatives, count, num_negatives=num_negatives, generator=gen
    ).backward()
    counted = valid[query_cls]
    assert val(queries.grad[counted].abs().sum(1).min()) > 0
    assert val(queries.grad[~counted].abs().sum()) == 0.0
    assert val(positives.grad[valid].abs().sum(1).min()) > 0
    assert negatives.grad is None
    q2 = queries.detach().clone().requires_grad_()
    anatomical_contrastive(q2, query_cls, positives.detach(), valid, negatives, count).backward()
    assert q2.grad is not None


def test_contrast_shape_checks():
    queries, query_cls, positives, valid, negatives, count = contrast_case()
    with pytest.raises(ValueError, match="query_cls"):
        anatomical_contrastive(queries, query_cls[:-1], positives, valid, negatives, count)
    with pytest.raises(ValueError, match="negatives"):
        anatomical_contrastive(queries, query_cls, positives, valid, negatives[:, :, :-1], count)
    with pytest.raises(ValueError, match="num_negatives"):
        anatomical_contrastive(queries, query_cls, positives, valid, negatives, count, num_negatives=0)


# -------------------------------------------------------------- equivariance_kl
def naive_eqv(a, b, mask=None):
    B, C = a.shape[:2]
    fa, fb = a.reshape(B, C, -1), b.reshape(B, C, -1)
    num = den = 0.0
    for i in range(B):
        for v in range(fa.shape[2]):
            p = torch.softmax(fa[i, :, v], 0).tolist()
            q = torch.softmax(fb[i, :, v], 0).tolist()
            kl_pq = sum(p[c] * math.log(p[c] / q[c]) for c in range(C))
            kl_qp = sum(q[c] * math.log(q[c] / p[c]) for c in range(C))
            w = 1.0 if mask is None else val(mask.reshape(B, -1)[i, v])
            num += w * 0.5 * (kl_pq + kl_qp)
            den += w
    return num / den


def test_equivariance_matches_reference_and_gradients():
    a, b = rnd(2, 3, 4, 5, seed=10, grad=True), rnd(2, 3, 4, 5, seed=11, grad=True)
    got = equivariance_kl(a, b)
    assert val(got) == pytest.approx(naive_eqv(a.detach(), b.detach()), rel=REL)
    assert val(equivariance_kl(b, a)) == pytest.approx(val(got), rel=1e-12)  # symmetric
    got.backward()
    assert val(a.grad.abs().sum()) > 0 and val(b.grad.abs().sum()) > 0
    mask = torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(0)) > 0.4
    masked = equivariance_kl(a, b, mask)
    assert val(masked) == pytest.approx(naive_eqv(a.detach(), b.detach(), mask), rel=REL)
    assert val(equivariance_kl(a, a.detach().clone())) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        equivariance_kl(a, b[:, :2])


# --------------------------------------------------------------------- knn_loss
def naive_knn(z, bank, k):
    kk = min(k, bank.shape[0])
    total = 0.0
    for i in range(z.shape[0]):
        zi = z[i] / z[i].norm()
        sims = sorted(((cos(z[i], bank[j]), j) for j in range(bank.shape[0])), reverse=True)[:kk]
        total += sum(val(((zi - bank[j] / bank[j].norm()) ** 2).sum()) for _, j in sims) / kk
    return total / z.shape[0]


@pytest.mark.parametrize("k", [1, 3, 20])  # 20 > M
def test_knn_matches_reference(k):
    z, bank = rnd(6, 5, seed=12), rnd(9, 5, seed=13)
    assert val(knn_loss(z, bank, k)) == pytest.approx(naive_knn(z, bank, k), rel=REL)
    assert val(knn_loss(z.float(), bank.float(), k)) == pytest.approx(naive_knn(z, bank, k), rel=1e-5)


def test_knn_gradients_empty_bank_and_checks():
    z, bank = rnd(4, 5, seed=14, grad=True), rnd(7, 5, seed=15, grad=True)
    knn_loss(z, bank, 3).backward()
    assert val(z.grad.abs().sum()) > 0 and bank.grad is None
    empty = knn_loss(z, torch.zeros(0, 5, dtype=torch.float64))
    assert val(empty.detach()) == 0.0 and empty.requires_grad
    # z in the bank: its own entry is the nearest neighbour at distance 0
    assert val(knn_loss(z.detach()[:1], z.detach()[:1], 5)) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        knn_loss(z, bank, 0)


# ------------------------------------------------------------------ loss_spread
def test_loss_spread_value_detached_and_unbiased():
    a = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(1.5, requires_grad=True)
    s = loss_spread(a, b)
    assert val(s) == pytest.approx(1.125) and not s.requires_grad
    x = torch.randn(2, 200000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3.0
    assert val(loss_spread(x[0], x[1]).mean()) == pytest.approx(9.0, rel=0.02)
    with pytest.raises(ValueError):
        loss_spread(torch.zeros(2), torch.zeros(3))
