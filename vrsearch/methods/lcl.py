"""LCL: local contrastive loss on pseudo-labels (Chaitanya et al. 2023).

Chaitanya, Erdil, Karani, Konukoglu, "Local contrastive loss with
pseudo-label based self-training for semi-supervised medical image
segmentation", Medical Image Analysis 87 (2023). METHODS.md, "LCL".

Algorithm (paper Sec. III and IV-D, Eq. 1-2):

1. Warm-up, Eq. (1): ``T0`` iterations of ``L_sup`` (Dice by default) on the
   labeled batch only; the feature head gets no gradient.
2. At ``T0 + s·P`` (s = 0..S−1, ``P = (iterations − T0) // S``) the current
   network is frozen into a snapshot, the pseudo-labeller (eval mode, no
   gradient). The paper labels every unlabeled volume at that moment; since
   our unlabeled patches are drawn afresh each step, the snapshot labels
   the current patches on the fly, which gives the same labels as labelling
   the volumes at the refresh (the snapshot does not change in between).
3. Joint phase, Eq. (2): ``L = L_sup(labeled) + λ_cont · L_cont(labeled ∪
   pseudo-labeled)``. Pseudo-labels enter only ``L_cont``: the labeled and
   unlabeled images go through separate forward passes, so not even
   BatchNorm statistics of unlabeled images reach ``L_sup``.

``L_cont`` is :func:`vrsearch.losses.lcl.local_contrastive_terms` (Eq. 3-4,
negative log), given the input of the feature head's last 1×1 convolution and
that convolution's weights: the embeddings are formed only at the anchors and
in the class means (``project``; exactly the dense loss). Anchors ``S̃_c(x)`` (``samples_per_class`` per class per
image, foreground classes as in the paper unless ``include_background``)
come from the shared sampler (``sampler: ns|sg|sag``, ``grid``,
``rounding``); their weights keep each class's anchor mean unbiased under
NS, SG and SAG (Monte-Carlo checked in ``tests/methods/test_sampler_bias.py``).
For ``inter`` and ``partner`` matching the joint batch is shuffled with the
step's generator and image b is paired with image (b+1) mod B: a random
pairing, as the paper's "two random samples" of Eq. (2), without self-pairs.
``inter`` pools the class means of both images of a pair (**Ruling**,
METHODS.md 2026-12: the paper's Sec. III prose and the authors' code);
``partner`` keeps the earlier reading, the means of the partner image only
(see :mod:`vrsearch.losses.lcl`).

Optional quality gate (paper Table VII, ``gate`` > 0): the snapshot
predicts each unlabeled patch under two random intensity transforms
(contrast/brightness jitter and Gaussian noise, relative to the patch's
std: :func:`~vrsearch.components.views.intensity_jitter` at
:data:`~vrsearch.components.views.STRONG`); the patch is kept only if the mean foreground Dice of the two
predictions (classes present in either; 1 when both are empty) reaches the
threshold. Flips are not used: left/right organs are distinct classes.
The paper's intensity augmentation of the contrastive batch is the
dataset's ``augment.intensity_*`` setting.

Every random draw of a step comes from a generator seeded by (trial seed,
iteration) (:func:`~vrsearch.components.views.step_generator`); the snapshot
and the refresh counter live in ``state_dict``, so a resumed run is bit-identical.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vrsearch.components.pseudo import class_argmax, pseudo_labels
from vrsearch.components.samplers import sample_voxels
from vrsearch.components.teachers import FrozenCopy
from vrsearch.components.views import STRONG, intensity_jitter, step_generator
from vrsearch.losses import SupervisedLoss
from vrsearch.losses.lcl import local_contrastive_terms
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.lcl import LCLParams
from vrsearch.models import build_segnet


def agreement_dice(a: torch.Tensor, b: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean foreground Dice per image between label maps ``[U, *S]``; 1 for empty vs empty."""
    oa = F.one_hot(a.reshape(a.shape[0], -1), num_classes)[..., 1:].float()
    ob = F.one_hot(b.reshape(b.shape[0], -1), num_classes)[..., 1:].float()
    inter, size = (oa * ob).sum(1), oa.sum(1) + ob.sum(1)
    present = size > 0
    dice = torch.where(present, 2 * inter / size.clamp_min(1), torch.zeros_like(size))
    n = present.sum(1)
    return torch.where(n > 0, dice.sum(1) / n.clamp_min(1), torch.ones_like(n, dtype=dice.dtype))


