"""Self-paced contrastive loss with meta-labels (SPCL).

Peng, Wang, Desrosiers, Pedersoli, "Self-paced contrastive learning for
semi-supervised medical image segmentation with meta-labels", NeurIPS 2021.
Equation numbers are the main paper's, as the supplement (Algorithm 1,
Sec. 3.2 and 4.5-4.6) cites them:

* Eq. (2), sample-wise supervised-contrastive term of a positive pair (i, j)::

      ℓ_ij = −log( exp(z_i·z_j/τ) / Σ_{a∈A(i)} exp(z_i·z_a/τ) ),   A(i) = {a ≠ i}

  with ``z`` L2-normalised global embeddings of the ``2N`` images of a batch
  (two views of ``N`` samples) and ``j ∈ P^k(i)`` = every other image with
  the same meta-label ``k`` (the other view of ``i`` included).
* Eq. (6), self-paced weight ``w*_ij = argmin_{w∈[0,1]} w·ℓ_ij + R_γ(w)`` in
  closed form: hard ``R = −γw`` → ``w = 1[ℓ_ij < γ]``; linear
  ``R = γ(w²/2 − w)`` → ``w = max(0, 1 − ℓ_ij/γ)``. **Ruling** (METHODS.md):
  the weights are computed in closed form and *detached*, so the gradient is
  ``Σ w_ij ∇ℓ_ij`` (alternating optimisation of w and θ, as self-paced
  learning does).
* Eq. (3), ``L_sp^k = 1/(2N) Σ_i 1/|P^k(i)| Σ_{j∈P^k(i)} (w_ij ℓ_ij + R_γ(w_ij))``.
  A sample with no positive (``P^k(i) = ∅``) contributes 0 but still counts
  in ``2N`` (it cannot be a positive pair's anchor; it remains a negative of
  the others through ``A(i)``).
* Eq. (14), ``Σ_k λ_k L_sp^k`` over the meta-labels used.
* Eq. (16) ramps γ from ``γ_start`` to ``γ_end``; with the supplement's
  "linear strategy" (Sec. 4.5) that is :func:`linear_gamma`.

Everything is vectorised over the ``2N × 2N`` pair matrix.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from vrsearch.core.knobs import SPCLWeighting

Weighting = SPCLWeighting


def linear_gamma(it: int, total: int, start: float, end: float) -> float:
    """γ at iteration ``it`` of ``total``: linear from ``start`` (it = 0) to ``end``
    (it = total − 1, and after) — the linear learning-pace scheduler of Eq. (16)."""
    if total <= 1:
        return float(end)
    t = min(max(it / (total - 1), 0.0), 1.0)
    return float(start + (end - start) * t)


def pairwise_contrastive_terms(z: torch.Tensor, tau: float) -> torch.Tensor:
    """``ℓ[i, j]`` of Eq. (2) for every ordered pair of ``z`` ``[M, D]`` (M = 2N).

    ``z`` is L2-normalised here. The diagonal (``j = i``) is not a pair and is
    set to 0; callers mask it out."""
    if z.dim() != 2:
        raise ValueError(f"embeddings must be [M, D], got {tuple(z.shape)}")
    if tau <= 0:
        raise ValueError(f"temperature must be > 0, got {tau}")
    z = F.normalize(z, dim=1)
    logits = z @ z.t() / tau
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    log_denominator = torch.logsumexp(logits.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    return (log_denominator - logits).masked_fill(eye, 0.0)


def self_paced_weights(ell: torch.Tensor, gamma: float, weighting: Weighting) -> torch.Tensor:
    """Closed-form minimiser of Eq. (6) over ``w ∈ [0, 1]``, detached (Ruling)."""
    if gamma <= 0:
        raise ValueError(f"learning pace gamma must be > 0, got {gamma}")
    ell = ell.detach()
    if weighting == "hard":
        return (ell < gamma).to(ell.dtype)
    if weighting == "linear":
        return (1.0 - ell / gamma).clamp(min=0.0)
    raise ValueError(f"unknown self-paced weighting {weighting!r} (hard | linear)")


def self_paced_regularizer(w: torch.Tensor, gamma: float, weighting: Weighting) -> torch.Tensor:
    """``R_γ(w)``: hard ``−γw``; linear ``γ(w²/2 − w)``."""
    if weighting == "hard":
        return -gamma * w
    if weighting == "linear":
        return gamma * (0.5 * w * w - w)
    raise ValueError(f"unknown self-paced weighting {weighting!r} (hard | linear)")


def positive_mask(labels: torch.Tensor) -> torch.Tensor:
    """``P[i, j] = (label_i == label_j) and i ≠ j`` for integer meta-labels ``[M]``."""
    if labels.dim() != 1:
        raise ValueError(f"meta-labels must be [M], got {tuple(labels.shape)}")
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)


def self_paced_contrastive_loss(
    z: torch.Tensor,
    labels: torch.Tensor,
    *,
    tau: float,
    gamma: float,
    weighting: Weighting = "linear",
    ell: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L_sp^k`` of Eq. (3) for one meta-label.

    z: ``[M, D]`` embeddings of the ``M = 2N`` images; labels: ``[M]`` integer
    meta-labels. ``ell`` may pass a precomputed :func:`pairwise_contrastive_terms`
    (shared by every meta-label of a batch). Returns the loss and detached
    statistics: ``mean_weight`` (mean of ``w_ij`` over the positive pairs)
    and ``pairs`` (their number)."""
    if labels.shape != (z.shape[0],):
        raise ValueError(f"meta-labels {tuple(labels.shape)} do not match embeddings {tuple(z.shape)}")
    if ell is None:
        ell = pairwise_contrastive_terms(z, tau)
    pos = positive_mask(labels).to(ell.dtype)
    w = self_paced_weights(ell, gamma, weighting)
    per_pair = (w * ell + self_paced_regularizer(w, gamma, weighting)) * pos
    count = pos.sum(dim=1)
    per_anchor = per_pair.sum(dim=1) / count.clamp(min=1.0)  # anchors without a positive give 0
    loss = per_anchor.sum() / z.shape[0]
    n_pairs = pos.sum()
    mean_w = (w * pos).sum() / n_pairs.clamp(min=1.0)
    return loss, {"mean_weight": mean_w.detach(), "pairs": n_pairs.detach()}


