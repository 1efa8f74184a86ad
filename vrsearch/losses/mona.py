"""MONA / ARCO stage-2 losses: anatomical contrast, equivariance, kNN (stage 1's
relational KL is :mod:`vrsearch.losses.mona_instance`).

You, Dai, Min, Staib, Duncan, "Mine yOur owN Anatomy: revisiting medical image
segmentation with extremely limited labels" (MONA), and You et al., "Rethinking
semi-supervised medical image segmentation: a variance-reduction perspective"
(ARCO, NeurIPS 2023). Equation numbers are the papers'; METHODS.md ("MONA",
"ARCO") and its Rulings decide where the papers are ambiguous.

* :func:`anatomical_contrastive`: ``L_contrast`` (tailness), MONA Eq. (3)-(5)
  = ARCO Eq. (E.2)-(E.3), negatives from a class-aware memory bank.
* :func:`equivariance_kl`: ``L_eqv`` (consistency), MONA Eq. (6).
* :func:`knn_loss`: ``L_nn`` (diversity), MONA Sec. 3.2 "Diversity" / ARCO
  App. E "(2) Diversity" (no equation number in either paper).
* :func:`loss_spread`: a per-step variance estimate of a stochastic loss, for
  ARCO's Fig. 5 study (training-loss spread per sampler; Thm. 3.2 compares
  sampler variances).

Every similarity is cosine (METHODS.md: embeddings are L2-normalised before
any cosine or dot product), so MONA Eq. (3)'s dot products ``r_q · r_k`` are
taken between L2-normalised vectors. Log-probabilities are ``log_softmax`` /
``logsumexp`` throughout (float32-safe at τ = 0.01, where logits reach ±100).
Memory banks are constants: their entries are detached here whatever the
caller passes. Empty inputs give an exact 0 that still has a graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vrsearch.losses.mona_instance import check_2d as _check_2d
from vrsearch.losses.sampled_dot import sampled_dot


def sample_negative_indices(
    query_cls: Tensor,
    negative_count: Tensor,
    num_negatives: int,
    generator: torch.Generator | None = None,
    slots: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw ``num_negatives`` bank entries per query, uniformly with replacement
    from the pooled entries of the classes other than the query's.

    The pool of a class-``c`` query is ``{(k, s): k ≠ c, s < negative_count[k]}``,
    of size ``P_c``, listed class-major (classes in order, slots in order); a draw
    ``r ~ U{0..P_c−1}`` is entry ``r`` of that list. The list is the bank's
    class-major list of stored entries with class ``c``'s block removed, so entry
    ``r`` is position ``r`` of the whole list, or ``r + n_c`` once ``r`` reaches the
    start of that block: one lookup per draw in a table of the stored entries
    (vectorised, no search). ``slots`` (the bank's capacity per class, so every
    ``negative_count[k] ≤ slots``) sizes that table without reading the counts on
    the host; without it the table has exactly the stored entries. Returns
    ``(cls [Q, n], slot [Q, n], has_pool [Q] bool)``; rows with an empty pool hold
    the dummy entry (0, 0). Consumes ``Q·n`` integers of ``generator``."""
    if num_negatives < 1:
        raise ValueError("num_negatives must be >= 1")
    dev = negative_count.device
    C, Q = negative_count.shape[0], query_cls.shape[0]
    cls = query_cls.to(dev, torch.long)
    counts = negative_count.to(torch.long)
    ends = counts.cumsum(0)
    starts, total = ends - counts, ends[-1:].sum()  # total: 0 without classes
    own, own_start = counts[cls], starts[cls]  # [Q]
    pool = total - own
    gen_dev = generator.device if generator is not None else dev
    raw = torch.randint(0, 2**62, (Q, num_negatives), generator=generator, device=gen_dev).to(dev)
    r = raw % pool.clamp_min(1)[:, None]  # uniform on [0, P_c) up to a 2^-62 modulo bias
    at = r + own[:, None] * (r >= own_start[:, None])  # position in the whole list: skip the own block
    # position -> (class, slot) over the list; positions past the stored entries are never read,
    # and one more, the dummy (0, 0), serves rows without a pool
    size = C * slots if slots is not None else int(total)
    entry_cls = torch.searchsorted(ends, torch.arange(size, device=dev), right=True).clamp_max(max(C - 1, 0))
    entry_slot = torch.arange(size, device=dev) - starts[entry_cls] if C else entry_cls
    zero = torch.zeros(1, dtype=torch.long, device=dev)
    has_pool = pool > 0
    at = torch.where(has_pool[:, None], at, size).view(-1)

    def lookup(table: Tensor) -> Tensor:  # index_select: on the CPU several times faster than indexing
        return torch.cat([table, zero]).index_select(0, at).view(Q, num_negatives)

    return lookup(entry_cls), lookup(entry_slot), has_pool


