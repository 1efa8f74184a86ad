"""MONA: Mine yOur owN Anatomy (You, Dai, Liu, Su, Zhang, Staib, Duncan).

"Mine your own anatomy: revisiting medical image segmentation with extremely
limited labels" (arXiv 2209.13476). METHODS.md "MONA"; losses in
:mod:`vrsearch.losses.mona`. The same module, configured by its Params, is
ARCO (:mod:`vrsearch.methods.arco`).

**Stage 1** (relational pre-training, Sec. 3.1, ISD-style):
:mod:`vrsearch.methods.mona_stage1`.

**Stage 2** (anatomical contrastive reconstruction, Sec. 3.2)::

    L = L_sup + λ_contrast·L_contrast + λ_eqv·L_eqv + λ_unsup·L_unsup + λ_nn·L_nn

(MONA's λ1..λ4 in this order; ARCO's λ1..λ3 are contrast, unsup, nn). The
teacher labels the unlabeled images (``argmax``) on its view, mapped back to
the patch frame; labeled images keep their labels. Representations come from
the FPN head (:class:`~vrsearch.models.heads.RepresentationHead`).

* ``L_contrast`` (``tailness``): queries = student embeddings at ``queries``
  voxels per class drawn by the shared sampler (``sampler``/``grid``/
  ``rounding``, over the batch) among *hard* voxels, whose teacher probability
  of their (pseudo-)label is ≤ ``delta`` (Eq. 5). Positive key of class c: the
  mean **teacher** embedding over all voxels of class c in the batch (Eq. 4;
  the teacher's, detached, as a momentum key — the student's would give the
  query a gradient through its own key). Keys: ``keys`` teacher embeddings per
  class drawn by the same sampler are pushed into a class-aware FIFO bank
  (``negative_bank_size`` per class) *before* the loss, and ``keys`` negatives
  per query are drawn from the bank entries of the other classes.
  **Sampler weights** (METHODS.md Ruling 2026-12): the queries' SG/SAG weights
  weight their mean (per class they sum to 1, so ``L_contrast`` is the mean over
  classes of unbiased class means); keys enter the bank in random order with
  weight ``keys·w``, and a negative drawn uniformly from the bank enters the
  denominator with the importance weight ``w·P_c/W_c``, so the sum over the
  negatives estimates the mean over the other classes' voxels under NS, SG and
  SAG alike (Monte-Carlo checked in ``tests/methods/test_sampler_bias.py``).
  ``contrast_spread`` = ``loss_spread`` of ``L_contrast`` under a second,
  independent draw of queries and negatives (no gradient; ARCO Fig. 5), made on
  the last iteration of each log window (``train.log_every``; the engine logs
  window means, so each logged row holds one such draw) and on the final
  iteration: the second draw costs about one more ``L_contrast`` forward, and
  drawing it from its own generator stream leaves every training draw as it
  is. ``reflect_outside`` counts SAG partners replaced by uniform draws.
* ``L_eqv`` (``consistency``): ``T`` = a random in-plane flip/rotation (when
  ``geometric``) plus intensity jitter on the student view;
  ``equivariance_kl(F(T(x)), T(F(x)))`` over labeled and unlabeled images.
* ``L_unsup``: CE of the student on unlabeled images to the pseudo-labels.
* ``L_nn`` (``diversity``): per-image class-mean student embeddings (pooled
  over the voxels of each (pseudo-)class present, never whole images) to their
  ``nn_k`` nearest entries of a FIFO bank (``nn_bank_size``) of the teacher's
  per-image class means of earlier steps (pushed after the loss); gradient
  into the student.

An ablation switch set to false removes its term (not computed, not logged).
**Two-stage contract**: ``stage: 1`` trials pre-train; a trial with
``stage1_checkpoint`` (their ``checkpoints/<config_hash>/last.pt``) loads student,
teacher and predictors from it (weights only) and runs stage 2 only.
Views: geometric transforms are undone on the (cheap) logits and decoder
features, so labels, pseudo-labels and predictions are compared in the patch
frame. Embeddings are never built as dense ``[B, dim, *S]`` maps: only the
representation head's trunk is dense; its last 1×1 stages are evaluated at
the sampled queries/keys and as per-class sums (exact norm statistics, see
:mod:`vrsearch.models.embedding`), and sampled voxels are mapped to the view
by their coordinates (:class:`~vrsearch.components.views.PatchFrame`).
``dense_reference = True`` restores the dense maps (the reference that
``tests/methods/test_embedding.py`` proves equal). ``strong`` adds
intensity jitter; the paper's CutMix and diffeomorphic deformations are not
implemented. Logged terms: stage 1 ``stage, sup, inst_global, inst_local``;
stage 2 ``stage, sup, unsup, contrast, contrast_spread, reflect_outside,
hard_fraction, eqv, nn``. All randomness comes from generators seeded by
(seed, iteration, stream); teacher and banks are in ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F

from vrsearch.components.banks import ClassFIFOBank, FIFOQueue
from vrsearch.components.checkpoints import load_stage1
from vrsearch.components.pseudo import class_argmax
from vrsearch.components.samplers import sample_voxels
from vrsearch.components.teachers import EMATeacher
from vrsearch.components.views import Geo, PatchFrame, draw_view, geo_apply, geo_undo, step_generator
from vrsearch.losses import SupervisedLoss
from vrsearch.losses.mona import anatomical_contrastive, equivariance_kl, knn_loss, loss_spread
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.mona_stage1 import RelationalPretraining, scalar
from vrsearch.methods.specs.mona import MONAParams
from vrsearch.models.contrast_net import ContrastNet
from vrsearch.models.embedding import DenseEmbedding, OnceSums
from vrsearch.models.heads import MLPHead


def _embedding(rep):
    return DenseEmbedding(rep) if torch.is_tensor(rep) else rep


def patch_frame(rep: Any, geo: Geo, spatial: Sequence[int]) -> DenseEmbedding | PatchFrame:
    """A view's embedding read in the patch frame: a dense map is undone (the
    reference path), a sampled one maps coordinates."""
    if torch.is_tensor(rep):
        return DenseEmbedding(geo_undo(rep, geo))
    return PatchFrame(rep, geo, spatial, rep.a.device)


class MONA(RelationalPretraining, Method):
    #: what a stage-2 trial takes from a stage-1 checkpoint
    STAGE1_PREFIXES = ("student.", "teacher.", "predictor_global.", "predictor_local.")
    #: True: build the dense [B, dim, *S] embedding maps (the reference the sampled path is tested against)
    dense_reference = False

    def __init__(self, params: MONAParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        self.seed, self.C, dim = ctx.seed, ctx.num_classes, params.embedding_dim
        self.log_every, self.iterations = ctx.log_every, ctx.iterations
        self.student = ContrastNet(ctx.model, ctx.num_classes, dim)
        self.predictor_global = MLPHead(dim, dim, dim)  # student-only predictors h'_θ (ISD asymmetry)
        self.predictor_local = MLPHead(dim, dim, dim)
        self.teacher = EMATeacher(self.student, params.ema_decay, warmup=False)
        self.sup = SupervisedLoss(params.loss)
        self.global_bank = FIFOQueue(params.bank_size, dim)
        self.local_bank = FIFOQueue(params.bank_size, dim)
        self.negatives = ClassFIFOBank(ctx.num_classes, params.negative_bank_size, dim)
        self.nn_bank = FIFOQueue(params.nn_bank_size, dim)
        self.register_buffer("stage1_done", torch.zeros((), dtype=torch.long))
        if params.stage1_checkpoint is not None or params.stage == 2:
            self.stage1_iters = 0
        elif params.stage == 1:
            self.stage1_iters = ctx.iterations
        else:
            self.stage1_iters = int(round(params.stage1_fraction * ctx.iterations))
        if params.stage1_checkpoint is not None:
            load_stage1(params.stage1_checkpoint, self, self.STAGE1_PREFIXES)

    def stage_of(self, iteration: int) -> int:
        return 1 if iteration < self.stage1_iters else 2

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        x = batch.image if batch.unlabeled is None else torch.cat([batch.image, batch.unlabeled])
        g = step_generator(self.seed, iteration, 0, x.device)
        if self.stage_of(iteration) == 1:
            return self._stage1(batch, x, g)
        return self._stage2(batch, x, g, iteration)

    def after_step(self, iteration: int) -> None:
        self.teacher.update(self.student, iteration + 1)
        if self.stage_of(iteration) == 1:
            cast(torch.Tensor, self.stage1_done).add_(1)

    def predictor(self):
        net = self.teacher.module if self.params.evaluate == "teacher" else self.student
        return net.segnet

    # -- stage 2 ---------------------------------------------------------------------
    def _stage2(self, batch: Batch, x: torch.Tensor, g: torch.Generator, iteration: int) -> StepOutput:
        p, n_l = self.params, batch.image.shape[0]
        need_rep = (p.tailness or p.diversity) and ("dense" if self.dense_reference else "sampled")
        xs, geo_s = draw_view(x, p.student_augmentation, p.geometric, g)
        xt, geo_t = draw_view(x, p.teacher_augmentation, p.geometric, g)
        s = self.student.run(xs, rep=need_rep)
        logits = geo_undo(s["logits"], geo_s)
        sup = self.sup(logits[:n_l], batch.label)
        with torch.no_grad():
            t = self.teacher.module.run(xt, rep=need_rep)
            prob = geo_undo(t["logits"], geo_t).softmax(1)
            pseudo = class_argmax(prob[n_l:])
            labels = torch.cat([batch.label[:, 0].long(), pseudo])
            conf = prob.gather(1, labels.unsqueeze(1))[:, 0]  # teacher probability of the (pseudo-)label
        loss, terms = sup, {"stage": scalar(2), "sup": sup.detach()}
        if p.unsup:
            unsup = F.cross_entropy(logits[n_l:], pseudo) if x.shape[0] > n_l else logits.sum() * 0.0
            loss = loss + p.lambda_unsup * unsup
            terms["unsup"] = unsup.detach()
        if p.consistency:
            xT, geo_T = draw_view(xs, "strong", p.geometric, g)
            eqv = equivariance_kl(self.student.run(xT)["logits"], geo_apply(s["logits"], geo_T))
            loss = loss + p.lambda_eqv * eqv
            terms["eqv"] = eqv.detach()
        if need_rep:
            rep_s = patch_frame(s["rep"], geo_s, x.shape[2:])
            with torch.no_grad():
                rep_t = OnceSums(patch_frame(t["rep"], geo_t, x.shape[2:]))
        if p.tailness:
            contrast, extra = self._contrast(rep_s, rep_t, labels, conf, g, iteration)
            loss = loss + p.lambda_contrast * contrast
            terms.update(contrast=contrast.detach(), **extra)
        if p.diversity:
            nn_loss = self._nearest_neighbours(rep_s, rep_t, labels)
            loss = loss + p.lambda_nn * nn_loss
            terms["nn"] = nn_loss.detach()
        return StepOutput(loss, terms)

    def _draw(self) -> dict:
        p = self.params
        return dict(method=p.sampler, grid=p.grid, classes=range(self.C), per_image=False, rounding=p.rounding)

    def _push_keys(self, rep_t: Any, labels: torch.Tensor, g: torch.Generator) -> int:
        """Draw ``keys`` teacher embeddings per class and push them, in random order (a
        partly overwritten push stays a random subset) with weight ``keys·w``, into
        the class-aware negative bank. Returns the SAG replacement count."""
        keys = sample_voxels(labels, self.params.keys, generator=g, **self._draw())
        shuffled = torch.randperm(len(keys), generator=g, device=labels.device)
        self.negatives.push(
            rep_t.at(keys.index[shuffled]), keys.cls[shuffled], keys.weight[shuffled] * self.params.keys
        )
        return keys.n_outside

    def _contrast(self, rep_s, rep_t, labels, conf, g, iteration):
        """``L_contrast`` and its diagnostics (see the module docstring). ``rep_s`` /
        ``rep_t``: embeddings read in the patch frame (a dense map is wrapped)."""
        p, draw = self.params, self._draw()
        rep_s, rep_t = _embedding(rep_s), _embedding(rep_t)
        hard = conf <= p.delta
        keys_outside = self._push_keys(rep_t, labels, g)
        with torch.no_grad():
            sums, counts = rep_t.class_sums(labels, self.C)
        total = counts.sum(0)
        positives = sums.sum(0) / total.clamp_min(1).unsqueeze(1).to(sums.dtype)
        bank = (positives, total > 0, self.negatives.bank, self.negatives.count)

        def contrast(gen: torch.Generator) -> tuple[torch.Tensor, int]:
            q = sample_voxels(labels, p.queries, generator=gen, mask=hard, **draw)
            value = anatomical_contrastive(
                rep_s.at(q.index),
                q.cls,
                *bank,
                tau=p.tau,
                num_negatives=p.keys,
                generator=gen,
                query_weight=q.weight,
                negative_weight=self.negatives.weight,
            )
            return value, q.n_outside

        value, outside = contrast(g)
        extra = {"reflect_outside": scalar(outside + keys_outside), "hard_fraction": hard.float().mean()}
        if self._logs_spread(iteration):
            with torch.no_grad():  # its own generator stream: skipping it changes no training draw
                again, _ = contrast(step_generator(self.seed, iteration, 1, labels.device))
            extra["contrast_spread"] = loss_spread(value, again)
        return value, extra

    def _logs_spread(self, iteration: int) -> bool:
        """``contrast_spread`` is drawn on the last iteration of each log window only (its
        second draw costs about one more ``L_contrast`` forward)."""
        done = iteration + 1
        return done % self.log_every == 0 or done == self.iterations

    def _nearest_neighbours(self, rep_s, rep_t, labels):
        """``L_nn`` on per-image class means; the teacher's means join the bank afterwards."""
        rep_s, rep_t = _embedding(rep_s), _embedding(rep_t)
        sums, counts = rep_s.class_sums(labels, self.C)
        present = counts > 0
        z = sums[present] / counts[present].unsqueeze(1).to(sums.dtype)
        loss = knn_loss(z, self.nn_bank.items().to(z.dtype), self.params.nn_k)  # 0 while the bank is empty
        with torch.no_grad():
            t_sums, _ = rep_t.class_sums(labels, self.C)
            self.nn_bank.push(t_sums[present] / counts[present].unsqueeze(1).to(t_sums.dtype))
        return loss


def build_mona(params: MONAParams, ctx: BuildContext) -> MONA:
    return MONA(params, ctx)
