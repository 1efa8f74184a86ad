"""SPCL: self-paced contrastive learning with meta-labels (Peng et al., NeurIPS 2021).

METHODS.md, "SPCL". A global embedding of every training image — the
encoder output (MONAI ``UNet``: its bottom layer, the stride-1 block at the
lowest resolution; ``BasicUNet``: ``down_4``), average-pooled and passed
through a 2-layer MLP (hidden width = ``embedding_dim``) — is trained with
the self-paced supervised-contrastive loss of :mod:`vrsearch.losses.spcl`
(Eqs. 2, 3, 6, 14), whose positives share a meta-label:

* ``position``: ``floor(position · S)``, the partition of the patch centre
  along the axial axis (Ruling for 3D patches; a 2D slice's own index);
* ``patient``: the case meta's ``patient`` (ACDC), else the case id;
* ``phase``: the cardiac phase from the case meta (the ``acdc`` layout provides
  it); on a dataset without phases the first step raises a clear ValueError
  rather than silently ignoring the knob.

The encoder output is read with a forward hook registered only for the
duration of the student's forward pass (no persistent hook, so deep copies
such as the EMA teacher never inherit one).

The batch of ``2N`` images (Eq. 3) is formed from the ``N`` images of the
step — labeled and unlabeled alike, labels unused ("all available images") —
and one random view ``x^T`` of each (Algorithm 1: "for all x_u do random
transformation and get x_u^T"): per-sample flips along the two in-plane axes,
intensity jitter (contrast about the image mean, brightness and noise relative
to its std: :func:`~vrsearch.components.views.intensity_jitter`), drawn from a generator seeded by
(trial seed, iteration), so training is a pure function of the iteration.

Modes (``mode``):

* ``joint`` (Eq. 15): ``L = L_sup + λ_reg·L_MT + λ_sp·Σ_k λ_k L_sp^k`` with
  ``L_MT`` (supplement Eq. 3) = squared difference of softmax probabilities,
  summed over classes and averaged over voxels, between the student on the
  transformed unlabeled view (flips undone) and an EMA teacher on the
  untransformed one.
* ``pretrain``: the first ``round(pretrain_fraction · iterations)`` iterations
  minimise ``Σ_k λ_k L_sp^k`` (Eq. 14) on all images (the registration's
  its data needs (unlabeled images; ``phase`` meta when it is a meta-label) make them available to this
  stage); the rest fine-tune the whole network on labeled images with
  ``L_sup`` (the projection head is dropped). The engine's single LR
  schedule and optimiser state run across both stages.

γ ramps linearly from ``gamma_start`` to ``gamma_end`` over the iterations
that use ``L_sp``. Logged terms: ``sup``, ``mt``, ``sp`` (= Σ_k λ_k L_sp^k),
``sp_<meta-label>`` (unweighted ``L_sp^k``), ``gamma``, ``mean_weight``; a
pretrain run logs only the terms its current stage computes.
"""

from __future__ import annotations

import torch
from torch import nn

from vrsearch.components.schedules import fraction_of
from vrsearch.components.teachers import EMATeacher
from vrsearch.components.views import IN_PLANE, flip_samples, intensity_jitter, step_generator
from vrsearch.losses import SupervisedLoss
from vrsearch.losses.spcl import linear_gamma, multi_meta_label_loss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.spcl import SPCLParams
from vrsearch.models import build_segnet
from vrsearch.models.heads import GlobalProjector, capture_outputs, encoder_output_block

#: random view x^T: flip probability per in-plane axis (X, Y; the axial axis Z carries the position
#: label), intensity jitter relative to each image's mean and std (contrast 1 ± 0.1, shift ± 0.1·std,
#: noise 0.05·std)
VIEW_FLIP_P = 0.5
VIEW_JITTER = {"contrast": 0.1, "shift": 0.1, "noise": 0.05}


