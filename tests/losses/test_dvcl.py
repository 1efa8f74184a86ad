"""DVCL losses: naive loop references written from the paper (Eq. 2-17, App. J, Table 8),
the bound of Eq. 16 and its reversal for K < K', and gradient routing."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vrsearch.losses.dvcl import (
    dvcl_terms,
    ecps_loss,
    ecps_weights,
    esm,
    hqc_loss,
    neighbours,
    select_queries,
)

C = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rnd(*shape, seed=0, grad=False, dtype=torch.float64):
    return torch.randn(*shape, generator=gen(seed), dtype=dtype).requires_grad_(grad)


def softmax_rows(n: int, c: int = C, seed: int = 0, scale: float = 2.0) -> torch.Tensor:
    return torch.softmax(scale * rnd(n, c, seed=seed), 1)


def f(t) -> float:
    return float(torch.as_tensor(t).detach())


def dot(a, b) -> float:
    return sum(f(a[i]) * f(b[i]) for i in range(a.shape[0]))


def cos(a, b) -> float:
    return dot(a, b) / (math.sqrt(dot(a, a)) * math.sqrt(dot(b, b)))


def lse(xs) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


# ------------------------------------------------------------------------------- ESM
def naive_esm(probs: torch.Tensor, alpha: float):
    """Eq. 1-3 with entropy in bits; mean and population std over all voxels of the batch."""
    U, Cc, X, Y, Z = probs.shape
    ent = torch.zeros(U, X, Y, Z, dtype=torch.float64)
    values = []
    for u in range(U):
        for x in range(X):
            for y in range(Y):
                for z in range(Z):
                    e = 0.0
                    for c in range(Cc):
                        p = f(probs[u, c, x, y, z])
                        if p > 0:
                            e -= p * math.log2(p)
                    ent[u, x, y, z] = e
                    values.append(e)
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    tau = mean + alpha * std
    return ent, ent < tau, tau


@pytest.mark.parametrize("alpha", [0.5, 0.0, -0.7, 1.5])
def test_esm_matches_naive_reference(alpha):
    probs = torch.softmax(2 * rnd(2, C, 3, 4, 2, seed=1), 1)
    probs[0, :, 0, 0, 0] = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)  # 0·log 0 = 0
    e, rel, tau = esm(probs, alpha)
    ne, nrel, ntau = naive_esm(probs, alpha)
    assert e.shape == rel.shape == (2, 3, 4, 2) and rel.dtype == torch.bool
    assert torch.allclose(e.double(), ne, rtol=1e-5, atol=1e-6)
    assert f(e[0, 0, 0, 0]) == pytest.approx(0.0, abs=1e-7)
    assert f(tau) == pytest.approx(ntau, rel=1e-5, abs=1e-6)
    assert torch.equal(rel, nrel)
    assert 0 < int(rel.sum()) < rel.numel()  # both sets non-empty on random inputs
    assert float(e.max()) <= math.log2(C) + 1e-5  # bits: at most log2 C


def test_esm_alpha_moves_the_threshold_and_carries_no_gradient():
    logits = rnd(2, C, 4, 4, 2, seed=2, grad=True)
    probs = torch.softmax(logits, 1)
    fracs = []
    for alpha in (-1.0, 0.0, 1.0):
        e, rel, tau = esm(probs, alpha)
        assert not e.requires_grad and not tau.requires_grad
        fracs.append(float(rel.double().mean()))
    assert fracs[0] < fracs[1] < fracs[2]  # higher α → more reliable voxels


# ------------------------------------------------------------------------------- ECPS
def naive_weights(e, rel, num_classes, w_max):
    out = torch.zeros_like(e, dtype=torch.float64)
    flat_e, flat_r, flat_o = e.reshape(-1), rel.reshape(-1), out.view(-1)
    for i in range(flat_e.numel()):
        flat_o[i] = w_max if bool(flat_r[i]) else w_max * math.exp(-f(flat_e[i]) / math.log2(num_classes))
    return out


def ce(logit_vec, target: int) -> float:
    xs = [f(v) for v in logit_vec]
    return lse(xs) - xs[target]


def argmax(vec) -> int:
    xs = [f(v) for v in vec]
    return max(range(len(xs)), key=lambda i: xs[i])


def naive_ecps(la, lb, wa, wb) -> float:
    U, Cc, X, Y, Z = la.shape
    total, n = 0.0, 0
    for u in range(U):
        for x in range(X):
            for y in range(Y):
                for z in range(Z):
                    ya, yb = argmax(la[u, :, x, y, z]), argmax(lb[u, :, x, y, z])
                    total += f(wb[u, x, y, z]) * ce(la[u, :, x, y, z], yb)
                    total += f(wa[u, x, y, z]) * ce(lb[u, :, x, y, z], ya)
                    n += 1
    return total / n


@pytest.mark.parametrize("w_max", [1.0, 2.5])
def test_ecps_weights_match_eq4(w_max):
    probs = torch.softmax(2 * rnd(2, 4, 3, 3, 2, seed=3), 1)
    e, rel, _ = esm(probs, 0.5)
    w = ecps_weights(e, rel, 4, w_max)
    assert torch.allclose(w.double(), naive_weights(e, rel, 4, w_max), rtol=1e-6)
    assert torch.all(w[rel] == w_max)
    unrel = w[~rel]
    assert unrel.numel() > 0 and torch.all(unrel < w_max) and torch.all(unrel >= w_max / math.e - 1e-6)
    with pytest.raises(ValueError):
        ecps_weights(e, rel, 1)


@pytest.mark.parametrize("num_classes", [2, 4, 14])
def test_entropy_is_in_bits_so_eq4_uses_the_normalised_entropy(num_classes):
    """Ruling (METHODS.md): ``e`` in bits, so ``e / log2 C`` is the normalised entropy in
    [0, 1]: 1 for a uniform prediction (weight W_max/e), 0 for a one-hot one (W_max).
    Entropy in nats would give ln C / log2 C = ln 2 for a uniform prediction, i.e. the
    weight W_max/2 instead of W_max/e: the check below tells the two apart. (The
    weights carry no gradient: ``esm`` runs under no_grad, see the gradient tests.)"""
    Cn = num_classes
    probs = torch.softmax(1.5 * rnd(3, Cn, 2, 2, 1, seed=Cn), 1)
    probs[0, :, 0, 0, 0] = 1.0 / Cn  # uniform
    probs[0, :, 1, 0, 0] = 0.0
    probs[0, 0, 1, 0, 0] = 1.0  # one-hot
    e, _, _ = esm(probs, 0.5)
    for u, x, y in itertools.product(range(3), range(2), range(2)):  # −Σ p log2 p by hand
        want = -sum(f(p) * math.log2(f(p)) for p in probs[u, :, x, y, 0] if f(p) > 0)
        assert f(e[u, x, y, 0]) == pytest.approx(want, rel=1e-5, abs=1e-6)
    normalised = e / math.log2(Cn)
    assert f(normalised[0, 0, 0, 0]) == pytest.approx(1.0, rel=1e-5)
    assert f(normalised[0, 1, 0, 0]) == pytest.approx(0.0, abs=1e-6)
    assert f(normalised.min()) >= 0 and f(normalised.max()) <= 1 + 1e-6
    w = ecps_weights(e, torch.zeros_like(e, dtype=torch.bool), Cn, 2.0)  # every voxel unreliable
    assert f(w[0, 0, 0, 0]) == pytest.approx(2.0 / math.e, rel=1e-5)  # uniform: W_max / e (nats: W_max / 2)
    assert f(w[0, 1, 0, 0]) == pytest.approx(2.0, rel=1e-6)


def test_ecps_loss_matches_eq5():
    la, lb = rnd(2, C, 3, 2, 2, seed=4), rnd(2, C, 3, 2, 2, seed=5)
    ea, ra, _ = esm(torch.softmax(la, 1), 0.5)
    eb, rb, _ = esm(torch.softmax(lb, 1), 0.5)
    wa, wb = ecps_weights(ea, ra, C), ecps_weights(eb, rb, C)
    got = ecps_loss(la, lb, wa.double(), wb.double())
    assert f(got) == pytest.approx(naive_ecps(la, lb, wa, wb), rel=1e-9)
    ones = torch.ones_like(wa, dtype=torch.float64)
    assert f(ecps_loss(la, lb, ones, ones)) == pytest.approx(naive_ecps(la, lb, ones, ones), rel=1e-9)
    assert f(got) < f(ecps_loss(la, lb, ones, ones))  # some unreliable voxels are down-weighted


def test_ecps_gradient_flows_only_through_the_predictions():
    """d/d logits_a of L_ecps = d/d logits_a of the first product only: the weights and the
    pseudo-labels (even when computed from the logits with gradient) carry no gradient."""
    la, lb = rnd(2, C, 3, 2, 2, seed=6, grad=True), rnd(2, C, 3, 2, 2, seed=7, grad=True)

    def diff_entropy(logits):
        p = torch.softmax(logits, 1)
        return -(p * torch.log2(p)).sum(1)

    ea, eb = diff_entropy(la), diff_entropy(lb)  # with gradient
    ra, rb = ea.detach() < ea.detach().mean(), eb.detach() < eb.detach().mean()
    wa, wb = ecps_weights(ea, ra, C), ecps_weights(eb, rb, C)
    assert wa.requires_grad and wb.requires_grad
    loss = ecps_loss(la, lb, wa, wb)
    ga, gb = torch.autograd.grad(loss, [la, lb])

    # reference: each product with constant weights and constant targets
    la2, lb2 = la.detach().clone().requires_grad_(), lb.detach().clone().requires_grad_()
    n = la.shape[0] * la[0, 0].numel()
    ya, yb = la.detach().argmax(1), lb.detach().argmax(1)
    first = (wb.detach() * -torch.log_softmax(la2, 1).gather(1, yb[:, None])[:, 0]).sum() / n
    second = (wa.detach() * -torch.log_softmax(lb2, 1).gather(1, ya[:, None])[:, 0]).sum() / n
    (ref_a,) = torch.autograd.grad(first, [la2])
    (ref_b,) = torch.autograd.grad(second, [lb2])
    assert torch.allclose(ga, ref_a, atol=1e-12) and torch.allclose(gb, ref_b, atol=1e-12)
    assert ga.abs().sum() > 0 and gb.abs().sum() > 0


# ------------------------------------------------------------------------------- HqC
def naive_hqc(anchors, cls, centres, negatives, valid, tau) -> float:
    total = 0.0
    for a in range(anchors.shape[0]):
        pos = cos(anchors[a], centres[int(cls[a])]) / tau
        negs = [cos(anchors[a], negatives[a, j]) / tau for j in range(negatives.shape[1]) if bool(valid[a, j])]
        total += -(pos - math.log(math.exp(pos) + sum(math.exp(v) for v in negs)))
    return total / anchors.shape[0]


def hqc_inputs(seed=10, A=6, N=4, D=5):
    anchors = rnd(A, D, seed=seed, grad=True)
    cls = torch.tensor([0, 0, 1, 2, 2, 1][:A])
    centres = rnd(C, D, seed=seed + 1, grad=True)
    negatives = rnd(A, N, D, seed=seed + 2, grad=True)
    valid = torch.rand(A, N, generator=gen(seed + 3)) < 0.6
    valid[1] = False  # an anchor with no valid negative
    valid[2] = True
    return anchors, cls, centres, negatives, valid


@pytest.mark.parametrize("tau", [1.0, 0.1])
def test_hqc_matches_eq11(tau):
    anchors, cls, centres, negatives, valid = hqc_inputs()
    got = hqc_loss(anchors, cls, centres, negatives, valid, tau)
    assert f(got) == pytest.approx(naive_hqc(anchors, cls, centres, negatives, valid, tau), rel=1e-9)
    # an anchor without valid negatives contributes exactly 0
    single = hqc_loss(anchors[1:2], cls[1:2], centres, negatives[1:2], valid[1:2], tau)
    assert f(single) == 0.0
    # invalid negatives do not enter: changing them changes nothing
    moved = negatives.detach().clone()
    moved[~valid] = 100 * torch.randn(int((~valid).sum()), moved.shape[-1], generator=gen(0), dtype=moved.dtype)
    assert f(hqc_loss(anchors, cls, centres, moved, valid, tau)) == pytest.approx(f(got), rel=1e-12)
    # scale invariance (cosine similarity)
    assert f(hqc_loss(3 * anchors, cls, 0.5 * centres, 2 * negatives, valid, tau)) == pytest.approx(f(got), rel=1e-9)
    empty = hqc_loss(anchors[:0], cls[:0], centres, negatives[:0], valid[:0], tau)
    assert f(empty) == 0.0


def test_hqc_gradients():
    """Gradient reaches anchors and valid negatives, never invalid negatives.

    Finding: ``hqc_loss`` does not detach ``centres`` itself — it indexes them and the
    gradient flows into a centres leaf that requires grad. P_c is kept out of the graph by
    the caller (the method passes ``ClassFIFOBank.means()`` of detached buffers; checked in
    tests/methods/test_dvcl.py). Anchor/negative gradients do not depend on that."""
    anchors, cls, centres, negatives, valid = hqc_inputs()
    hqc_loss(anchors, cls, centres, negatives, valid, 0.5).backward()
    has_neg = valid.any(1)
    assert anchors.grad[has_neg].abs().sum(1).gt(0).all()
    assert torch.all(anchors.grad[~has_neg] == 0)  # a term that is identically 0
    assert negatives.grad[valid].abs().sum(-1).gt(0).all()
    assert torch.all(negatives.grad[~valid] == 0)
    assert centres.grad is not None and centres.grad.abs().sum() > 0  # the finding above
    # with detached centres (how the method calls it): same anchor / negative gradients
    a2, n2 = anchors.detach().clone().requires_grad_(), negatives.detach().clone().requires_grad_()
    hqc_loss(a2, cls, centres.detach(), n2, valid, 0.5).backward()
    assert torch.allclose(a2.grad, anchors.grad) and torch.allclose(n2.grad, negatives.grad)


# ------------------------------------------------------------------------------- neighbours
def naive_neighbours(qr, kr, k, k_out):
    near, far = [], []
    for m in range(qr.shape[0]):
        sims = [cos(qr[m], kr[j]) for j in range(kr.shape[0])]
        order = sorted(range(len(sims)), key=lambda j: sims[j])
        far.append(set(order[:k_out]))
        near.append(set(order[::-1][:k]))
    return near, far


@pytest.mark.parametrize("k, k_out", [(1, 1), (3, 5), (5, 2), (12, 12)])
def test_neighbours_match_naive_topk(k, k_out):
    qr, kr = rnd(5, 4, seed=20), rnd(12, 4, seed=21)
    near, far = neighbours(qr, kr, k, k_out)
    assert near.shape == (5, k) and far.shape == (5, k_out)
    want_near, want_far = naive_neighbours(qr, kr, k, k_out)
    for m in range(5):
        assert set(near[m].tolist()) == want_near[m]
        assert set(far[m].tolist()) == want_far[m]
    # cosine, not dot product: rescaling queue rows changes nothing
    scaled = kr * torch.linspace(0.1, 10, 12, dtype=kr.dtype)[:, None]
    n2, f2 = neighbours(qr, scaled, k, k_out)
    assert all(set(n2[m].tolist()) == want_near[m] and set(f2[m].tolist()) == want_far[m] for m in range(5))


def test_neighbours_need_a_full_enough_queue():
    qr, kr = rnd(2, 4, seed=22), rnd(6, 4, seed=23)
    neighbours(qr, kr, 6, 2)
    for k, k_out in [(7, 2), (2, 7)]:
        with pytest.raises(ValueError, match="queue holds 6"):
            neighbours(qr, kr, k, k_out)
    with pytest.raises(ValueError):
        dvcl_terms(qr, softmax_rows(2), kr, softmax_rows(6, seed=1), 3, 7)
    with pytest.raises(ValueError, match="form"):
        dvcl_terms(qr, softmax_rows(2), kr, softmax_rows(6, seed=1), 2, 2, form="nope")


# ------------------------------------------------------------------------------- DVCL terms
def dvcl_inputs(Q=4, L=14, D=5, seed=30, grad=False):
    qr = rnd(Q, D, seed=seed, grad=grad)
    qlog = rnd(Q, C, seed=seed + 1, grad=grad)
    qr_, qp = qr, torch.softmax(2 * qlog, 1)
    kr = rnd(L, D, seed=seed + 2, grad=grad)
    kp_logits = rnd(L, C, seed=seed + 3)
    kp = torch.softmax(2 * kp_logits, 1).detach().requires_grad_(grad)
    return qr_, qp, kr, kp, qlog


def naive_psi_bar(qp, kp, near, far, k, k_out):
    """Eq. 16's ψ̄ with |U_R| = the queue length L."""
    out = []
    L = kp.shape[0]
    for m in range(qp.shape[0]):
        s = -sum(dot(qp[m], kp[n]) for n in near[m]) + sum(dot(qp[m], kp[j]) for j in far[m])
        out.append(s + (k - k_out) * (math.log(L) + 1))
    return out


