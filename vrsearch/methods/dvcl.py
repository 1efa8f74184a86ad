"""DVCL: distance-aware voxel-wise contrastive learning (METHODS.md "DVCL";
``papers/dvcl_distance_aware_vcl.txt``). No public code exists: this follows
the paper's Algorithm 1 and Eq. 2-20, with the rulings below and in
:mod:`vrsearch.losses.dvcl`.

CPS twins A and B (same architecture, inits from seeds s and s+1), each a
:class:`~vrsearch.models.SegNet` with a segmentation and a feature head
(``V = feature_dim`` channels). HqC and DVCL read the features only at sampled
voxels (anchors, negatives, queries), so the feature heads run on those voxels
alone: the networks return the heads' inputs (``features="decoder"``) and
``SegNet.head_rows`` forms each gathered row — the same values and gradients as
the dense feature maps (``tests/methods/test_dvcl.py``). Likewise L_dvcl's query
probabilities are the softmax of the logits gathered at the queries; the full
probability maps (ESM, pseudo-labels) carry no gradient. One step (labeled patches first, then
unlabeled, through both networks)::

    L = L_sup^A + L_sup^B + λ_u·r(it)·L_ecps + λ_c·(L_hqc + β·L_dvcl)      (Eq. 19-20)

* ESM (Eq. 2-3) splits each network's unlabeled voxels into reliable /
  unreliable with ``τ_e = mean + α·std`` of its entropy over the batch.
* ECPS (Eq. 4-5): CPS with entropy weights; ``ebl: false`` sets every
  weight to 1 (plain CPS — Table 2's "no EBL" rows; ESM still decides which
  voxels feed HqC and DVCL, since DVCL needs its unreliable set).
* HqC (Eq. 6-11): anchors of class c are labeled voxels of class c that a
  network predicts as c and reliable unlabeled voxels pseudo-labelled c,
  pooled over both networks. ``anchors`` (M) per class are drawn with the
  shared sampler (``sampler``/``grid``/``rounding``), pushed (detached, in
  random order) into a class-aware FIFO bank whose class mean is the
  positive ``P_c`` (Eq. 9). **Ruling (2026-12)**: ``P_c`` is the mean of the
  *raw* features (Eq. 9), L2-normalised only inside the cosine of Eq. 11.
  Sampler weights (Ruling 2026-12): the anchors' weights weight the mean of
  Eq. 11 and are stored with them in the bank, so ``P_c`` is the weighted mean
  ``Σ w·r / Σ w`` — both unbiased under NS, SG and SAG (Monte-Carlo checked in
  ``tests/methods/test_sampler_bias.py``). Each anchor gets ``negatives`` (N)
  labeled voxels predicted c whose label is not c (Eq. 10), drawn uniformly
  with replacement (NS: equal weights). Negatives keep their gradient (the
  paper moves the misclassified voxels away from class c); ``P_c`` does not
  (bank entries are detached).
* DVCL (Eq. 12-17): at most ``queries`` unreliable voxels of A ∪ B per step
  (uniform without replacement: a simple random sample, whose plain mean is
  already unbiased for the mean over U_R) search a FIFO queue
  (``queue_size``) of earlier unreliable voxels (detached features and
  probabilities) for their K nearest and K' furthest entries; the term is
  :func:`vrsearch.losses.dvcl.dvcl_terms`. The queue is searched before
  the step's queries join it and the term is 0 until it holds
  ``max(K, K')`` entries. Queries carry gradient through their
  probabilities (``loglik``, ``kl``) or features (``infonce``, ``simclr``).

Logged: both supervised terms, ``ecps``, ``hqc``, ``dvcl`` (the optimised
part), ``dvcl_const`` = (K−K')(log L+1), ``dvcl_psi_bar`` = dvcl + const and
the exact ``dvcl_psi`` (so the bound of Eq. 16 can be checked on a run),
each network's reliable fraction and ``τ_e``, the ramp, the counts and
``reflect_outside`` (SAG anchors whose reflection left their group and were
replaced by a uniform draw; 0 for NS/SG), as LCL and MONA/ARCO log it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F

from vrsearch.components.banks import ClassFIFOBank, FIFOQueue, class_bounds
from vrsearch.components.pseudo import class_argmax
from vrsearch.components.samplers import sample_voxels
from vrsearch.components.schedules import fraction_of, sigmoid_rampup
from vrsearch.components.teachers import twin_networks, twin_predictor
from vrsearch.components.views import step_generator
from vrsearch.losses import SupervisedLoss
from vrsearch.losses.dvcl import dvcl_terms, ecps_loss, ecps_weights, esm, hqc_loss, select_queries
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.dvcl import DVCLParams
from vrsearch.models import build_segnet
from vrsearch.models.embedding import DenseEmbedding
from vrsearch.models.nets import SegNet

#: the two networks' feature heads applied to rows of their inputs (``SegNet.head_rows``)
Heads = tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]


def _twin_gather(r_a: torch.Tensor, r_b: torch.Tensor, flat: torch.Tensor, heads: Heads | None = None) -> torch.Tensor:
    """Rows at flat indices into the stack ``[A; B]`` of two ``[B, D, *S]`` maps, in
    the order of ``flat``; each network's map is read only at its own indices. With
    ``heads`` the maps are the feature heads' inputs and each network's rows go
    through its head (the features of the dense head's output at those voxels)."""
    per_net = r_a.shape[0] * r_a[0, 0].numel()
    in_a, in_b = torch.nonzero(flat < per_net)[:, 0], torch.nonzero(flat >= per_net)[:, 0]
    rows_a, rows_b = DenseEmbedding(r_a).at(flat[in_a]), DenseEmbedding(r_b).at(flat[in_b] - per_net)
    if heads is not None:
        rows_a, rows_b = heads[0](rows_a), heads[1](rows_b)
    rows = torch.cat([rows_a, rows_b])
    return rows[torch.argsort(torch.cat([in_a, in_b]))]


class DVCL(Method):
    def __init__(self, params: DVCLParams, ctx: BuildContext):
        super().__init__()
        self.params, self.seed, self.num_classes = params, ctx.seed, ctx.num_classes
        model = (
            ctx.model
            if params.feature_dim is None
            else ctx.model.model_copy(update={"feature_dim": params.feature_dim})
        )
        self.dim = model.feature_dim
        self.net_a, self.net_b = twin_networks(lambda: build_segnet(model, ctx.num_classes), ctx.seed)
        self.sup = SupervisedLoss(params.loss)
        self.rampup = fraction_of(params.rampup_fraction, ctx.iterations)
        self.bank = ClassFIFOBank(ctx.num_classes, params.bank_size, self.dim)
        self.queue = FIFOQueue(params.queue_size, self.dim + ctx.num_classes)

    def _heads(self) -> Heads:
        """The two feature heads on gathered rows: forward passes ``features="decoder"`` maps."""
        return cast(SegNet, self.net_a).head_rows, cast(SegNet, self.net_b).head_rows

    # -- HqC ---------------------------------------------------------------------------
    def _hqc(
        self,
        y: torch.Tensor,
        pred_a: torch.Tensor,
        pred_b: torch.Tensor,
        rel_a: torch.Tensor,
        rel_b: torch.Tensor,
        r_a: torch.Tensor,
        r_b: torch.Tensor,
        g: torch.Generator,
        heads: Heads | None = None,
    ) -> tuple[torch.Tensor, int, int]:
        p, C, n_l = self.params, self.num_classes, y.shape[0]
        none = torch.full_like(y, -1)
        lab_a, lab_b = torch.where(pred_a[:n_l] == y, y, none), torch.where(pred_b[:n_l] == y, y, none)
        unl_a = torch.where(rel_a, pred_a[n_l:], -1)
        unl_b = torch.where(rel_b, pred_b[n_l:], -1)
        cand = torch.cat([lab_a, unl_a, lab_b, unl_b])  # stack [A; B] of [B_l + B_u, *S]
        draw = functools.partial(sample_voxels, per_image=False, classes=range(C), generator=g)
        s = draw(cand.clamp_min(0), p.anchors, method=p.sampler, grid=p.grid, mask=cand >= 0, rounding=p.rounding)
        if len(s) == 0:
            return r_a.new_zeros(()), 0, 0
        order = torch.argsort(s.cls, stable=True)
        a_cls, a_flat, a_w = s.cls[order], s.index[order], s.weight[order]
        anchors = _twin_gather(r_a, r_b, a_flat, heads).float()
        # Eq. 9: raw features (normalised only inside the cosine), weighted by the sampler,
        # pushed in random order so that a partly overwritten push is a random subset
        shuffled = torch.randperm(a_cls.numel(), generator=g, device=a_cls.device)
        self.bank.push(anchors.detach()[shuffled], a_cls[shuffled], a_w[shuffled] * p.anchors)
        centres, _ = self.bank.means()
        # negatives (Eq. 10): labeled voxels predicted c whose label is not c, N per anchor
        neg_c = torch.cat(
            [torch.where(pred_a[:n_l] != y, pred_a[:n_l], none), torch.where(pred_b[:n_l] != y, pred_b[:n_l], none)]
        )
        total = p.anchors * p.negatives
        sn = draw(neg_c.clamp_min(0), total, method="ns", mask=neg_c >= 0)
        rank = torch.arange(a_cls.numel(), device=a_cls.device) - class_bounds(a_cls, C)[0][a_cls]
        n_order = torch.argsort(sn.cls, stable=True)
        n_cls, n_flat = sn.cls[n_order], sn.index[n_order]
        n_start, n_count = class_bounds(n_cls, C)
        slot = (rank % p.anchors)[:, None] * p.negatives + torch.arange(p.negatives, device=rank.device)
        valid = slot < n_count[a_cls][:, None]
        if n_flat.numel():
            pick = (n_start[a_cls][:, None] + slot).clamp(max=n_flat.numel() - 1)
            negatives = _twin_gather(r_a[:n_l], r_b[:n_l], n_flat[pick.reshape(-1)], heads).float()
            negatives = negatives.reshape(*pick.shape, -1)
        else:
            negatives = anchors.new_zeros(anchors.shape[0], p.negatives, anchors.shape[1])
        return hqc_loss(anchors, a_cls, centres, negatives, valid, p.tau, a_w), anchors.shape[0], s.n_outside

    # -- DVCL --------------------------------------------------------------------------
    def _dvcl(
        self,
        rel_a: torch.Tensor,
        rel_b: torch.Tensor,
        r_a: torch.Tensor,
        r_b: torch.Tensor,
        l_a: torch.Tensor,
        l_b: torch.Tensor,
        g: torch.Generator,
        heads: Heads | None = None,
    ) -> dict[str, torch.Tensor]:
        """L_dvcl (Eq. 12-17) on the unreliable voxels of A ∪ B: ``r_*`` the unlabeled patches'
        feature maps (heads' inputs when ``heads``), ``l_*`` their logits ``[B_u, C, *S]``."""
        p = self.params
        q = select_queries(torch.stack([~rel_a, ~rel_b]), p.queries, g)
        qr = _twin_gather(r_a, r_b, q, heads).float()
        qp = torch.softmax(_twin_gather(l_a, l_b, q).float(), 1)  # p at the queries (per-voxel softmax)
        zero = qp.new_zeros(())
        out = {"dvcl": zero, "dvcl_const": zero, "dvcl_psi": zero, "queries": zero + q.numel()}
        if q.numel() and len(self.queue) >= max(p.k, p.k_prime):
            items = self.queue.items()
            t = dvcl_terms(
                qr,
                qp,
                items[:, : self.dim],
                items[:, self.dim :],
                p.k,
                p.k_prime,
                form=p.form,
                tau=p.tau,
                kl_weight=p.kl_weight,
            )
            out.update(dvcl=t.loss.mean(), dvcl_const=t.constant.mean(), dvcl_psi=t.psi.mean())
        if q.numel():
            self.queue.push(torch.cat([F.normalize(qr.detach(), dim=-1), qp.detach()], 1))
        return out

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        p, n_l = self.params, batch.image.shape[0]
        if batch.unlabeled is None:
            raise ValueError("DVCL needs unlabeled images in every batch")
        x = torch.cat([batch.image, batch.unlabeled])
        # the feature heads' inputs: the heads run only on the voxels HqC and DVCL read (_twin_gather)
        logits_a, r_a = self.net_a(x, features="decoder")
        logits_b, r_b = self.net_b(x, features="decoder")
        # selections and pseudo-labels only: DVCL's query probabilities (the one use with a
        # gradient) are the softmax of the logits gathered at the queries (_dvcl)
        with torch.no_grad():
            prob_a, prob_b = torch.softmax(logits_a.float(), 1), torch.softmax(logits_b.float(), 1)
        # labeled / unlabeled parts by split, not slices: one backward node that concatenates the
        # parts' gradients instead of a full-size zero map per slice that is then summed
        sizes = [n_l, x.shape[0] - n_l]
        (lg_a, lu_a), (lg_b, lu_b) = logits_a.split(sizes), logits_b.split(sizes)
        t = {"sup_a": self.sup(lg_a, batch.label), "sup_b": self.sup(lg_b, batch.label)}
        e_a, rel_a, t["tau_e_a"] = esm(prob_a[n_l:], p.alpha)
        e_b, rel_b, t["tau_e_b"] = esm(prob_b[n_l:], p.alpha)
        t["reliable_a"], t["reliable_b"] = rel_a.float().mean(), rel_b.float().mean()
        if p.ebl:
            w_a = ecps_weights(e_a, rel_a, self.num_classes, p.w_max)
            w_b = ecps_weights(e_b, rel_b, self.num_classes, p.w_max)
        else:
            w_a = w_b = torch.ones_like(e_a)
        pred_a, pred_b = class_argmax(prob_a), class_argmax(prob_b)
        t["ecps"] = ecps_loss(lu_a, lu_b, w_a, w_b, pred_a[n_l:], pred_b[n_l:])
        g = step_generator(self.seed, iteration, 0, x.device)
        zero = t["ecps"].new_zeros(())
        t["hqc"], n_anchors, outside = (
            self._hqc(batch.label[:, 0], pred_a, pred_b, rel_a, rel_b, r_a, r_b, g, self._heads())
            if p.hqc
            else (zero, 0, 0)
        )
        t["anchors"], t["reflect_outside"] = zero + n_anchors, zero + outside
        t.update(
            self._dvcl(rel_a, rel_b, r_a[n_l:], r_b[n_l:], lu_a, lu_b, g, self._heads())
            if p.dvcl
            else {"dvcl": zero, "dvcl_const": zero, "dvcl_psi": zero, "queries": zero}
        )
        t["dvcl_psi_bar"] = t["dvcl"] + t["dvcl_const"]
        t["rampup"] = torch.tensor(sigmoid_rampup(iteration, self.rampup), dtype=torch.float64)
        loss = (
            t["sup_a"]
            + t["sup_b"]
            + p.lambda_u * float(t["rampup"]) * t["ecps"]
            + p.lambda_c * (t["hqc"] + p.beta * t["dvcl"])
        )
        return StepOutput(loss, {k: v.detach() for k, v in t.items()})

    def predictor(self):
        return twin_predictor(self.params.evaluate, self.net_a, self.net_b)


def build_dvcl(params: DVCLParams, ctx: BuildContext) -> DVCL:
    return DVCL(params, ctx)
