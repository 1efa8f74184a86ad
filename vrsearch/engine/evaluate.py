"""Honest evaluation: sliding-window inference, scored in the label's own grid.

The image is preprocessed exactly as for training (orientation, spacing,
intensity); the label is only loaded. Class probabilities are resampled from
the preprocessed grid back to the label's original voxel grid (world
affines, so flips, permutations and oblique directions are handled), and
metrics use the label's true spacing in mm. A model is never scored on
labels that were resampled for its convenience.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai import transforms as T
from monai.data import MetaTensor
from monai.inferers import sliding_window_inference
from torch import nn

from vrsearch.components.pseudo import class_argmax
from vrsearch.core.config import DatasetConfig, EvalConfig
from vrsearch.data.cases import Case
from vrsearch.data.pipeline import decode, preprocess
from vrsearch.data.prepared import PreparedStore
from vrsearch.engine.metrics import case_metrics


@dataclass
class EvalCase:
    case_id: str
    image: MetaTensor  # [1, X, Y, Z] preprocessed, with its affine
    label: torch.Tensor  # [X', Y', Z'] int64, original grid
    label_affine: np.ndarray  # 4x4, world (RAS) affine of the label grid
    spacing: tuple[float, float, float]  # mm, from the affine's column norms

    @property
    def same_grid(self) -> bool:
        return tuple(self.image.shape[1:]) == tuple(self.label.shape) and np.allclose(
            np.asarray(self.image.affine), self.label_affine, atol=1e-4
        )


def load_eval_cases(cases: Sequence[Case], cfg: DatasetConfig, store: PreparedStore | None = None) -> list[EvalCase]:
    """Preprocess images and load labels (untouched) for evaluation (with ``store``: from
    the prepared-data cache)."""
    image_t = T.Compose(preprocess(cfg, ["image"], store))
    label_t = T.Compose(decode(["label"], store))
    out = []
    for c in cases:
        img = image_t({"image": str(c.image)})["image"]
        lab = label_t({"label": str(c.label)})["label"]
        affine = np.asarray(lab.affine, dtype=np.float64)
        sx, sy, sz = (float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
        out.append(EvalCase(c.id, img, lab.as_tensor()[0].round().long(), affine, (sx, sy, sz)))
    return out


@torch.no_grad()
def predict_probs(
    net: nn.Module,
    image: torch.Tensor,
    roi: Sequence[int],
    cfg: EvalConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Softmax probabilities ``[C, X, Y, Z]`` by Gaussian-weighted sliding windows.

    With ``amp_dtype`` each window runs under autocast and its logits are cast
    back to fp32, so the Gaussian blending and the softmax stay in fp32."""
    x = image.as_tensor() if isinstance(image, MetaTensor) else image

    def autocast_fp32(w: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp_dtype):
            out = net(w)
        return out.float()

    predictor: Callable[[torch.Tensor], torch.Tensor] = net if amp_dtype is None else autocast_fp32
    logits = sliding_window_inference(
        x[None].to(device),
        roi_size=tuple(roi),
        sw_batch_size=cfg.sw_batch_size,
        predictor=predictor,
        overlap=cfg.overlap,
        mode="gaussian",
    )
    if not isinstance(logits, torch.Tensor):  # a network that returns one tensor gets one back
        raise TypeError(f"sliding-window inference returned {type(logits).__name__}, not logits")
    return torch.softmax(logits.float(), dim=1)[0].cpu()


def to_label_grid(probs: torch.Tensor, case: EvalCase) -> torch.Tensor:
    """Arg-max segmentation in the label's original grid."""
    if not case.same_grid:
        src = MetaTensor(probs, affine=torch.as_tensor(np.asarray(case.image.affine)))
        probs = T.SpatialResample(mode="bilinear", padding_mode="border", dtype=np.float32)(
            src, dst_affine=torch.as_tensor(case.label_affine), spatial_size=tuple(case.label.shape)
        )
        probs = probs.as_tensor() if isinstance(probs, MetaTensor) else probs
    return class_argmax(probs, 0)


def evaluate(
    net: nn.Module,
    cases: Sequence[EvalCase],
    num_classes: int,
    roi: Sequence[int],
    cfg: EvalConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> list[dict]:
    """Per case × foreground class metric rows (``case_id`` added); ``amp_dtype``:
    the network runs under autocast (see :func:`predict_probs`), metrics in fp32."""
    was_training = net.training
    net.eval()
    rows: list[dict] = []
    try:
        for case in cases:
            pred = to_label_grid(predict_probs(net, case.image, roi, cfg, device, amp_dtype), case)
            for row in case_metrics(
                pred, case.label, num_classes, case.spacing, hd_percentile=cfg.hd_percentile, both_empty=cfg.both_empty
            ):
                rows.append({"case_id": case.case_id, **row})
    finally:
        net.train(was_training)
    return rows