def naive_psi(qp, kp, near, far):
    """Eq. 15 through Eq. 12-14: −log(Π_C O_{m,n} / Π_D O_{m,k}), normaliser over the queue."""
    out = []
    for m in range(qp.shape[0]):
        z = sum(math.exp(dot(qp[m], kp[q])) for q in range(kp.shape[0]))

        def odds(j: int, m: int = m, z: float = z) -> float:  # O_{m,j}
            return math.exp(dot(qp[m], kp[j])) / z

        num = math.prod(odds(n) for n in near[m])
        den = math.prod(odds(j) for j in far[m])
        out.append(-math.log(num / den))
    return out


@pytest.mark.parametrize("k, k_out", [(3, 5), (5, 3), (4, 4)])
def test_loglik_matches_eq15_and_eq16(k, k_out):
    qr, qp, kr, kp, _ = dvcl_inputs()
    t = dvcl_terms(qr, qp, kr, kp, k, k_out)
    near, far = naive_neighbours(qr, kr, k, k_out)
    want_bar, want_psi = naive_psi_bar(qp, kp, near, far, k, k_out), naive_psi(qp, kp, near, far)
    assert t.loss.shape == t.constant.shape == t.psi.shape == (4,)
    for m in range(4):
        assert f(t.loss[m] + t.constant[m]) == pytest.approx(want_bar[m], rel=1e-9, abs=1e-12)
        assert f(t.psi[m]) == pytest.approx(want_psi[m], rel=1e-9, abs=1e-12)
        assert f(t.constant[m]) == pytest.approx((k - k_out) * (math.log(14) + 1), rel=1e-12)