class LCL(Method):
    refresh_count: torch.Tensor  # buffer: pseudo-labelling steps taken so far

    def __init__(self, params: LCLParams, ctx: BuildContext):
        super().__init__()
        self.params, self.num_classes, self.seed = params, ctx.num_classes, ctx.seed
        self.net = build_segnet(ctx.model, ctx.num_classes)
        self.labeller = FrozenCopy(self.net)
        self.sup = SupervisedLoss(params.loss)
        self.register_buffer("refresh_count", torch.zeros((), dtype=torch.long))
        t0 = params.warmup_iterations
        self.warmup = int(round(params.warmup_fraction * ctx.iterations)) if t0 is None else t0
        self.period = max(1, (ctx.iterations - self.warmup) // params.refreshes)
        first = 0 if params.include_background else 1
        self.classes = list(range(first, ctx.num_classes))

    # -- schedule ----------------------------------------------------------
    def refreshes_due(self, iteration: int) -> int:
        """Pseudo-labelling steps that have happened by the start of ``iteration``."""
        if iteration < self.warmup:
            return 0
        return min(self.params.refreshes, (iteration - self.warmup) // self.period + 1)

    def _maybe_refresh(self, iteration: int) -> None:
        due = self.refreshes_due(iteration)
        if due > int(self.refresh_count):
            self.labeller.copy_from(self.net)
            self.refresh_count.fill_(due)

    def train(self, mode: bool = True) -> LCL:
        super().train(mode)
        self.labeller.eval()  # a frozen pseudo-labeller infers; its BN statistics never move
        return self

    # -- pseudo-labels -----------------------------------------------------
    @torch.no_grad()
    def pseudo_label(self, images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels [U, *S], keep [U] bool)`` from the frozen snapshot."""
        self.labeller.eval()
        labels, _ = pseudo_labels(self.labeller(images).softmax(1))
        keep = torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
        if self.params.gate > 0:
            a = class_argmax(self.labeller(intensity_jitter(images, g, **STRONG)))
            b = class_argmax(self.labeller(intensity_jitter(images, g, **STRONG)))
            keep = agreement_dice(a, b, self.num_classes) >= self.params.gate
        return labels, keep

    # -- step ----------------------------------------------------------------
    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        self._maybe_refresh(iteration)
        p = self.params
        if iteration < self.warmup:  # Eq. (1): supervised only
            sup = self.sup(self.net(batch.image), batch.label)
            return StepOutput(sup, {"sup": sup.detach()})
        logits, emb = self.net(batch.image, features="hidden")  # the head's last 1x1 conv runs in the loss
        sup = self.sup(logits, batch.label)
        g = step_generator(self.seed, iteration, 0, batch.image.device)
        embs, labels, terms = [emb], [batch.label[:, 0].long()], {}
        if batch.unlabeled is not None and batch.unlabeled.shape[0] > 0:
            pseudo, keep = self.pseudo_label(batch.unlabeled, g)
            terms["gate_kept"] = keep.float().mean()
            if bool(keep.any()):
                _, emb_u = self.net(batch.unlabeled[keep], features="hidden")
                embs.append(emb_u)
                labels.append(pseudo[keep])
        emb, lab = torch.cat(embs), torch.cat(labels)
        if p.matching != "intra" and emb.shape[0] > 1:
            order = torch.randperm(emb.shape[0], generator=g, device=emb.device)
            emb, lab = emb[order], lab[order]
        sample = sample_voxels(
            lab,
            p.samples_per_class,
            method=p.sampler,
            grid=p.grid,
            generator=g,
            classes=self.classes,
            rounding=p.rounding,
        )
        out = local_contrastive_terms(
            emb, lab, sample, self.num_classes, p.tau, p.matching, self.classes, project=self.net.projection()
        )
        terms.update(
            sup=sup.detach(),
            cont=out.loss.detach(),
            n_classes=out.n_classes,
            reflect_outside=torch.tensor(float(sample.n_outside)),
        )
        return StepOutput(sup + p.lambda_cont * out.loss, terms)

    def predictor(self):
        return self.net


def build_lcl(params: LCLParams, ctx: BuildContext) -> LCL:
    return LCL(params, ctx)
