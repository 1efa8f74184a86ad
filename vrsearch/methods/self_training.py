"""Self-training baseline with a periodically refreshed snapshot teacher
(METHODS.md, "Baselines"; the classic pseudo-label scheme of Lee 2013 and
Bai et al. 2017 for cardiac MR)::

    L = L_sup(student(x_l), y) + λ_pseudo · CE_masked(student(x_u), ŷ)

``ŷ = argmax`` of a *frozen snapshot* of the student; the snapshot is
refreshed (set to the current student) every ``refresh_fraction`` of
training, i.e. after iterations ``k·P`` with ``P = round(refresh_fraction ·
iterations)``. Before the first refresh (``warm-up = P`` iterations) there
is no pseudo-label loss. Voxels whose snapshot confidence ``max p`` is below
``threshold`` are ignored (0 = keep every voxel); the CE is averaged over the
kept voxels and ``pseudo_fraction`` logs the fraction kept.

The data pipeline draws fresh random patches every step, so pseudo-labels
are computed on the fly by the snapshot for the current unlabeled patches:
since the snapshot is frozen between refreshes, this is equivalent to
labelling every unlabeled volume at refresh time, without storing volumes.
The snapshot's weights and the refresh counter are module state (parameters
and buffers), so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vrsearch.components.pseudo import pseudo_labels
from vrsearch.components.schedules import fraction_of
from vrsearch.components.teachers import FrozenCopy
from vrsearch.losses import SupervisedLoss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.self_training import SelfTrainingParams
from vrsearch.models import build_segnet


class SelfTraining(Method):
    refreshes: torch.Tensor  # buffer: snapshots taken so far

    def __init__(self, params: SelfTrainingParams, ctx: BuildContext):
        super().__init__()
        self.params = params
        self.student = build_segnet(ctx.model, ctx.num_classes)
        self.snapshot = FrozenCopy(self.student)
        self.sup = SupervisedLoss(params.loss)
        self.refresh_every = max(1, fraction_of(params.refresh_fraction, ctx.iterations))
        self.register_buffer("refreshes", torch.zeros((), dtype=torch.long))

    def active(self, iteration: int) -> bool:
        """Whether the snapshot has been refreshed before ``iteration`` (a pure function of it)."""
        return iteration >= self.refresh_every

    def terms(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        """Live terms ``sup``, ``pseudo`` and ``pseudo_fraction`` (kept voxels / all)."""
        n_l, u = batch.image.shape[0], batch.unlabeled
        if u is not None and (u.shape[0] == 0 or not self.active(iteration)):
            u = None
        logits = self.student(batch.image if u is None else torch.cat([batch.image, u]))
        t = {"sup": self.sup(logits[:n_l], batch.label)}
        if u is None:
            t["pseudo"] = t["pseudo_fraction"] = logits.new_zeros(())
            return t
        with torch.no_grad():
            labels, conf = pseudo_labels(torch.softmax(self.snapshot(u), 1))
            keep = (conf >= self.params.threshold).to(logits.dtype)
        ce = F.cross_entropy(logits[n_l:], labels, reduction="none")
        t["pseudo"] = (ce * keep).sum() / keep.sum().clamp_min(1.0)
        t["pseudo_fraction"] = keep.mean()
        return t

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        t = self.terms(batch, iteration)
        loss = t["sup"] + self.params.lambda_pseudo * t["pseudo"]
        return StepOutput(loss, {k: v.detach() for k, v in t.items()})

    def after_step(self, iteration: int) -> None:
        done = iteration + 1
        if done % self.refresh_every == 0:
            self.snapshot.copy_from(self.student)
            self.refreshes.fill_(done // self.refresh_every)

    def predictor(self):
        return self.student


def build_self_training(params: SelfTrainingParams, ctx: BuildContext) -> SelfTraining:
    return SelfTraining(params, ctx)