def naive_kl(p, q) -> float:
    return sum(f(p[c]) * (math.log(max(f(p[c]), 1e-6)) - math.log(max(f(q[c]), 1e-6))) for c in range(p.shape[0]))


@pytest.mark.parametrize("tau", [1.0, 0.3])
def test_infonce_simclr_kl_match_table8(tau):
    k, k_out = 3, 4
    qr, qp, kr, kp, _ = dvcl_inputs(seed=40)
    kp = kp.clone()
    kp[0] = torch.tensor([1 - 2e-9, 1e-9, 1e-9], dtype=kp.dtype)  # KL clamp at 1e-6 matters here
    kp[5] = torch.tensor([1e-9, 1e-9, 1 - 2e-9], dtype=kp.dtype)
    near, far = naive_neighbours(qr, kr, k, k_out)
    nce = dvcl_terms(qr, qp, kr, kp, k, k_out, form="infonce", tau=tau).loss
    sim = dvcl_terms(qr, qp, kr, kp, k, k_out, form="simclr", tau=tau).loss
    kl = dvcl_terms(qr, qp, kr, kp, k, k_out, form="kl", kl_weight=0.7).loss
    for m in range(qr.shape[0]):
        s_near = [cos(qr[m], kr[n]) / tau for n in near[m]]
        s_far = [cos(qr[m], kr[j]) / tau for j in far[m]]
        # InfoNCE: each neighbour against itself + all outsiders, averaged over the neighbours
        want_nce = sum(-(s - math.log(math.exp(s) + sum(math.exp(v) for v in s_far))) for s in s_near) / k
        # SimCLR: −mean_n log softmax_C(n) + mean_k log softmax_D(k)
        want_sim = sum(-(s - lse(s_near)) for s in s_near) / k + sum(s - lse(s_far) for s in s_far) / k_out
        want_kl = (
            sum(naive_kl(qp[m], kp[n]) for n in near[m]) / k - 0.7 * sum(naive_kl(qp[m], kp[j]) for j in far[m]) / k_out
        )
        assert f(nce[m]) == pytest.approx(want_nce, rel=1e-9)
        assert f(sim[m]) == pytest.approx(want_sim, rel=1e-9)
        assert f(kl[m]) == pytest.approx(want_kl, rel=1e-7)
    # the floor is hit for some query (otherwise the clamp would be untested)
    hit = [0 in far[m] or 5 in far[m] or 0 in near[m] or 5 in near[m] for m in range(qr.shape[0])]
    assert any(hit)


