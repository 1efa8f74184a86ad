"""MONA stage 1, relational pre-training (Sec. 3.1, ISD-style): student θ and
EMA teacher ξ (``ξ ← tξ + (1−t)θ``, t = ``ema_decay``, no warm-up). Every
image of the step (labeled and unlabeled) gets a student view ``x``
(``student_augmentation``), a teacher view ``x'`` and a mined view
(``teacher_augmentation``, independent draws). ``L = L_sup + L_inst^global +
L_inst^local`` with ``L_sup`` on the labeled student views and
``L_inst = KL(teacher ‖ student)`` of similarity distributions over the mined
views of the *other* images of the step plus a FIFO bank (``bank_size``) of
earlier mined views (:func:`~vrsearch.losses.mona_instance.relational_over_images`).
Global: encoder output → projector (+ student predictor). Local:
``local_crops`` boxes of edge ``local_crop_size`` at the same location in
every view (in the patch frame), last decoder features average-pooled per
box → local projector (+ student predictor); so a local instance is one crop.

The mixin reads the MONA module's ``params``, ``student``, ``teacher``,
``sup``, predictors and banks (:class:`~vrsearch.methods.mona.MONA`).
"""

from __future__ import annotations

from typing import Any

import torch

from vrsearch.components.views import crop_boxes, crop_means, draw_view, geo_undo
from vrsearch.losses.mona_instance import relational_over_images
from vrsearch.methods.base import Batch, StepOutput


def scalar(x: float | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(float(x))


class RelationalPretraining:
    """``_stage1`` of :class:`~vrsearch.methods.mona.MONA`."""

    params: Any
    student: Any
    teacher: Any
    sup: Any
    predictor_global: Any
    predictor_local: Any
    global_bank: Any
    local_bank: Any

    def _stage1(self, batch: Batch, x: torch.Tensor, g: torch.Generator) -> StepOutput:
        p, n, n_l = self.params, x.shape[0], batch.image.shape[0]
        xs, geo_s = draw_view(x, p.student_augmentation, p.geometric, g)
        xt, geo_t = draw_view(x, p.teacher_augmentation, p.geometric, g)
        xm, geo_m = draw_view(x, p.teacher_augmentation, p.geometric, g)
        s = self.student.run(xs, enc=p.inst_global)
        sup = self.sup(geo_undo(s["logits"], geo_s)[:n_l], batch.label)
        loss, terms = sup, {"stage": scalar(1), "sup": sup.detach()}
        if not (p.inst_global or p.inst_local):
            return StepOutput(loss, terms)
        teacher = self.teacher.module
        with torch.no_grad():
            t = teacher.run(torch.cat([xt, xm]), enc=p.inst_global)
        if p.inst_global:
            u = self.predictor_global(self.student.global_proj(s["enc"]))
            with torch.no_grad():
                tv = teacher.global_proj(t["enc"])
            inst = relational_over_images(u, tv[:n], tv[n:], self.global_bank, p.tau_s, p.tau_t)
            loss = loss + inst
            terms["inst_global"] = inst.detach()
        if p.inst_local:
            boxes = crop_boxes(x.shape[2:], p.local_crops, p.local_crop_size, g, x.device)
            u = self.predictor_local(self.student.local_proj(crop_means(geo_undo(s["h"], geo_s), boxes)))
            with torch.no_grad():
                v = teacher.local_proj(crop_means(geo_undo(t["h"][:n], geo_t), boxes))
                w = teacher.local_proj(crop_means(geo_undo(t["h"][n:], geo_m), boxes))
            inst = relational_over_images(u, v, w, self.local_bank, p.tau_s, p.tau_t)
            loss = loss + inst
            terms["inst_local"] = inst.detach()
        return StepOutput(loss, terms)
