"""Mean Teacher baseline (Tarvainen & Valpola, NeurIPS 2017; METHODS.md, "Baselines").

A student SegNet θ and its EMA teacher ξ (``ξ ← t·ξ + (1−t)·θ``, decay
0.999 with the reference warm-up ``t = min(1 − 1/(step+1), decay)``)::

    L = L_sup(student(x_l + ε_s), y) + λ_u · r(it) · MSE(softmax(student(x + ε_s)), softmax(teacher(x + ε'_t)))

with independent Gaussian input noise ε_s, ε_t (std ``noise_std``) for the
student and the teacher. The student makes one pass over labeled ∪ unlabeled
patches (its noise doubles as input augmentation, as in the paper, where
both branches see independently perturbed inputs); the consistency term uses
the unlabeled patches (``consistency_on: unlabeled``) or all of them
(``all``). ``r`` is the sigmoid ramp-up ``exp(−5(1−t)²)`` over the first
``rampup_fraction`` of training (a *fraction*, so a study's knob means the
same at any iteration budget; 0 = no ramp-up). MSE is averaged over classes
and voxels, as in the reference implementations.

The noise is drawn from a generator seeded by (trial seed, iteration)
(:func:`~vrsearch.components.views.step_generator`, one stream per branch), so it
is the same on CPU and GPU, independent of the global RNG, and a resumed run
draws exactly the same noise. Teacher weights are buffers/parameters of this
module, hence in every checkpoint. ``evaluate: teacher`` (default) evaluates
the EMA teacher, usually the better model; ``student`` the student.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vrsearch.components.schedules import fraction_of, sigmoid_rampup
from vrsearch.components.teachers import EMATeacher
from vrsearch.components.views import step_generator
from vrsearch.losses import SupervisedLoss
from vrsearch.methods.base import Batch, BuildContext, Method, StepOutput
from vrsearch.methods.specs.mean_teacher import MeanTeacherParams
from vrsearch.models import build_segnet


def step_noise(x: torch.Tensor, std: float, seed: int, iteration: int, stream: int) -> torch.Tensor:
    """``x + std·N(0, 1)`` drawn from a generator seeded by (seed, iteration, stream)."""
    if std == 0.0 or x.numel() == 0:
        return x
    g = step_generator(seed, iteration, stream, x.device)
    return x + std * torch.randn(x.shape, generator=g, device=x.device, dtype=x.dtype)


class MeanTeacher(Method):
    def __init__(self, params: MeanTeacherParams, ctx: BuildContext):
        super().__init__()
        self.params, self.seed = params, ctx.seed
        self.student = build_segnet(ctx.model, ctx.num_classes)
        self.teacher = EMATeacher(self.student, params.ema_decay, params.ema_warmup)
        self.sup = SupervisedLoss(params.loss)
        self.rampup = fraction_of(params.rampup_fraction, ctx.iterations)

    def terms(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        """Live (graph-attached) terms ``sup``, ``cons`` and the ramp ``rampup``."""
        p, n_l = self.params, batch.image.shape[0]
        x = batch.image if batch.unlabeled is None else torch.cat([batch.image, batch.unlabeled])
        logits = self.student(step_noise(x, p.noise_std, self.seed, iteration, 0))
        sup = self.sup(logits[:n_l], batch.label)
        first = 0 if p.consistency_on == "all" else n_l
        if x.shape[0] > first:
            target = torch.softmax(self.teacher(step_noise(x[first:], p.noise_std, self.seed, iteration, 1)), 1)
            cons = F.mse_loss(torch.softmax(logits[first:], 1), target)
        else:  # no unlabeled patches this step
            cons = logits.new_zeros(())
        ramp = torch.tensor(sigmoid_rampup(iteration, self.rampup), dtype=torch.float64)
        return {"sup": sup, "cons": cons, "rampup": ramp}

    def forward(self, batch: Batch, iteration: int) -> StepOutput:
        t = self.terms(batch, iteration)
        loss = t["sup"] + self.params.lambda_u * float(t["rampup"]) * t["cons"]
        return StepOutput(loss, {k: v.detach() for k, v in t.items()})

    def after_step(self, iteration: int) -> None:
        self.teacher.update(self.student, iteration + 1)  # steps taken so far

    def predictor(self):
        return self.teacher.module if self.params.evaluate == "teacher" else self.student


def build_mean_teacher(params: MeanTeacherParams, ctx: BuildContext) -> MeanTeacher:
    return MeanTeacher(params, ctx)
