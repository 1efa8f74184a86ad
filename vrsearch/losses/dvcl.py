"""DVCL losses (distance-aware voxel-wise contrastive learning; METHODS.md "DVCL";
paper ``papers/dvcl_distance_aware_vcl.txt``, Sec. 3.2-3.3, Eq. 2-17, App. J, Table 8).

Pure tensor functions, vectorised, shape-checked:

* :func:`esm` — entropy selection mechanism (Eq. 2-3): per network, the
  threshold ``τ_e = mean(e) + α·std(e)`` over the batch's unlabeled voxels;
  ``e < τ_e`` is reliable, the rest unreliable.
* :func:`ecps_weights` / :func:`ecps_loss` — entropy-weighted cross pseudo
  supervision (Eq. 4-5).
* :func:`hqc_loss` — the high-quality contrast InfoNCE (Eq. 11) of anchors
  against their class centre ``P_c`` and ``N`` negatives each.
* :func:`select_queries`, :func:`neighbours`, :func:`dvcl_terms` — the DVCL
  term (Eq. 13-17): ``K`` nearest / ``K'`` furthest entries of a FIFO queue
  of detached unreliable features, found with ``torch.topk`` on a
  (queries × queue) cosine matrix; the cost is O(Q·L) in the query cap Q
  and the queue length L, never |U_R|².

Rulings (where the paper is silent or inconsistent):

* Entropy is measured in bits, so ``e / log2 C`` in Eq. 4 is the normalised
  entropy in [0, 1] and the unreliable weights lie in [W_max/e, W_max].
* The search set ``U_R`` of Eq. 12-16 is the queue (Dwibedi et al.'s support
  set, as the paper says); ``|U_R|`` in the constant is the queue's length.
  The queue is searched *before* the step's queries are enqueued, so a query
  is never its own neighbour.
* The bound of Eq. 16 / App. J: ``ψ̄ − ψ = (K − K')·(log L + 1 − LSE_q p_m·p_q)``
  and the bracket is always ≥ 0 (``p_m·p_q ≤ 1``). Hence ``ψ ≤ ψ̄`` holds
  exactly when ``K ≥ K'``; for ``K < K'`` (the paper's best 10/15) the
  inequality reverses and ψ̄ is a lower bound. (App. J applies Jensen in the
  wrong direction; the final ``< log L + 1`` step is what holds.) The gap
  is constant in the parameters, so the gradients of ψ̄ are those of its
  first two terms: the optimised term excludes it and it is logged apart.
* Table 8's other forms. ``infonce``: each neighbour against all outsiders,
  ``−log(e^{s_mn} / (e^{s_mn} + Σ_{k∈D} e^{s_mk}))`` averaged over n ∈ C;
  ``simclr``: ``mean_{n∈C} −log softmax_C(s_m)_n + mean_{k∈D} log softmax_D(s_m)_k``;
  both on cosine similarities ``s = cos(r_m, r)/τ`` (Table 8 writes plain
  dot products of features, which are L2-normalised everywhere here).
  ``kl`` is written with the signs of a loss to *maximise*; we minimise
  ``mean_C KL(p_m‖p_n) − λ_kl·mean_D KL(p_m‖p_k)`` on probabilities
  (features are not distributions), with every probability clamped at
  ``1e-6`` inside the logarithms so the repulsion is bounded.
* ESM ties (``e = τ_e``) count as unreliable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vrsearch.core.knobs import DVCL_FORMS

FORMS = DVCL_FORMS
_KL_FLOOR = 1e-6


def entropy_bits(probs: torch.Tensor) -> torch.Tensor:
    """``−Σ p log2 p`` over dim 1 of ``probs [B, C, ...]`` (0·log 0 = 0)."""
    tiny = torch.finfo(probs.dtype).tiny
    return -(probs * torch.log2(probs.clamp_min(tiny))).sum(1)


def esm(probs: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy selection mechanism, Eq. 2-3, for one network.

    ``probs [U, C, *S]`` (unlabeled patches) → ``(entropy [U, *S] bits, reliable
    [U, *S] bool, τ_e scalar)`` with ``τ_e = mean(e) + α·std(e)`` (population
    std) over all voxels of the batch; a voxel is reliable iff ``e < τ_e``.
    Computed without gradient (a selection, not a loss)."""
    with torch.no_grad():
        e = entropy_bits(probs.float())
        tau = e.mean() + alpha * e.std(correction=0)
        return e, e < tau, tau


