"""DVCL method: schema, gradient flow per term, ablation switches, the logged bound,
queue/bank hygiene and a bit-exact state_dict round-trip."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.methods.common import C, build_method, make_batch
from vrsearch.study import StudyError, load_study

SMALL = dict(anchors=8, negatives=4, bank_size=16, k=2, k_prime=3, queries=16, queue_size=32)
VRSEARCH = str(Path(sys.executable).with_name("vrsearch"))


pytestmark = pytest.mark.usefixtures("one_thread")


def build(**params):
    return build_method("dvcl", iterations=10, **{**SMALL, **params})


def grads(module: torch.nn.Module) -> list:
    return [p.grad for p in module.parameters()]


def nonzero(module: torch.nn.Module) -> bool:
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads(module))


def no_grad_at_all(module: torch.nn.Module) -> bool:
    return all(g is None or bool(torch.all(g == 0)) for g in grads(module))


def fill_queue(m, steps: int = 2, seed: int = 1) -> None:
    """Forward-only steps (no optimizer) so that the queue holds max(K, K') entries."""
    for it in range(steps):
        m(make_batch(seed + it), it)
    assert len(m.queue) >= max(m.params.k, m.params.k_prime)


def val(t) -> float:
    return float(torch.as_tensor(t).detach())


# -- schema ----------------------------------------------------------------------------------------


def test_k_larger_than_the_queue_is_a_schema_error(tiny_study):
    path = tiny_study(method={"name": "dvcl", "params": {"k": 20, "queue_size": 10}})
    with pytest.raises(StudyError) as info:
        load_study(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("method.params") and "queue_size" in msg and "20" in msg
    # the CLI: exit code 2 and one line (before tiny_study rewrites the same file below)
    proc = subprocess.run([VRSEARCH, "validate", str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "method.params" in lines[0] and "queue_size" in lines[0]
    # k_prime alone too (k default 10 fits, k_prime 12 does not)
    with pytest.raises(StudyError, match="queue_size"):
        load_study(tiny_study(method={"name": "dvcl", "params": {"k_prime": 12, "queue_size": 11}}))
    ok = load_study(tiny_study(method={"name": "dvcl", "params": {"k": 5, "k_prime": 5, "queue_size": 5}}))
    assert ok.method.params["queue_size"] == 5


# -- gradient flow -----------------------------------------------------------------------------------


def test_one_step_trains_both_networks_and_hqc_reaches_the_feature_heads():
    m = build()
    out = m(make_batch(), 0)
    assert val(out.terms["anchors"]) > 0 and val(out.terms["hqc"]) > 0
    out.loss.backward()
    for net in (m.net_a, m.net_b):
        assert nonzero(net) and nonzero(net.seg_head) and nonzero(net.backbone)
    # dvcl off: the features enter the loss only through HqC
    m = build(dvcl=False)
    m.zero_grad(set_to_none=True)
    m(make_batch(), 0).loss.backward()
    assert nonzero(m.net_a.feature_head) and nonzero(m.net_b.feature_head)


def test_loglik_dvcl_trains_seg_heads_not_feature_heads():
    """hqc off, loglik: neighbours come from a non-differentiable topk on features, the loss uses
    probabilities → no gradient into the feature heads; the DVCL term does reach the seg heads."""
    heads = {}
    for lam in (0.0, 1.0):
        m = build(hqc=False, form="loglik", lambda_c=lam, beta=1.0)
        fill_queue(m)
        out = m(make_batch(7), 2)
        assert val(out.terms["dvcl"]) != 0 and val(out.terms["hqc"]) == 0
        m.zero_grad(set_to_none=True)
        out.loss.backward()
        assert no_grad_at_all(m.net_a.feature_head) and no_grad_at_all(m.net_b.feature_head)
        assert nonzero(m.net_a.seg_head) and nonzero(m.net_b.seg_head)
        heads[lam] = [p.grad.clone() for net in (m.net_a, m.net_b) for p in net.seg_head.parameters()]
    # the only difference between the two runs is λ_c·β·L_dvcl: it moves both seg heads
    a_diff = not torch.allclose(heads[0.0][0], heads[1.0][0])
    b_diff = not torch.allclose(heads[0.0][2], heads[1.0][2])
    assert a_diff and b_diff


def test_infonce_dvcl_trains_the_feature_heads_once_the_queue_is_full():
    m = build(hqc=False, form="infonce")
    out = m(make_batch(1), 0)  # empty queue: the DVCL term is 0
    assert val(out.terms["dvcl"]) == 0 and len(m.queue) > 0
    out.loss.backward()
    assert no_grad_at_all(m.net_a.feature_head) and no_grad_at_all(m.net_b.feature_head)
    m(make_batch(2), 1)
    m.zero_grad(set_to_none=True)
    out = m(make_batch(7), 2)
    assert val(out.terms["dvcl"]) > 0
    out.loss.backward()
    assert nonzero(m.net_a.feature_head) and nonzero(m.net_b.feature_head)


# -- ablation switches ---------------------------------------------------------------------------------


def naive_ecps(logits_a, logits_b, w_a, w_b) -> float:
    """Eq. 5 by loops; logits [U, C, X, Y, Z] as nested lists, weights [U, X, Y, Z] or None (= 1)."""
    la, lb = logits_a.tolist(), logits_b.tolist()
    wa = w_a.tolist() if w_a is not None else None
    wb = w_b.tolist() if w_b is not None else None
    U, X, Y, Z = logits_a.shape[0], *logits_a.shape[2:]
    total = 0.0
    for u in range(U):
        for x in range(X):
            for y in range(Y):
                for z in range(Z):
                    va = [la[u][c][x][y][z] for c in range(C)]
                    vb = [lb[u][c][x][y][z] for c in range(C)]
                    ya, yb = va.index(max(va)), vb.index(max(vb))
                    za = math.log(sum(math.exp(v) for v in va))
                    zb = math.log(sum(math.exp(v) for v in vb))
                    total += (wb[u][x][y][z] if wb else 1.0) * (za - va[yb])
                    total += (wa[u][x][y][z] if wa else 1.0) * (zb - vb[ya])
    return total / (U * X * Y * Z)


def naive_entropy_weights(logits, alpha):
    """Eq. 1-4 by loops (bits; population std over all unlabeled voxels; W_max = 1)."""
    vals = logits.tolist()
    U, X, Y, Z = logits.shape[0], *logits.shape[2:]
    ent = {}
    for u in range(U):
        for x in range(X):
            for y in range(Y):
                for z in range(Z):
                    v = [vals[u][c][x][y][z] for c in range(C)]
                    mx = max(v)
                    ps = [math.exp(a - mx) for a in v]
                    s = sum(ps)
                    ent[u, x, y, z] = -sum(p / s * math.log2(p / s) for p in ps)
    mean = sum(ent.values()) / len(ent)
    std = math.sqrt(sum((e - mean) ** 2 for e in ent.values()) / len(ent))
    tau = mean + alpha * std
    w = torch.ones(U, X, Y, Z, dtype=torch.float64)
    for key, e in ent.items():
        if not e < tau:
            w[key] = math.exp(-e / math.log2(C))
    return w


@pytest.mark.parametrize("ebl", [True, False])
def test_ecps_against_naive_reference(ebl):
    m = build(ebl=ebl, alpha=0.3)
    b = make_batch(3)
    out = m(b, 0)
    with torch.no_grad():
        x = torch.cat([b.image, b.unlabeled])
        la, lb = m.net_a(x)[b.image.shape[0] :].double(), m.net_b(x)[b.image.shape[0] :].double()
    if ebl:
        want = naive_ecps(la, lb, naive_entropy_weights(la, 0.3), naive_entropy_weights(lb, 0.3))
        assert val(out.terms["ecps"]) < naive_ecps(la, lb, None, None)  # some weights < 1
    else:  # plain CPS: all weights 1
        want = naive_ecps(la, lb, None, None)
    assert val(out.terms["ecps"]) == pytest.approx(want, rel=1e-5)


def test_dvcl_off_and_loss_composition():
    lam_u, lam_c, beta = 0.7, 0.3, 0.5
    m = build(dvcl=False, lambda_u=lam_u, lambda_c=lam_c, beta=beta)
    for it in range(3):
        out = m(make_batch(it), it)
        t = out.terms
        assert val(t["dvcl"]) == 0 and val(t["dvcl_psi"]) == 0 and val(t["dvcl_const"]) == 0 and len(m.queue) == 0
        want = val(t["sup_a"]) + val(t["sup_b"]) + lam_u * val(t["rampup"]) * val(t["ecps"]) + lam_c * val(t["hqc"])
        assert val(out.loss) == pytest.approx(want, rel=1e-6)
    assert 0 < val(t["rampup"]) < 1 and val(t["hqc"]) > 0
    # dvcl on: the full Eq. 20 from the logged terms
    m = build(lambda_u=lam_u, lambda_c=lam_c, beta=beta)
    fill_queue(m)
    t = (out := m(make_batch(5), 2)).terms
    assert val(t["dvcl"]) != 0 and val(t["hqc"]) > 0
    want = (
        val(t["sup_a"])
        + val(t["sup_b"])
        + lam_u * val(t["rampup"]) * val(t["ecps"])
        + lam_c * (val(t["hqc"]) + beta * val(t["dvcl"]))
    )
    assert val(out.loss) == pytest.approx(want, rel=1e-6)


def test_lambda_c_zero_removes_the_contrastive_terms():
    m = build(lambda_c=0.0, form="infonce")
    fill_queue(m)
    out = m(make_batch(5), 2)
    t = out.terms
    assert val(t["hqc"]) > 0 and val(t["dvcl"]) > 0  # computed and logged ...
    want = val(t["sup_a"]) + val(t["sup_b"]) + 0.1 * val(t["rampup"]) * val(t["ecps"])
    assert val(out.loss) == pytest.approx(want, rel=1e-6)  # ... but not in the loss
    out.loss.backward()
    assert no_grad_at_all(m.net_a.feature_head) and no_grad_at_all(m.net_b.feature_head)


# -- the logged bound, queue and bank ----------------------------------------------------------------------


@pytest.mark.parametrize("k, k_prime", [(3, 2), (2, 3), (3, 3)])
def test_logged_bound_queue_and_bank(k, k_prime):
    m = build(k=k, k_prime=k_prime)
    full_steps = 0
    for it in range(5):
        before = len(m.queue)
        out = m(make_batch(it), it)
        t = out.terms
        out.loss.backward()
        assert val(t["dvcl_psi_bar"]) == pytest.approx(val(t["dvcl"]) + val(t["dvcl_const"]), rel=1e-6, abs=1e-7)
        assert 0 < val(t["queries"]) <= SMALL["queries"]
        if before >= max(k, k_prime):
            full_steps += 1
            assert val(t["dvcl"]) != 0
            assert val(t["dvcl_const"]) == pytest.approx((k - k_prime) * (math.log(before) + 1), rel=1e-6, abs=1e-7)
            psi, bar = val(t["dvcl_psi"]), val(t["dvcl_psi_bar"])
            if k > k_prime:
                assert psi < bar
            elif k < k_prime:
                assert psi > bar  # the documented reversal
            else:
                assert psi == pytest.approx(bar, abs=1e-5)
        else:
            assert val(t["dvcl"]) == 0 and val(t["dvcl_psi"]) == 0
        assert len(m.queue) == min(before + int(val(t["queries"])), SMALL["queue_size"])
        items = m.queue.items()
        assert items.shape == (len(m.queue), m.dim + C) and len(m.queue) <= SMALL["queue_size"]
        assert not items.requires_grad and items.grad_fn is None
        assert torch.allclose(items[:, : m.dim].norm(dim=1), torch.ones(len(m.queue)), atol=1e-5)
        assert torch.allclose(items[:, m.dim :].sum(1), torch.ones(len(m.queue)), atol=1e-5)
        assert int(m.bank.count.sum()) > 0
        assert not m.bank.bank.requires_grad and m.bank.bank.grad_fn is None and m.bank.bank.grad is None
        centres, _ = m.bank.means()
        assert not centres.requires_grad  # P_c carries no gradient into the bank
        assert not any(b.requires_grad for b in m.buffers())
    assert full_steps >= 3 and len(m.queue) == SMALL["queue_size"]


# -- Ruling 2026-12: P_c is the mean of the raw features (Eq. 9) ----------------------------------------------


def naive_hqc_with_raw_centres(anchors, cls, negatives, valid, tau):
    """Eq. 9 and Eq. 11 by loops: P_c = plain mean of the raw anchor features of class c
    (every anchor of this step is in a fresh bank; NS weights are equal), then the
    cosine of Eq. 11 normalises anchor, centre and negatives. P_c is a constant."""
    A, N, D = negatives.shape
    centre = {}
    for c in set(cls.tolist()):
        rows = [anchors[a].detach() for a in range(A) if int(cls[a]) == c]
        centre[c] = sum(rows) / len(rows)

    def cosine(u, v):
        return (u * v).sum() / (u.norm() * v.norm())

    total = 0.0
    for a in range(A):
        pos = cosine(anchors[a], centre[int(cls[a])]) / tau
        terms = [pos] + [cosine(anchors[a], negatives[a, j]) / tau for j in range(N) if bool(valid[a, j])]
        total = total + torch.logsumexp(torch.stack(terms), 0) - pos
    return total / A, centre


def test_class_centre_is_the_raw_feature_mean_and_carries_no_gradient(monkeypatch):
    import vrsearch.methods.dvcl as dvcl_mod

    m = build(anchors=6, negatives=3, bank_size=64, tau=0.5)
    seen = {}
    real = dvcl_mod.hqc_loss

    def spy(*args):
        seen["args"] = args
        return real(*args)

    monkeypatch.setattr(dvcl_mod, "hqc_loss", spy)
    batch = make_batch(3)
    x = torch.cat([batch.image, batch.unlabeled])
    logits_a, r_a = m.net_a(x, features=True)
    logits_b, r_b = m.net_b(x, features=True)
    r_a, r_b = 3 * r_a + 1, r_b - 0.5  # features far from the unit sphere: raw and normalised means differ
    pa, pb = logits_a.softmax(1), logits_b.softmax(1)
    _, rel_a, _ = dvcl_mod.esm(pa[2:], 0.5)
    _, rel_b, _ = dvcl_mod.esm(pb[2:], 0.5)
    g = torch.Generator().manual_seed(0)
    loss, n, _ = m._hqc(batch.label[:, 0], pa.argmax(1), pb.argmax(1), rel_a, rel_b, r_a, r_b, g)
    anchors, cls, centres, negatives, valid, tau, weight = seen["args"]
    assert n == anchors.shape[0] > 0 and bool(valid.any())
    want, centre = naive_hqc_with_raw_centres(anchors, cls, negatives, valid, tau)
    for c, v in centre.items():  # the bank's P_c is the raw mean (not the mean of normalised features)
        assert torch.allclose(centres[c], v, rtol=1e-5, atol=1e-6)
        rows = anchors[cls == c].detach()
        normalised_mean = torch.nn.functional.normalize(rows, dim=-1).mean(0)
        assert not torch.allclose(
            torch.nn.functional.normalize(v, dim=0), torch.nn.functional.normalize(normalised_mean, dim=0), atol=1e-3
        )
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    # gradient flow: the same gradient into both feature maps as the naive loss with P_c constant
    g_got = torch.autograd.grad(loss, (r_a, r_b), retain_graph=True)
    g_want = torch.autograd.grad(want, (r_a, r_b))
    for got, ref in zip(g_got, g_want):
        assert got.abs().sum() > 0
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    assert not m.bank.bank.requires_grad and m.bank.bank.grad_fn is None


def _step(method, batch, it: int = 5):
    """One step: its output and every parameter's gradient."""
    method.zero_grad(set_to_none=True)
    out = method(batch, it)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in method.named_parameters() if p.grad is not None}


def _assert_same_step(got, want, a, b) -> None:
    """Two methods' steps agree: loss, every term, every parameter's gradient ≤ 1e-5
    relative, and the same queue and bank afterwards."""
    (out, grads), (ref, ref_grads) = got, want
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-5, atol=1e-7)
    for key, value in ref.terms.items():
        torch.testing.assert_close(out.terms[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(a.queue.items(), b.queue.items(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.bank.bank, b.bank.bank, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["loglik", "infonce"])
def test_heads_on_the_gathered_voxels_equal_the_dense_feature_maps(form, monkeypatch):
    """The feature heads run only on the voxels HqC and DVCL read (``features="decoder"`` +
    ``SegNet.head_rows``); running them over every voxel and gathering from the dense
    maps (the earlier path) gives the same step: loss, every term, every parameter's
    gradient ≤ 1e-5 relative, and the same bank and queue afterwards."""
    import copy

    from vrsearch.models.nets import SegNet

    m = build(form=form)
    fill_queue(m)  # the DVCL term is active
    dense = copy.deepcopy(m)
    batch = make_batch(7)

    got = _step(m, batch)
    real_forward = SegNet.forward
    monkeypatch.setattr(
        SegNet,
        "forward",
        lambda net, x, features=False: real_forward(net, x, True if features == "decoder" else features),
    )
    monkeypatch.setattr(dense, "_heads", lambda: None)
    want = _step(dense, batch)
    assert val(want[0].terms["dvcl"]) != 0 and val(want[0].terms["hqc"]) != 0
    assert any("feature_head" in n for n in got[1])
    _assert_same_step(got, want, m, dense)


def _dense_softmax_dvcl(method, rel_a, rel_b, r_a, r_b, l_a, l_b, g, heads=None):
    """The earlier L_dvcl path, written out as a reference: softmax over the whole map
    (with gradient), then read at the queries."""
    from vrsearch.losses.dvcl import dvcl_terms, select_queries
    from vrsearch.methods.dvcl import _twin_gather

    p = method.params
    q = select_queries(torch.stack([~rel_a, ~rel_b]), p.queries, g)
    qr = _twin_gather(r_a, r_b, q, heads).float()
    qp = _twin_gather(torch.softmax(l_a.float(), 1), torch.softmax(l_b.float(), 1), q).float()
    items = method.queue.items()
    t = dvcl_terms(
        qr,
        qp,
        items[:, : method.dim],
        items[:, method.dim :],
        p.k,
        p.k_prime,
        form=p.form,
        tau=p.tau,
        kl_weight=p.kl_weight,
    )
    method.queue.push(torch.cat([torch.nn.functional.normalize(qr.detach(), dim=-1), qp.detach()], 1))
    zero = qp.new_zeros(())
    return {
        "dvcl": t.loss.mean(),
        "dvcl_const": t.constant.mean(),
        "dvcl_psi": t.psi.mean(),
        "queries": zero + q.numel(),
    }


@pytest.mark.parametrize("form", ["loglik", "infonce"])
def test_query_probabilities_from_gathered_logits_equal_the_dense_softmax(form):
    """L_dvcl's query probabilities are the softmax of the logits gathered at the queries,
    and the full probability maps carry no gradient; the earlier path (softmax of the
    whole map with gradient, read at the queries; ``_dense_softmax_dvcl``) gives the same
    step: loss, every term, every parameter's gradient ≤ 1e-5 relative, the same queue."""
    import copy
    import types

    m = build(form=form)
    fill_queue(m)  # the DVCL term is active
    dense = copy.deepcopy(m)
    dense._dvcl = types.MethodType(_dense_softmax_dvcl, dense)
    batch = make_batch(7)

    got, want = _step(m, batch), _step(dense, batch)
    assert val(want[0].terms["dvcl"]) != 0 and val(want[0].terms["queries"]) > 0
    _assert_same_step(got, want, m, dense)


@pytest.mark.parametrize("sampler", ["ns", "sg", "sag"])
def test_reflection_replacements_are_logged(sampler):
    m = build(sampler=sampler, grid=9, anchors=32)
    outside = [val(m(make_batch(it), it).terms["reflect_outside"]) for it in range(3)]
    if sampler == "sag":  # random labels: most reflections leave their group
        assert sum(outside) > 0
    else:
        assert outside == [0.0, 0.0, 0.0]
    assert val(build(sampler=sampler, hqc=False)(make_batch(), 0).terms["reflect_outside"]) == 0.0


# -- state_dict round-trip --------------------------------------------------------------------------------------


def test_state_dict_round_trip_is_bit_exact():
    m1 = build()
    for it in range(3):  # plain SGD steps, so the weights differ from a fresh build too
        out = m1(make_batch(it), it)
        m1.zero_grad(set_to_none=True)
        out.loss.backward()
        with torch.no_grad():
            for prm in m1.parameters():
                if prm.grad is not None:
                    prm -= 0.05 * prm.grad
    state = m1.state_dict()
    assert any(k.startswith("bank.") for k in state) and any(k.startswith("queue.") for k in state)
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)

    fresh = build()
    m2 = build()
    m2.load_state_dict(torch.load(buf, weights_only=True))
    assert len(m2.queue) == len(m1.queue) > 0
    assert torch.equal(m2.queue.items(), m1.queue.items())
    assert torch.equal(m2.bank.bank, m1.bank.bank)

    batch = make_batch(11)
    o1, o2, o3 = m1(batch, 3), m2(batch, 3), fresh(batch, 3)
    assert torch.equal(o1.loss, o2.loss)
    for name, v in o1.terms.items():
        assert torch.equal(v, o2.terms[name]), name
    assert val(o1.terms["dvcl"]) != 0
    assert not torch.equal(o1.loss, o3.loss)  # the state matters: a fresh copy differs
    assert torch.equal(m1.queue.items(), m2.queue.items())  # and the step left both states equal