def multi_meta_label_loss(
    z: torch.Tensor,
    labels: Mapping[str, torch.Tensor],
    lambdas: Mapping[str, float],
    *,
    tau: float,
    gamma: float,
    weighting: Weighting = "linear",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``Σ_k λ_k L_sp^k`` (Eq. 14) over the meta-labels in ``labels``.

    Returns the total and detached terms: ``<k>`` = ``L_sp^k`` (unweighted)
    per meta-label and ``mean_weight`` = mean self-paced weight over every
    meta-label's positive pairs."""
    if not labels:
        raise ValueError("at least one meta-label is needed")
    ell = pairwise_contrastive_terms(z, tau)
    total = z.new_zeros(())
    terms: dict[str, torch.Tensor] = {}
    weight_sum, pair_sum = z.new_zeros(()), z.new_zeros(())
    for name, lab in labels.items():  # a handful of meta-labels, not pairs
        loss, stats = self_paced_contrastive_loss(z, lab, tau=tau, gamma=gamma, weighting=weighting, ell=ell)
        total = total + float(lambdas[name]) * loss
        terms[name] = loss.detach()
        weight_sum = weight_sum + stats["mean_weight"] * stats["pairs"]
        pair_sum = pair_sum + stats["pairs"]
    terms["mean_weight"] = (weight_sum / pair_sum.clamp(min=1.0)).detach()
    return total, terms


__all__ = [
    "Weighting",
    "linear_gamma",
    "multi_meta_label_loss",
    "pairwise_contrastive_terms",
    "positive_mask",
    "self_paced_contrastive_loss",
    "self_paced_regularizer",
    "self_paced_weights",
]