def ecps_weights(e: torch.Tensor, reliable: torch.Tensor, num_classes: int, w_max: float = 1.0) -> torch.Tensor:
    """Eq. 4: ``W_max`` on reliable voxels, ``W_max·exp(−e/log2 C)`` on unreliable ones."""
    if num_classes < 2:
        raise ValueError("ECPS weights need at least 2 classes")
    soft = w_max * torch.exp(-e / math.log2(num_classes))
    return torch.where(reliable, torch.full_like(soft, w_max), soft)


def ecps_loss(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    w_a: torch.Tensor,
    w_b: torch.Tensor,
    y_a: torch.Tensor | None = None,
    y_b: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 5: ``mean[W^B·CE(p^A, ŷ^B) + W^A·CE(p^B, ŷ^A)]`` over unlabeled voxels.

    Pseudo-labels ``ŷ = argmax`` (computed here unless the caller has them)
    and weights are detached, so the first product trains only A and the
    second only B (as in CPS)."""
    # max(1).indices: argmax's first index on ties, ~6× faster than argmax(1) on CPU
    y_a = logits_a.detach().max(1).indices if y_a is None else y_a
    y_b = logits_b.detach().max(1).indices if y_b is None else y_b
    ce_a = F.cross_entropy(logits_a, y_b, reduction="none")
    ce_b = F.cross_entropy(logits_b, y_a, reduction="none")
    return (w_b.detach() * ce_a + w_a.detach() * ce_b).mean()


def hqc_loss(
    anchors: torch.Tensor,
    anchor_cls: torch.Tensor,
    centres: torch.Tensor,
    negatives: torch.Tensor,
    neg_valid: torch.Tensor,
    tau: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 11, averaged over anchors (the paper's double sum, normalised).

    anchors ``[A, D]`` (with gradient), ``anchor_cls [A]``; ``centres [C, D]``
    the class centres ``P_c`` (Eq. 9: the mean of the bank's *raw* anchor
    features, detached); ``negatives [A, N, D]`` with ``neg_valid [A, N]`` (an
    anchor whose class has no misclassified voxel has no negatives and its term
    is 0). Cosine similarities: every vector, ``P_c`` included, is L2-normalised
    here and only here. ``weight [A]``: the sampler's weights of the anchors
    (default 1); the result is ``Σ w_a ℓ_a / Σ w_a`` — with weights that sum to 1
    per class (NS/SG/SAG draws) the mean over classes of unbiased estimates of
    each class's mean ``ℓ`` over its candidate anchors (Eq. 8)."""
    if anchors.shape[0] == 0:
        return anchors.sum() * 0.0
    a = F.normalize(anchors, dim=-1)
    pos = (a * F.normalize(centres[anchor_cls], dim=-1)).sum(-1, keepdim=True) / tau
    neg = torch.einsum("ad,and->an", a, F.normalize(negatives, dim=-1)) / tau
    neg = neg.masked_fill(~neg_valid, float("-inf"))
    logits = torch.cat([pos, neg], 1)
    nll = torch.logsumexp(logits, 1) - pos[:, 0]
    if weight is None:
        return nll.mean()
    w = weight.to(nll.dtype)
    return (w * nll).sum() / w.sum().clamp_min(torch.finfo(nll.dtype).tiny)


def select_queries(mask: torch.Tensor, cap: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat indices of at most ``cap`` voxels drawn uniformly without replacement
    from ``mask`` (any shape, bool). Memory is O(mask.numel()) for the random
    keys plus O(cap): independent of how many voxels are unreliable."""
    flat = mask.reshape(-1)
    n = flat.numel()
    if n == 0 or cap <= 0:
        return torch.zeros(0, dtype=torch.long, device=mask.device)
    keys = torch.rand(n, generator=generator, device=mask.device)
    keys = keys.masked_fill(~flat, -1.0)
    vals, idx = keys.topk(min(int(cap), n))
    return idx[vals >= 0]


def neighbours(query_r: torch.Tensor, queue_r: torch.Tensor, k: int, k_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 13: indices ``[Q, K]`` of the K most and ``[Q, K']`` of the K' least
    cosine-similar queue entries of every query (``torch.topk`` on Q × L)."""
    if queue_r.shape[0] < max(k, k_out):
        raise ValueError(
            f"the queue holds {queue_r.shape[0]} entries; K={k} and K'={k_out} need at least {max(k, k_out)}"
        )
    with torch.no_grad():
        sim = F.normalize(query_r.detach(), dim=-1) @ F.normalize(queue_r, dim=-1).T
        near = sim.topk(k, dim=1).indices
        far = sim.topk(k_out, dim=1, largest=False).indices
    return near, far


@dataclass
class DVCLTerms:
    """Per-query DVCL quantities (each ``[Q]``); ``loss`` carries the gradient."""

    loss: torch.Tensor  # the optimised part of the chosen form
    constant: torch.Tensor  # (K − K')(log L + 1): ψ̄ = loss + constant (loglik form)
    psi: torch.Tensor  # exact ψ of Eq. 15 (loglik form; no gradient)


def dvcl_terms(
    query_r: torch.Tensor,
    query_p: torch.Tensor,
    queue_r: torch.Tensor,
    queue_p: torch.Tensor,
    k: int,
    k_out: int,
    *,
    form: str = "loglik",
    tau: float = 1.0,
    kl_weight: float = 1.0,
) -> DVCLTerms:
    """DVCL term of every query (Eq. 12-17; Table 8 for the other forms).

    query_r ``[Q, D]`` / query_p ``[Q, C]``: features and softmax
    probabilities of the step's (sampled) unreliable voxels, with gradient;
    queue_r ``[L, D]`` / queue_p ``[L, C]``: the FIFO queue of earlier
    unreliable voxels, detached here. Neighbours are chosen by features,
    the ``loglik`` loss (default) uses probabilities:
    ``ψ̄ = −Σ_{n∈C} p_m·p_n + Σ_{k∈D} p_m·p_k + (K−K')(log L + 1)`` (Eq. 16)."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    queue_r, queue_p = queue_r.detach(), queue_p.detach()
    near, far = neighbours(query_r, queue_r, k, k_out)
    n_queue = queue_r.shape[0]
    constant = query_p.new_full((query_p.shape[0],), (k - k_out) * (math.log(n_queue) + 1.0))
    with torch.no_grad():
        dots = query_p.detach() @ queue_p.T  # [Q, L]: p_m · p_q over the search set
        pos_dot, neg_dot = dots.gather(1, near).sum(1), dots.gather(1, far).sum(1)
        psi = -pos_dot + neg_dot + (k - k_out) * torch.logsumexp(dots, 1)
    if form == "loglik":
        near_p, far_p = queue_p[near], queue_p[far]  # [Q, K, C], [Q, K', C]
        loss = -(query_p[:, None] * near_p).sum((1, 2)) + (query_p[:, None] * far_p).sum((1, 2))
    elif form == "kl":
        log_p = torch.log(query_p.clamp_min(_KL_FLOOR))
        log_q = torch.log(queue_p.clamp_min(_KL_FLOOR))
        own = (query_p * log_p).sum(1, keepdim=True)  # Σ p_m log p_m
        kl = own - query_p @ log_q.T  # [Q, L]: KL(p_m ‖ p_q)
        loss = kl.gather(1, near).mean(1) - kl_weight * kl.gather(1, far).mean(1)
    else:
        qr = F.normalize(query_r, dim=-1)
        s_near = torch.einsum("qd,qkd->qk", qr, F.normalize(queue_r[near], dim=-1)) / tau
        s_far = torch.einsum("qd,qkd->qk", qr, F.normalize(queue_r[far], dim=-1)) / tau
        if form == "infonce":  # each neighbour against all outsiders
            denom = torch.logaddexp(s_near, torch.logsumexp(s_far, 1, keepdim=True))
            loss = (denom - s_near).mean(1)
        else:  # simclr: softmax inside each set, pull the neighbours, push the outsiders
            loss = (torch.logsumexp(s_near, 1) - s_near.mean(1)) - (torch.logsumexp(s_far, 1) - s_far.mean(1))
    return DVCLTerms(loss=loss, constant=constant, psi=psi)