def test_bound_of_eq16_and_its_reversal():
    """ψ̄ − ψ = (K−K')·(log L + 1 − LSE_q p_m·p_q), the bracket is ≥ 0, hence ψ ≤ ψ̄ iff K ≥ K'
    (App. J's claim ψ < ψ̄ reverses for K < K', e.g. the paper's best 10/15)."""
    checked = {"le": 0, "ge": 0}
    for trial in range(25):
        L = [15, 16, 30, 40, 64][trial % 5]
        Q, D, Cc = 6, 4, [2, 3, 5][trial % 3]
        g = gen(100 + trial)
        qr = torch.randn(Q, D, generator=g, dtype=torch.float64)
        kr = torch.randn(L, D, generator=g, dtype=torch.float64)
        scale = [0.5, 3.0, 20.0][trial % 3]  # up to near one-hot probabilities
        qp = torch.softmax(scale * torch.randn(Q, Cc, generator=g, dtype=torch.float64), 1)
        kp = torch.softmax(scale * torch.randn(L, Cc, generator=g, dtype=torch.float64), 1)
        for k, k_out in [(10, 15), (5, 10), (5, 5), (10, 10), (15, 15), (15, 10), (3, 1), (1, 3)]:
            t = dvcl_terms(qr, qp, kr, kp, k, k_out)
            psi_bar = t.loss + t.constant
            for m in range(Q):
                bracket = math.log(L) + 1 - lse([dot(qp[m], kp[q]) for q in range(L)])
                assert bracket >= 0
                assert f(psi_bar[m] - t.psi[m]) == pytest.approx((k - k_out) * bracket, rel=1e-9, abs=1e-9)
            if k >= k_out:
                assert torch.all(t.psi <= psi_bar + 1e-12)
                checked["le"] += 1
            if k <= k_out:
                assert torch.all(t.psi >= psi_bar - 1e-12)
                checked["ge"] += 1
            if k < k_out:
                assert torch.all(t.psi > psi_bar)  # strictly reversed: the bracket is > 0
    assert checked["le"] > 0 and checked["ge"] > 0


