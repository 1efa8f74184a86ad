"""The samplers are unbiased *as each method uses them* (METHODS.md, Ruling 2026-12).

For every method that averages over sampled voxels, on a fixed feature field,
the Monte-Carlo mean of its sampled estimate under NS, SG and SAG (default
rounding ``auto``) equals the full-population value — every eligible voxel
used once, equal weights — within ``Z`` Monte-Carlo standard errors, and SG's
variance is not above NS's (ARCO Thm 3.2) within ``Z`` standard errors of the
difference. ``Z = 4``: a false alarm has probability ≈ 6e-5 per comparison.
Each test also shows it can fail: the same estimate with the sampler's weights
dropped (or largest-remainder rounding) is caught as biased.

What is sampled, per method, and what is checked:

* LCL: anchors ``S̃_c(x)`` (the class means use every voxel). The whole
  ``L_cont`` is linear in the per-anchor terms: checked as a whole, for
  ``intra`` and ``inter`` matching.
* MONA/ARCO: queries, and keys → bank → negatives. The loss is linear in the
  queries' terms but not in the negatives (a log of a sum over the drawn
  negatives: Jensen makes any finite draw biased for any sampler, NS included),
  so the two are checked apart, both through ``MONA._contrast``: (a) with a
  teacher field constant per class, two classes present, so every negative
  of a query is the same vector and ``L_contrast``'s expectation has a closed
  form; (b) with a varying teacher field, the negatives the method draws from
  its bank, with their importance weights, average to the mean over the other
  classes' voxels.
* DVCL: HqC anchors and the class centre ``P_c`` (a bank mean of anchors of
  the same step, so the loss is not linear in the anchors either): (a) ``P_c``
  after one ``DVCL._hqc`` is unbiased for the raw-feature mean of the class's
  candidates (Eq. 8-9); (b) with ``P_c`` held at that population value and one
  negative feature per class, ``L_hqc``'s expectation has a closed form.

Monte Carlo is vectorised where the sampler's units are per image (LCL: one
call on D copies of the batch gives D independent draws) and loops over small
fields otherwise.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vrsearch.components.samplers import sample_voxels
from vrsearch.losses.lcl import local_contrastive_terms

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: threads only cost time

Z = 4.0
SAMPLERS = ("ns", "sg", "sag")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def field(B: int, shape: tuple[int, ...], V: int, K: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``[B, *shape]`` with K classes of very different sizes and shapes and a
    smooth feature field ``[B, V, *shape]`` (float64) whose class means differ across
    cells, so that stratification matters."""
    axes = torch.meshgrid(*[torch.arange(n, dtype=torch.float64) / n for n in shape], indexing="ij")
    x, y, z = axes[0], axes[1], axes[-1]
    labels = torch.zeros(B, *shape, dtype=torch.long)
    feats = []
    for b in range(B):
        lab = torch.zeros(shape, dtype=torch.long)
        lab[((x - 0.35 - 0.1 * b) ** 2 + (y - 0.45) ** 2) < 0.09] = 1  # a cylinder / disc
        lab[(x > 0.7) & (y < 0.5 + 0.1 * b)] = 2  # a slab
        if K > 3:
            lab[((x - 0.2) ** 2 + (y - 0.85) ** 2 + (z - 0.5) ** 2) < 0.02] = 3  # a small blob
        labels[b] = lab
        chans = [torch.sin(3 * x + b) + y, torch.cos(4 * y) - z, x * y + 0.5 * lab, torch.sin(5 * z + 2 * x)]
        feats.append(torch.stack([chans[v % 4] * (1 + 0.3 * (v // 4)) for v in range(V)]))
    return labels, torch.stack(feats)


def z_score(draws: torch.Tensor, truth: float) -> float:
    return float((draws.mean() - truth) / (draws.std() / math.sqrt(draws.numel())))


def var_not_above(a: torch.Tensor, b: torch.Tensor) -> tuple[bool, float, float]:
    """Var(a) ≤ Var(b) within Z standard errors of the difference (kurtosis-aware SEs)."""

    def var_se(x):
        d = x - x.mean()
        v = float((d**2).mean())
        return float(x.var()), math.sqrt(max(float((d**4).mean()) - v * v, 0.0) / x.numel())

    (va, sa), (vb, sb) = var_se(a), var_se(b)
    return va <= vb + Z * math.hypot(sa, sb), va, vb


# ---------------------------------------------------------------------------------------- LCL
LCL_CLASSES = [1, 2, 3]


def lcl_draws(labels, emb, method, matching, D, seed, rounding="auto", weighted=True):
    """D independent draws of L_cont: one call on D copies of the batch (anchors are
    drawn per image, and with B = 2 copies of (x0, x1) every image keeps its partner)."""
    B = labels.shape[0]
    lab = labels.repeat(D, *[1] * (labels.dim() - 1))
    e = emb.repeat(D, *[1] * (emb.dim() - 1))
    s = sample_voxels(lab, 3, method=method, grid=16, generator=gen(seed), classes=LCL_CLASSES, rounding=rounding)
    w = s.weight if weighted else torch.ones_like(s.weight)
    out = local_contrastive_terms(e, lab, (s.batch, s.index, s.cls, w), 4, 0.1, matching, LCL_CLASSES)
    return out.per_image.view(D, B).mean(1)


def lcl_population(labels, emb, matching) -> float:
    flat = labels.reshape(labels.shape[0], -1)
    b, j = torch.nonzero(torch.isin(flat, torch.tensor(LCL_CLASSES)), as_tuple=True)
    everything = (b, b * flat.shape[1] + j, flat[b, j], torch.ones(b.numel(), dtype=torch.float64))
    return float(local_contrastive_terms(emb, labels, everything, 4, 0.1, matching, LCL_CLASSES).loss)


@pytest.mark.parametrize("matching", ["intra", "inter"])
def test_lcl_anchor_sampling_is_unbiased(matching):
    labels, emb = field(2, (8, 8, 6), 4, 4)
    truth = lcl_population(labels, emb, matching)
    D = 2500
    draws = {m: lcl_draws(labels, emb, m, matching, D, seed=i) for i, m in enumerate(SAMPLERS)}
    for m, d in draws.items():
        assert abs(z_score(d, truth)) < Z, (m, float(d.mean()), truth)
    ok, v_sg, v_ns = var_not_above(draws["sg"], draws["ns"])
    assert ok, (v_sg, v_ns)
    # the check has teeth: ARCO's largest-remainder rounding with 3 anchors leaves cells unsampled
    biased = lcl_draws(labels, emb, "sg", matching, D, seed=7, rounding="largest")
    assert abs(z_score(biased, truth)) > 2 * Z


# ------------------------------------------------------------------------------ MONA / ARCO
# ARCO is MONA's module (vrsearch.methods.arco): these tests build "arco", whose point is the sampler.
TAU = 0.5


def arco(sampler: str, **params):
    from tests.methods.common import build_method

    return build_method("arco", 10, stage=2, sampler=sampler, embedding_dim=4, **params).double()


def mona_query_field():
    """Labels with classes 0 and 1 only (C = 3), a varying student field, a teacher
    field constant per class (so every negative of a query is the other class's
    vector) and a confidence field that marks ~85 % of the voxels hard."""
    labels, rep_s = field(2, (8, 8, 6), 4, 3)
    labels = labels.clamp_max(1)
    t = torch.tensor([[1.0, 0.2, -0.3, 0.5], [-0.4, 1.0, 0.6, -0.2]], dtype=torch.float64)
    rep_t = t[labels].movedim(-1, 1).contiguous()
    conf = 0.6 + 0.5 * torch.sigmoid(2 * rep_s[:, 1])
    return labels, rep_s, rep_t, conf, t


def mona_population(labels, rep_s, conf, t, keys: int, delta: float = 0.97) -> float:
    """Closed form: every hard voxel a query, its ``keys`` negatives all equal to the
    other class's teacher vector: mean over classes of mean_v log(e^{pos} + n e^{neg}) − pos."""
    s, tn, hard = F.normalize(rep_s.movedim(1, -1), dim=-1), F.normalize(t, dim=-1), conf <= delta
    per_class = []
    for c in (0, 1):
        sv = s[hard & (labels == c)]
        pos, neg = sv @ tn[c] / TAU, sv @ tn[1 - c] / TAU
        per_class.append((torch.logaddexp(pos, math.log(keys) + neg) - pos).mean())
    return float(sum(per_class) / len(per_class))


def contrast_draws(m, labels, rep_s, rep_t, conf, R):
    return torch.tensor(
        [float(m._contrast(rep_s, rep_t, labels, conf, gen(r), r)[0]) for r in range(R)], dtype=torch.float64
    )


def test_arco_contrast_queries_are_unbiased(monkeypatch):
    """(a) of the module doc: 150 steps × 512 hard queries per class, grid 16."""
    labels, rep_s, rep_t, conf, t = mona_query_field()
    keys, R = 16, 150
    truth = mona_population(labels, rep_s, conf, t, keys)
    draws = {
        s: contrast_draws(arco(s, queries=512, keys=keys, negative_bank_size=keys), labels, rep_s, rep_t, conf, R)
        for s in SAMPLERS
    }
    for s, d in draws.items():
        assert abs(z_score(d, truth)) < Z, (s, float(d.mean()), truth)
    ok, v_sg, v_ns = var_not_above(draws["sg"], draws["ns"])
    assert ok, (v_sg, v_ns)
    # teeth: the plain mean of the queries (their SAG weights dropped) is caught
    import vrsearch.methods.mona as mona

    weighted = mona.anatomical_contrastive
    monkeypatch.setattr(mona, "anatomical_contrastive", lambda *a, **k: weighted(*a, **{**k, "query_weight": None}))
    plain = contrast_draws(arco("sag", queries=512, keys=keys, negative_bank_size=keys), labels, rep_s, rep_t, conf, R)
    assert abs(z_score(plain, truth)) > 2 * Z


def negative_means(m, labels, rep_t, R, n_draws=2048, weighted=True):
    """(b): per step, push the keys as ``_contrast`` does, draw negatives for one query
    of each class and weight them as ``anatomical_contrastive`` does (ω = e^{log ω}),
    and average ω × their first feature."""
    from vrsearch.losses.mona import negative_log_weights, sample_negative_indices
    from vrsearch.models.embedding import DenseEmbedding

    cls, out, emb = torch.arange(m.C), [], DenseEmbedding(rep_t)  # the method reads keys through .at()
    for r in range(R):
        g = gen(r)
        m._push_keys(emb, labels, g)
        bank = m.negatives
        k, slot, _ = sample_negative_indices(cls, bank.count, n_draws, g)
        log_w, log_scale = negative_log_weights(cls, bank.count, bank.weight)
        omega = (log_w[k, slot] + log_scale[:, None]).exp() if weighted else 1.0
        out.append((omega * bank.bank[k, slot, 0].double()).mean(1))
    return torch.stack(out)  # [R, C]


def test_arco_negatives_are_uniform_draws_from_the_other_classes():
    """(b) of the module doc: E[first feature of a negative of a class-c query] =
    mean over k ≠ c of the mean of class k's voxels (every class holds ``keys``
    entries, so the pool is class-balanced, as under NS)."""
    labels, _ = field(2, (8, 8, 6), 4, 3)
    _, rep_t = field(2, (8, 8, 6), 4, 3, seed=1)
    rep_t = rep_t.flip(1)  # another smooth field
    mu = torch.stack([rep_t[:, 0][labels == c].mean() for c in range(3)])
    truth = torch.stack([(mu.sum() - mu[c]) / 2 for c in range(3)])
    keys, R = 512, 120
    draws = {s: negative_means(arco(s, keys=keys, negative_bank_size=keys, grid=9), labels, rep_t, R) for s in SAMPLERS}
    for s, d in draws.items():
        for c in range(3):
            assert abs(z_score(d[:, c], float(truth[c]))) < Z, (s, c, float(d[:, c].mean()), float(truth[c]))
    for c in range(3):
        ok, v_sg, v_ns = var_not_above(draws["sg"][:, c], draws["ns"][:, c])
        assert ok, (c, v_sg, v_ns)
    # teeth: plain uniform draws from a bank filled by SG/SAG (its weights ignored) are caught
    plain = negative_means(arco("sag", keys=keys, negative_bank_size=keys, grid=9), labels, rep_t, R, weighted=False)
    assert max(abs(z_score(plain[:, c], float(truth[c]))) for c in range(3)) > 2 * Z


# -------------------------------------------------------------------------------------- DVCL
def dvcl_field():
    """Two labeled + two unlabeled 8×8×6 patches, C = 3, both networks' predictions,
    reliability masks and feature maps. Misclassified labeled voxels (the negatives,
    Eq. 10) carry one fixed feature per predicted class, so an anchor's N negatives
    are all the same vector; every other voxel has a smooth, network-specific feature."""
    labels, feats = field(4, (8, 8, 6), 4, 3)
    y = labels[:2]
    pred_a, pred_b = labels.clone(), labels.clone()
    grid = torch.arange(8 * 8 * 6).view(8, 8, 6)
    pred_a[:2][(grid % 7 == 0).expand(2, -1, -1, -1)] += 1  # some labeled voxels predicted wrongly
    pred_b[:2][(grid % 5 == 1).expand(2, -1, -1, -1)] += 2
    pred_a, pred_b = pred_a % 3, pred_b % 3
    pred_b[2:] = pred_b[2:].flip(1)  # the nets disagree on the unlabeled patches
    rel_a, rel_b = feats[2:, 0] > -0.2, feats[2:, 1] < 0.8
    negative = torch.tensor([[0.3, -1.0, 0.2, 0.4], [1.0, 0.1, -0.5, 0.3], [-0.2, 0.5, 1.0, -0.7]], dtype=torch.float64)
    r_a, r_b = feats.clone(), feats.flip(2).clone() + 0.3
    for r, pred in ((r_a, pred_a), (r_b, pred_b)):
        wrong = torch.zeros_like(pred, dtype=torch.bool)
        wrong[:2] = pred[:2] != y
        r.movedim(1, -1)[wrong] = negative[pred[wrong]]
    return y, pred_a, pred_b, rel_a, rel_b, r_a, r_b, negative


def dvcl_population(y, pred_a, pred_b, rel_a, rel_b, r_a, r_b, negative, n_neg: int, tau: float):
    """Eq. 8-11 by hand: the candidate set R_c (both nets), its raw-feature mean P_c, and
    the mean over classes of the mean over R_c of −log(e^{pos}/(e^{pos} + N e^{neg}))."""
    feats, cls = [], []
    for r, pred, rel in ((r_a, pred_a, rel_a), (r_b, pred_b, rel_b)):
        rv = r.movedim(1, -1)
        lab = pred[:2] == y
        feats += [rv[:2][lab], rv[2:][rel]]
        cls += [y[lab], pred[2:][rel]]
    feats, cls = torch.cat(feats), torch.cat(cls)
    centres = torch.stack([feats[cls == c].mean(0) for c in range(3)])
    a, pn, nn = F.normalize(feats, dim=-1), F.normalize(centres, dim=-1), F.normalize(negative, dim=-1)
    pos, neg = (a * pn[cls]).sum(-1) / tau, (a * nn[cls]).sum(-1) / tau
    ell = torch.logaddexp(pos, math.log(n_neg) + neg) - pos
    loss = float(torch.stack([ell[cls == c].mean() for c in range(3)]).mean())
    return centres, loss


def hqc_draws(m, case, centres, R):
    """R steps of ``DVCL._hqc`` on a fresh bank: the loss with ``P_c`` held at its
    population value, and the bank's own ``P_c`` estimate (its weighted mean)."""
    from vrsearch.components.banks import ClassFIFOBank

    y, pred_a, pred_b, rel_a, rel_b, r_a, r_b, _ = case
    fixed = (centres.float(), torch.ones(3, dtype=torch.bool))
    losses, estimates = [], []
    for r in range(R):
        m.bank.reset()
        m.bank.means = lambda: fixed  # (a): the anchors' average alone
        loss, _, _ = m._hqc(y, pred_a, pred_b, rel_a, rel_b, r_a, r_b, gen(r))
        del m.bank.means
        losses.append(float(loss))
        estimates.append(ClassFIFOBank.means(m.bank)[0].double())
    return torch.tensor(losses, dtype=torch.float64), torch.stack(estimates)


def dvcl(sampler: str):
    from tests.methods.common import build_method

    return build_method("dvcl", 10, sampler=sampler, grid=16, anchors=1024, negatives=4, bank_size=1024, tau=0.1)


def test_dvcl_hqc_anchors_and_class_centres_are_unbiased(monkeypatch):
    case = dvcl_field()
    centres, truth = dvcl_population(*case, n_neg=4, tau=0.1)
    R = 120
    draws = {s: hqc_draws(dvcl(s), case, centres, R) for s in SAMPLERS}
    for s, (loss, est) in draws.items():
        assert abs(z_score(loss, truth)) < Z, (s, float(loss.mean()), truth)
        for c, d in itertools.product(range(3), range(4)):  # P_c: raw features, weighted (Eq. 9)
            assert abs(z_score(est[:, c, d], float(centres[c, d]))) < Z, (s, c, d)
    ok, v_sg, v_ns = var_not_above(draws["sg"][0], draws["ns"][0])
    assert ok, (v_sg, v_ns)
    # teeth: the plain mean over SAG anchors, and a bank that ignores their weights, are caught
    import vrsearch.methods.dvcl as dvcl_mod

    weighted = dvcl_mod.hqc_loss
    monkeypatch.setattr(dvcl_mod, "hqc_loss", lambda *a: weighted(*a[:6]))
    m = dvcl("sag")
    push = m.bank.push
    m.bank.push = lambda x, c, w: push(x, c)
    loss, est = hqc_draws(m, case, centres, R)
    assert abs(z_score(loss, truth)) > 2 * Z
    assert max(abs(z_score(est[:, c, d], float(centres[c, d]))) for c in range(3) for d in range(4)) > 2 * Z
