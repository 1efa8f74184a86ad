"""Local contrastive loss on (pseudo-)labels (LCL; Chaitanya et al. 2023).

Chaitanya, Erdil, Karani, Konukoglu, "Local contrastive loss with
pseudo-label based self-training for semi-supervised medical image
segmentation", Medical Image Analysis 87 (2023). Eq. (3) and (4)::

    L_cont((x,y),(x',y')) = 1/C Σ_c 1/|S̃_c(x)| Σ_{i∈S̃_c(x)} −log L_{i,c}
    L_{i,c} = e^{sim(z_i, z̄_c(x'))/τ} / (e^{sim(z_i, z̄_c(x'))/τ} + Σ_{k≠c} e^{sim(z_i, z̄_k(x'))/τ})

with ``z̄_c(x') = 1/|S_c(x')| Σ_{j∈S_c(x')} z_j`` the mean embedding of class c
over *all* voxels of class c in x' (Eq. 3, second line) and ``sim`` the cosine
similarity. Decisions where the paper is silent or ambiguous:

* The paper prints the ratio L_{i,c} itself; METHODS.md rules that its
  negative log is minimised.
* ``z̄_c`` is the mean of the raw embeddings, then compared by cosine (the
  paper's formula); ``normalize_first=True`` averages L2-normalised
  embeddings instead. Either way the mean is L2-normalised before the dot
  product. Means are **not** detached: the paper's loss differentiates
  through them, so every voxel of class c in x' receives gradient.
* Classes: the paper sums c over the C *foreground* structures ("S_c(x) ...
  a foreground class c, 1 ≤ c ≤ C", C = 3 for ACDC), and the negatives k ≠ c
  range over the same classes. ``classes`` (default ``1..num_classes-1``)
  names the eligible classes; pass ``range(num_classes)`` to add background.
* A class c is *used* for the pair (x, x') when it has sampled anchors in x
  and at least one voxel in x'; other classes are skipped and the 1/C
  averages over the classes used. Negatives k are the eligible classes
  present in x'. A used class with no negative contributes −log 1 = 0.
* ``project=(W, b)``: ``emb`` is the feature head's input to its last 1×1
  convolution (``u``) and ``z = W u + b`` voxel by voxel. As the mean is linear,
  ``z̄_c = W ū_c + b``, and an anchor needs ``z`` only at its own voxel: the
  last convolution then runs on K means and the anchors instead of every voxel
  — the same loss and gradients (``tests/losses/test_lcl.py`` compares both
  paths), not with ``normalize_first``, which needs every voxel's ``z``.
* Anchors carry the sampler's weights: each 1/|S̃_c(x)| mean is the weighted
  mean Σ w_i ℓ_i / Σ w_i (the plain mean for equal weights).
* Eq. (2) averages L_cont over pairs; images with no used class are skipped
  (mean over the images that contribute; 0 with a graph when none does).
* Matching (x' of image b is image (b+1) mod B of the batch; callers shuffle
  the batch to make the pairs random; with B = 1, x' = x and every matching
  equals ``intra``):

  - ``intra``: x' = x, the class means of the anchor's own image (Eq. 3-4 with
    (x, y) = (x', y')).
  - ``inter`` — **Ruling (METHODS.md, 2026-12)**: the class means of *both*
    images are pooled, as the paper's Sec. III prose says ("for similar pairs,
    the mean representation of a class is computed from within the same image
    as well as from different images in the batch. Similarly, the dissimilar
    mean representations ...") and as the authors' public code computes it.
    An anchor i of class c in x has one term per positive ``p ∈ {z̄_c(x),
    z̄_c(x')}`` present, each ``−log(e^{sim(z_i,p)/τ} / Σ_{m∈M} e^{sim(z_i,m)/τ})``
    over the pool ``M = {z̄_k(x)} ∪ {z̄_k(x')}`` of the eligible classes present
    in either image (so the other positive sits in the denominator too, as in
    the authors' code), and ``ℓ_i`` is the mean of its terms (one or two). The
    class is used whenever it has anchors in x: its own mean always exists.
  - ``partner``: the earlier ruling, kept as an ablation arm: Eq. 3-4 with the
    means of x' only; a class is used only if it is present in x' too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, NamedTuple, Protocol

import torch
import torch.nn.functional as F

Matching = Literal["intra", "inter", "partner"]
MATCHINGS = ("intra", "inter", "partner")


class Anchors(Protocol):
    """Sampled anchor voxels (e.g. :class:`vrsearch.components.samplers.VoxelSample`): flat
    ``index`` into ``labels.reshape(-1)``, image ``batch`` and class ``cls`` (``[N]`` each);
    an optional ``weight [N]`` attribute is read when present."""

    index: torch.Tensor
    batch: torch.Tensor
    cls: torch.Tensor


class LCLStats(NamedTuple):
    loss: torch.Tensor
    #: mean number of classes used per contributing image (detached)
    n_classes: torch.Tensor
    #: images that contributed
    n_images: int
    #: anchors that contributed
    n_anchors: int
    #: the loss of each image (Eq. 3 for its pair; NaN where no class is used), detached
    per_image: torch.Tensor | None = None


def _unpack(
    sample: Anchors | tuple[torch.Tensor, ...] | list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(batch, index, cls, weight) from a VoxelSample-like object or a 3/4-tuple."""
    if isinstance(sample, (tuple, list)):
        batch, index, cls, *rest = sample
        weight = rest[0] if rest else None
    else:
        batch, index, cls = sample.batch, sample.index, sample.cls
        weight = getattr(sample, "weight", None)
    batch, index, cls = (t.to(device=device, dtype=torch.long) for t in (batch, index, cls))
    if weight is None:
        weight = torch.ones(index.shape[0], device=device)
    if not batch.shape == index.shape == cls.shape == weight.shape or index.dim() != 1:
        raise ValueError("sample batch/index/cls/weight must be 1-D tensors of one length")
    return batch, index, cls, weight.to(device)