@pytest.mark.parametrize("form", ["loglik", "kl", "infonce", "simclr"])
def test_dvcl_gradient_routing(form):
    qr, qp, kr, kp, qlog = dvcl_inputs(grad=True, seed=50)
    t = dvcl_terms(qr, qp, kr, kp, 3, 4, form=form, tau=0.5)
    assert not t.psi.requires_grad and not t.constant.requires_grad
    t.loss.sum().backward()
    assert kr.grad is None and kp.grad is None  # queue entries are detached
    if form in ("loglik", "kl"):
        assert qlog.grad is not None and qlog.grad.abs().sum() > 0
        assert qr.grad is None or torch.all(qr.grad == 0)
    else:
        assert qr.grad is not None and qr.grad.abs().sum(1).gt(0).all()
        assert qlog.grad is None or torch.all(qlog.grad == 0)


def test_loglik_gradient_is_that_of_psi_bar_first_two_terms():
    qr, qp, kr, kp, qlog = dvcl_inputs(grad=True, seed=60)
    k, k_out = 2, 5
    t = dvcl_terms(qr, qp, kr, kp, k, k_out)
    (g,) = torch.autograd.grad(t.loss.sum(), [qlog])
    near, far = naive_neighbours(qr, kr, k, k_out)
    qlog2 = qlog.detach().clone().requires_grad_()
    p = torch.softmax(2 * qlog2, 1)
    kd = kp.detach()
    total = sum(
        -sum((p[m] * kd[n]).sum() for n in near[m]) + sum((p[m] * kd[j]).sum() for j in far[m])
        for m in range(p.shape[0])
    )
    (ref,) = torch.autograd.grad(total, [qlog2])
    assert torch.allclose(g, ref, atol=1e-12) and ref.abs().sum() > 0