def random_view(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x^T`` of each sample of ``x`` ``[M, 1, X, Y, Z]`` and the flips applied (``[M, 2]``)."""
    flips = torch.rand(x.shape[0], len(IN_PLANE), generator=gen, device=x.device) < VIEW_FLIP_P
    return flip_samples(intensity_jitter(x, gen, **VIEW_JITTER), flips), flips


def _padded(meta: list[dict], n: int) -> list[dict]:
    return list(meta) + [{}] * (n - len(meta))


def _codes(values: list, device: torch.device) -> torch.Tensor:
    """Integer codes, equal for equal values; a missing value (None) gets a code of its
    own, so that sample has no positive and contributes nothing (Eq. 3)."""
    table: dict = {}
    codes = []
    for i, v in enumerate(values):
        key = ("missing", i) if v is None else ("value", v)
        codes.append(table.setdefault(key, len(table)))
    return torch.tensor(codes, dtype=torch.long, device=device)


class SPCL(Method):
    def __init__(self, params: SPCLParams, ctx: BuildContext):
        super().__init__()
        self.params, self.seed, self.iterations = params, ctx.seed, ctx.iterations
        self.net = build_segnet(ctx.model, ctx.num_classes)
        self.encoder_block, width = encoder_output_block(self.net.backbone, tuple(ctx.model.channels))
        self.projector = GlobalProjector(width, params.embedding_dim)
        self.sup = SupervisedLoss(params.loss)
        self.teacher = EMATeacher(self.net, params.ema_decay) if params.mode == "joint" else None
        self.pretrain_iters = fraction_of(params.pretrain_fraction, ctx.iterations) if params.mode == "pretrain" else 0
        self.lambdas: dict[str, float] = {k: getattr(params, f"lambda_{k}") for k in params.meta_labels}

    # -- schedule -----------------------------------------------------------
    def contrastive_stage(self, it: int) -> bool:
        """Whether iteration ``it`` uses ``L_sp`` (always in joint mode)."""
        return self.params.mode == "joint" or it < self.pretrain_iters

    def gamma(self, it: int) -> float:
        span = self.iterations if self.params.mode == "joint" else self.pretrain_iters
        return linear_gamma(it, span, self.params.gamma_start, self.params.gamma_end)

    # -- meta-labels --------------------------------------------------------
    def meta_labels(self, batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
        """Integer meta-labels ``[N]`` of the step's images (labeled, then unlabeled)."""
        has_u = batch.unlabeled is not None
        out: dict[str, torch.Tensor] = {}
        if "position" in self.params.meta_labels:
            parts = [batch.positions] + ([batch.unlabeled_positions] if has_u else [])
            known = [p for p in parts if p is not None]
            if len(known) != len(parts):
                raise ValueError("SPCL position meta-label: the batch carries no patch positions")
            pos = torch.cat([p.to(device) for p in known]).float()
            if not bool(torch.isfinite(pos).all()):
                raise ValueError("SPCL position meta-label: a patch position is unknown (NaN)")
            s = self.params.position_partitions
            out["position"] = (pos * s).floor().long().clamp(0, s - 1)
        n_lab = len(batch.cases)
        metas = _padded(batch.case_meta, n_lab) + (
            _padded(batch.unlabeled_meta, len(batch.unlabeled_cases)) if has_u else []
        )
        if "patient" in self.params.meta_labels:
            cases = list(batch.cases) + (list(batch.unlabeled_cases) if has_u else [])
            patients = [str(m.get("patient", c)) for m, c in zip(metas, cases)]  # the case id when no patient meta
            out["patient"] = _codes(patients, device)
        if "phase" in self.params.meta_labels:
            phases = [m.get("phase") for m in metas]
            if all(p is None for p in phases):
                raise ValueError(
                    "SPCL meta-label 'phase': the dataset provides no cardiac phase (the acdc layout "
                    "does); drop 'phase' from method.params.meta_labels"
                )
            out["phase"] = _codes(phases, device)
        return out

    # -- pieces -------------------------------------------------------------

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Student logits and global embeddings (un-normalised) of ``x``."""
        with capture_outputs([self.encoder_block]) as box:
            logits = self.net(x)
        return logits, self.projector(box[0])

    def contrastive(
        self, batch: Batch, it: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor, torch.Tensor, int]:
        """``Σ_k λ_k L_sp^k`` on the 2N views; also returns the logits of every view,
        the flips of the second views and N."""
        imgs = batch.image if batch.unlabeled is None else torch.cat([batch.image, batch.unlabeled])
        n = imgs.shape[0]
        view, flips = random_view(imgs, step_generator(self.seed, it, 0, imgs.device))
        logits, z = self.embed(torch.cat([imgs, view]))
        labels = {k: v.repeat(2) for k, v in self.meta_labels(batch, imgs.device).items()}
        gamma = self.gamma(it)
        sp, parts = multi_meta_label_loss(
            z, labels, self.lambdas, tau=self.params.tau, gamma=gamma, weighting=self.params.weighting
        )
        terms = {f"sp_{k}": parts[k] for k in labels}
        terms.update(sp=sp.detach(), gamma=torch.tensor(gamma), mean_weight=parts["mean_weight"])
        return sp, terms, logits, flips, n

    def consistency(self, student_logits: torch.Tensor, flips: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``L_MT`` (supplement Eq. 3) between the EMA teacher on ``x`` and the student on ``x^T``."""
        if self.teacher is None:
            raise RuntimeError("SPCL's consistency term needs the EMA teacher of mode 'joint'")
        with torch.no_grad():
            target = torch.softmax(self.teacher(x), dim=1)
        prob = torch.softmax(flip_samples(student_logits, flips), dim=1)
        return ((prob - target) ** 2).sum(dim=1).mean()

    # -- step ---------------------------------------------------------------
    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        if not self.contrastive_stage(iteration):  # pretrain mode, fine-tuning stage
            sup = self.sup(self.net(batch.image), batch.label)
            return StepOutput(sup, {"sup": sup.detach()})
        sp, terms, logits, flips, n = self.contrastive(batch, iteration)
        if self.params.mode == "pretrain":
            return StepOutput(sp, terms)
        b = batch.image.shape[0]
        sup = self.sup(logits[:b], batch.label)
        mt = sup.new_zeros(())
        if batch.unlabeled is not None:
            mt = self.consistency(logits[n + b :], flips[b:], batch.unlabeled)
        p = self.params
        loss = sup + p.lambda_reg * mt + p.lambda_sp * sp
        terms.update(sup=sup.detach(), mt=mt.detach())
        return StepOutput(loss, terms)

    def after_step(self, iteration: int) -> None:
        if self.teacher is not None:
            self.teacher.update(self.net, iteration + 1)

    def predictor(self) -> nn.Module:
        return self.net


def build_spcl(params: SPCLParams, ctx: BuildContext) -> SPCL:
    return SPCL(params, ctx)