def negative_log_weights(query_cls: Tensor, negative_count: Tensor, negative_weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(log w [C, S], log(P_c/W_c) [Q])``: a bank entry ``e`` drawn uniformly from the
    pool of a class-``c`` query (``P_c`` entries of total weight ``W_c``) gets the
    importance weight ``ω_e = w_e · P_c / W_c`` (``log w = −inf`` at empty slots and
    weight 0).

    Why: bank entries drawn by SG/SAG carry the sampler's weights
    (:mod:`vrsearch.components.banks`); then ``E[ω_e g(e)] = Σ_pool w g / Σ_pool w``,
    the weighted pool mean, which is unbiased for the (class-balanced) mean of
    ``g`` over the other classes' voxels. With every weight 1, ``ω = 1``."""
    dev = negative_count.device
    S = negative_weight.shape[1]
    stored = torch.arange(S, device=dev)[None, :] < negative_count.to(torch.long)[:, None]  # [C, S]
    w = torch.where(stored, negative_weight.to(dev, torch.float64), 0.0)
    cls = query_cls.to(dev, torch.long)
    n_class, w_class = stored.sum(1), w.sum(1)
    pool_n, pool_w = n_class.sum() - n_class[cls], w_class.sum() - w_class[cls]  # P_c, W_c per query
    return torch.log(w), torch.log(pool_n / pool_w.clamp_min(torch.finfo(torch.float64).tiny))


def _check_contrast_shapes(
    queries: Tensor,
    query_cls: Tensor,
    positives: Tensor,
    positive_valid: Tensor,
    negatives: Tensor,
    negative_count: Tensor,
    tau: float,
) -> None:
    _check_2d("queries", queries)
    Q, D = queries.shape
    if query_cls.shape != (Q,):
        raise ValueError(f"query_cls must be [{Q}], got {tuple(query_cls.shape)}")
    _check_2d("positives", positives, D)
    C = positives.shape[0]
    if positive_valid.shape != (C,) or negative_count.shape != (C,):
        raise ValueError(
            f"positive_valid and negative_count must be [{C}], got "
            f"{tuple(positive_valid.shape)} and {tuple(negative_count.shape)}"
        )
    if negatives.dim() != 3 or negatives.shape[0] != C or negatives.shape[2] != D:
        raise ValueError(f"negatives must be [{C}, S, {D}], got {tuple(negatives.shape)}")
    if tau <= 0:
        raise ValueError("tau must be > 0")


def anatomical_contrastive(
    queries: Tensor,
    query_cls: Tensor,
    positives: Tensor,
    positive_valid: Tensor,
    negatives: Tensor,
    negative_count: Tensor,
    tau: float = 0.5,
    num_negatives: int | None = None,
    generator: torch.Generator | None = None,
    *,
    query_weight: Tensor | None = None,
    negative_weight: Tensor | None = None,
) -> Tensor:
    """Anatomical contrastive loss ``L_contrast`` (MONA Eq. 3-5, ARCO Eq. E.2-E.3).

    For a query ``r_q`` (``queries [Q, D]``) of class ``c = query_cls[q]``::

        ℓ_q = −log( e^{r_q·r_k^{c,+}/τ} / (e^{r_q·r_k^{c,+}/τ} + Σ_{r_k^-} e^{r_q·r_k^-/τ}) )

    with the positive key ``r_k^{c,+} = positives[c]`` (the class-mean
    embedding of Eq. 4, computed by the caller) and negatives ``r_k^-`` from
    the class-aware memory bank (MONA Sec. 3.2, after Eq. 5): ``negatives
    [C, S, D]`` whose valid entries of class ``k`` are
    ``negatives[k, :negative_count[k]]``. With ``num_negatives=None`` the
    negatives are *all* valid entries of the classes ``k ≠ c``; otherwise
    ``num_negatives`` entries drawn per query uniformly with replacement from
    that pool (:func:`sample_negative_indices`, ``generator``).

    Decisions: ``·`` is cosine similarity (L2-normalised inside). Eq. (3) sums
    over classes and queries; we take the weighted mean ``Σ w_q ℓ_q / Σ w_q``
    over the *counted* queries, those whose class has ``positive_valid`` (the
    query selection, e.g. hard queries with confidence ≤ δ, Eq. 5, and the
    per-class query budget are the caller's). ``query_weight [Q]`` are the
    sampler's weights (default 1: the plain mean); they sum to 1 per class for
    every NS/SG/SAG draw (:mod:`vrsearch.components.samplers`), so the loss is
    the mean over counted classes of an unbiased estimate of the class's mean
    ``ℓ`` over its (hard) voxels. ``negative_weight [C, S]`` are the bank
    entries' weights (default 1): a negative ``e`` enters the denominator as
    ``ω_e e^{s_e}`` with ``ω = w · P_c / W_c`` (:func:`negative_log_weights`), so
    a sum over ``n`` uniform draws (or over the whole pool, ``P_c`` entries)
    estimates ``n`` (``P_c``) times the weighted pool mean of ``e^s``; with every
    weight 1 this is the plain sum. A counted query with an empty negative
    pool contributes ``−log 1 = 0`` (as in :mod:`vrsearch.losses.lcl`).
    Gradient reaches ``queries`` and ``positives`` (detach positives to stop
    it); bank ``negatives`` are detached. 0 with a graph when nothing counts.
    """
    _check_contrast_shapes(queries, query_cls, positives, positive_valid, negatives, negative_count, tau)
    (Q, D), (C, S, _), dev = queries.shape, negatives.shape, queries.device
    cls = query_cls.to(dev, torch.long)
    counted = positive_valid.to(dev, torch.bool)[cls]  # [Q]
    q = F.normalize(queries, dim=1)
    pos = (q * F.normalize(positives, dim=1)[cls]).sum(dim=1) / tau  # [Q]
    keys = F.normalize(negatives.detach().to(q.dtype).reshape(C * S, D), dim=1)
    count = negative_count.to(dev, torch.long)
    nw = torch.ones(C, S, device=dev) if negative_weight is None else negative_weight.detach()
    log_w, log_scale = (t.to(q.dtype) for t in negative_log_weights(cls, count, nw))  # log ω = log w + log_scale
    log_w = log_w.reshape(-1)
    if num_negatives is None:
        own = torch.arange(C, device=dev).repeat_interleave(S)[None, :] == cls[:, None]  # [Q, C*S]
        sim = q @ keys.T / tau  # [Q, C*S]: one matmul against the whole bank
        neg = (sim + log_w[None, :] + log_scale[:, None]).masked_fill(own, float("-inf"))
    else:
        k, slot, has_pool = sample_negative_indices(cls, count, num_negatives, generator, slots=S)
        idx = k * S + slot
        sim = sampled_dot(q, keys, idx) / tau  # [Q, n]: only the drawn pairs
        neg = sim + log_w.index_select(0, idx.view(-1)).view(idx.shape) + log_scale[:, None]
        neg = neg.masked_fill(~has_pool[:, None], float("-inf"))
    logits = torch.cat([pos[:, None], neg], dim=1)
    nll = torch.logsumexp(logits, dim=1) - pos  # −log of the Eq. (3) ratio
    w = torch.ones_like(nll) if query_weight is None else query_weight.to(dev, nll.dtype)
    if w.shape != (Q,):
        raise ValueError(f"query_weight must be [{Q}], got {tuple(w.shape)}")
    w = torch.where(counted, w, torch.zeros_like(w))
    return (w * nll).sum() / w.sum().clamp_min(torch.finfo(nll.dtype).tiny)


def equivariance_kl(f_tx: Tensor, t_fx: Tensor, mask: Tensor | None = None) -> Tensor:
    """Equivariance loss ``L_eqv`` (MONA Eq. 6), symmetric KL of two logit maps.

    ``f_tx = F(T(x))`` and ``t_fx = T(F(x))``, logits ``[B, C, *S]``; with
    ``p = softmax_C(f_tx)``, ``q = softmax_C(t_fx)`` per voxel::

        L = mean_voxels ½ [KL(p ‖ q) + KL(q ‖ p)] = mean_voxels ½ Σ_c (p − q)(log p − log q)

    Decisions: Eq. (6) sums the two KLs over images; METHODS.md asks for the
    symmetric KL, which we scale by ½ and average over voxels (and images) so
    that λ2 does not depend on the patch size. Both inputs carry gradient
    (Eq. 6 has no stop-gradient). ``mask [B, *S]`` (optional, bool or
    weights) restricts the mean, e.g. to voxels inside the field of view of
    an affine ``T``; 0 with a graph when it is empty.
    """
    if f_tx.shape != t_fx.shape or f_tx.dim() < 2:
        raise ValueError(f"f_tx {tuple(f_tx.shape)} and t_fx {tuple(t_fx.shape)} must both be [B, C, *S]")
    lp, lq = f_tx.log_softmax(dim=1), t_fx.log_softmax(dim=1)
    sym = 0.5 * ((lp.exp() - lq.exp()) * (lp - lq)).sum(dim=1)  # [B, *S]
    if mask is None:
        return sym.mean()
    if mask.shape != sym.shape:
        raise ValueError(f"mask must be {tuple(sym.shape)}, got {tuple(mask.shape)}")
    w = mask.to(sym.dtype)
    return (sym * w).sum() / w.sum().clamp_min(torch.finfo(sym.dtype).tiny)


def knn_loss(z: Tensor, bank: Tensor, k: int = 5) -> Tensor:
    """Nearest-neighbour loss ``L_nn`` (MONA Sec. 3.2 "Diversity"; ARCO App. E).

    ``z [N, D]`` student embeddings, ``bank [M, D]`` a FIFO memory bank. Both
    are L2-normalised; for each ``z_i`` its ``k`` most cosine-similar bank
    entries (``torch.topk`` on the ``N × M`` similarity; ``k`` clipped to
    ``M``) are the neighbours and::

        L = mean_i mean_{n ∈ kNN(i)} ||z_i − b_n||²   (= 2 − 2 cos on the unit sphere)

    so MONA's MSE and ARCO's "maximising cosine similarity" coincide. ``||·||²``
    is the squared norm summed over ``D`` (not averaged). Decisions: the
    gradient flows into ``z`` (MONA's public code does not back-propagate
    here; METHODS.md's loss must); bank entries are detached constants.
    0 with a graph when ``M == 0`` or ``N == 0``.
    """
    _check_2d("z", z)
    _check_2d("bank", bank, z.shape[1])
    if k < 1:
        raise ValueError("k must be >= 1")
    kk = min(int(k), bank.shape[0])
    if kk == 0 or z.shape[0] == 0:
        return z.sum() * 0.0
    zn = F.normalize(z, dim=1)
    b = F.normalize(bank.detach().to(z.dtype), dim=1)
    with torch.no_grad():
        idx = torch.topk(zn @ b.T, kk, dim=1).indices  # [N, k]
    return (zn[:, None, :] - b[idx]).pow(2).sum(dim=-1).mean()


def loss_spread(a: Tensor, b: Tensor) -> Tensor:
    """Sampling-variance estimate ``(a − b)² / 2`` of a stochastic loss from two
    independent draws ``a``, ``b`` (same inputs, independent samples): unbiased
    for ``Var`` when ``a`` and ``b`` are i.i.d., since ``E(a − b)² = 2 Var``.
    Elementwise over equal shapes; detached (a diagnostic, never a loss term)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have one shape")
    return (a.detach() - b.detach()) ** 2 / 2


__all__ = [
    "anatomical_contrastive",
    "equivariance_kl",
    "knn_loss",
    "loss_spread",
    "negative_log_weights",
    "sample_negative_indices",
]