# ------------------------------------------------------------------------------- select_queries
def test_select_queries_contract():
    mask = torch.rand(3, 4, 5, generator=gen(70)) < 0.4
    inside = set(torch.nonzero(mask.reshape(-1))[:, 0].tolist())
    n = len(inside)
    assert 5 < n < 50
    for cap in (1, 5, n - 1):
        idx = select_queries(mask, cap, gen(1))
        assert idx.dtype == torch.long and idx.numel() == min(cap, n)
        assert len(set(idx.tolist())) == idx.numel() and set(idx.tolist()) <= inside
    for cap in (n, n + 7, 10_000):
        assert set(select_queries(mask, cap, gen(2)).tolist()) == inside
        assert select_queries(mask, cap, gen(2)).numel() == n
    assert torch.equal(select_queries(mask, 4, gen(3)), select_queries(mask, 4, gen(3)))
    assert not torch.equal(select_queries(mask, 4, gen(3)), select_queries(mask, 4, gen(4)))
    assert select_queries(torch.zeros(2, 3, dtype=torch.bool), 5, gen(0)).numel() == 0
    assert select_queries(mask, 0, gen(0)).numel() == 0


def test_select_queries_is_uniform():
    mask = torch.zeros(4, 5, dtype=torch.bool)
    cells = [0, 3, 6, 7, 11, 12, 18, 19]
    mask.view(-1)[cells] = True
    g = gen(80)
    counts = {c: 0 for c in cells}
    draws, cap = 4000, 3
    for _ in range(draws):
        for i in select_queries(mask, cap, g).tolist():
            counts[i] += 1
    assert set(counts) == set(cells)
    expected = draws * cap / len(cells)
    chi2 = sum((v - expected) ** 2 / expected for v in counts.values())
    assert chi2 < 24.3  # χ²(7) 0.999 quantile