Projection = tuple[torch.Tensor, torch.Tensor]


def class_means(
    emb: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    normalize_first: bool = False,
    matmul: bool | None = None,
    project: Projection | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(means [B, K, V] L2-normalised, counts [B, K])`` of every class per image.

    Sums are a ``scatter_add`` on CPU and a one-hot batched matmul on other
    devices (``matmul=None``), both deterministic; absent classes get a zero
    mean and count 0. With ``project=(W, b)`` the sums are of ``u`` and the raw
    means ``(W Σu + b·n) / n`` (module doc)."""
    if project is not None and normalize_first:
        raise ValueError("normalize_first needs every voxel's embedding: no project")
    B, V = emb.shape[:2]
    # sums and counts over every voxel in float32 at least, autocast off: a bf16 count stops
    # being exact above 256, and with ``project`` the count scales the bias (W Σu + n·b)
    stat = torch.promote_types(emb.dtype, torch.float32)
    with torch.autocast(emb.device.type, enabled=False):
        feats = emb.reshape(B, V, -1).to(stat)  # [B, V, N]
        if normalize_first:
            feats = F.normalize(feats, dim=1)
        lab = labels.reshape(B, 1, -1).long()
        if matmul if matmul is not None else feats.device.type != "cpu":
            onehot = (lab.transpose(1, 2) == torch.arange(num_classes, device=lab.device)).to(stat)  # [B, N, K]
            sums = torch.bmm(feats, onehot)  # [B, V, K]
        else:
            sums = feats.new_zeros(B, V, num_classes).scatter_add(2, lab.expand(B, V, -1), feats)
        counts = torch.zeros(B, num_classes, dtype=stat, device=feats.device)
        counts = counts.scatter_add(1, lab[:, 0], torch.ones_like(lab[:, 0], dtype=stat))
        sums = sums.transpose(1, 2)  # [B, K, V]
        if project is not None:
            weight, bias = project
            sums = sums @ weight.to(stat).t() + counts.unsqueeze(-1) * bias.to(stat)
        means = sums / counts.clamp_min(1.0).unsqueeze(-1)
        return F.normalize(means, dim=-1), counts


def local_contrastive_terms(
    emb: torch.Tensor,
    labels: torch.Tensor,
    sample: Anchors | tuple[torch.Tensor, ...] | list[torch.Tensor],
    num_classes: int,
    tau: float = 0.1,
    matching: Matching = "intra",
    classes: Iterable[int] | None = None,
    normalize_first: bool = False,
    project: Projection | None = None,
) -> LCLStats:
    """Eq. (3)-(4) averaged over the pairs of a batch (Eq. 2); see the module doc.

    emb ``[B, V, *S]`` (raw feature-head output; with ``project=(W [V', V], b [V'])``
    the input of its last 1×1 convolution), labels ``[B, *S]`` integer
    (labels or pseudo-labels), sample: anchors as flat indices into
    ``labels.reshape(-1)`` with their image and class (a ``VoxelSample`` or a
    ``(batch, index, cls[, weight])`` tuple)."""
    _check_args(emb, labels, matching, tau)
    B, V, K, dev = emb.shape[0], emb.shape[1], num_classes, emb.device
    batch, index, cls, weight = _unpack(sample, dev)
    eligible = torch.zeros(K, dtype=torch.bool, device=dev)
    wanted = list(range(1, K)) if classes is None else list(classes)
    eligible[torch.as_tensor(wanted, dtype=torch.long, device=dev)] = True

    means, counts = class_means(emb, labels, K, normalize_first, project=project)
    present = (counts > 0) & eligible  # [B, K]: classes with a mean in each image
    partner = batch if matching == "intra" or B == 1 else (batch + 1) % B
    source = partner if matching == "partner" else batch  # the image whose means Eq. (4) uses
    keep = eligible[cls] & present[source, cls]  # the anchor's class has a positive there
    batch, index, cls, weight, partner, source = (t[keep] for t in (batch, index, cls, weight, partner, source))

    voxel = index - batch * (labels[0].numel())
    anchors = emb.reshape(B, V, -1)[batch, :, voxel]  # [M, V], no copy of emb
    if project is not None:
        anchors = anchors @ project[0].t() + project[1]
    anchors = F.normalize(anchors, dim=-1)
    pooled = matching == "inter" and B > 1
    nll = _anchor_nll(anchors, means, present, cls, source, partner if pooled else None, tau)
    graph = emb.sum() if project is None else emb.sum() + project[0].sum() + project[1].sum()
    return _reduce(nll, batch * K + cls, weight, (B, K), graph, int(index.shape[0]))


def _check_args(emb: torch.Tensor, labels: torch.Tensor, matching: str, tau: float) -> None:
    if emb.dim() < 3 or labels.shape != (emb.shape[0], *emb.shape[2:]):
        raise ValueError(f"labels {tuple(labels.shape)} must be emb {tuple(emb.shape)} without the channel axis")
    if matching not in MATCHINGS:
        raise ValueError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    if tau <= 0:
        raise ValueError("tau must be > 0")


def _anchor_nll(
    anchors: torch.Tensor,
    means: torch.Tensor,
    present: torch.Tensor,
    cls: torch.Tensor,
    source: torch.Tensor,
    partner: torch.Tensor | None,
    tau: float,
) -> torch.Tensor:
    """−log L_{i,c} of every anchor (Eq. 4) against the class means of image ``source``;
    with ``partner`` (``inter`` matching) the softmax pools the means of both images and
    the two positives' terms are averaged (module doc)."""

    def logits_against(image: torch.Tensor) -> torch.Tensor:  # [M, K], −inf where a class is absent
        out = torch.einsum("mv,mkv->mk", anchors.to(means.dtype), means[image]) / tau
        return out.masked_fill(~present[image], float("-inf"))

    own = logits_against(source)
    if partner is None:
        return -own.log_softmax(dim=1).gather(1, cls[:, None])[:, 0]
    other = logits_against(partner)
    lse = torch.logsumexp(torch.cat([own, other], dim=1), dim=1)
    pos_other = other.gather(1, cls[:, None])[:, 0]
    has_other = present[partner, cls]
    return (
        lse - own.gather(1, cls[:, None])[:, 0] + torch.where(has_other, lse - pos_other, torch.zeros_like(lse))
    ) / (1 + has_other.to(own.dtype))


def _reduce(
    nll: torch.Tensor,
    group: torch.Tensor,
    weight: torch.Tensor,
    shape: tuple[int, int],
    graph: torch.Tensor,
    n_anchors: int,
) -> LCLStats:
    """Weighted mean of the anchors' terms per (image, class) (Eq. 3), then over the used
    classes of each image and over the images with any (Eq. 2); ``group`` = image·K + class;
    with no image contributing, ``graph·0`` (every parameter that made the embeddings gets a
    zero gradient, as the dense path gives)."""
    B, K = shape
    w = weight.to(nll.dtype)
    num = nll.new_zeros(B * K).index_add(0, group, w * nll).reshape(B, K)
    den = nll.new_zeros(B * K).index_add(0, group, w).reshape(B, K)
    used = den > 0
    per_class = num / den.clamp_min(torch.finfo(nll.dtype).tiny)  # 1/|S̃_c| Σ_i, Eq. (3)
    n_used = used.sum(1)
    per_image = (per_class * used).sum(1) / n_used.clamp_min(1)  # 1/C Σ_c over used classes
    contributing = n_used > 0
    each = torch.where(contributing, per_image, float("nan")).detach()
    if not bool(contributing.any()):
        zero = graph * 0.0
        return LCLStats(zero, zero.detach(), 0, 0, each)
    loss = per_image[contributing].mean()
    n_classes = n_used[contributing].to(loss.dtype).mean().detach()
    return LCLStats(loss, n_classes, int(contributing.sum()), n_anchors, each)


def local_contrastive_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
    """The LCL loss (Chaitanya et al. 2023, Eq. 3-4, negative log): the ``loss`` of
    :func:`local_contrastive_terms`, which takes the same arguments."""
    return local_contrastive_terms(*args, **kwargs).loss


__all__ = ["Anchors", "LCLStats", "Projection", "class_means", "local_contrastive_loss", "local_contrastive_terms"]
