"""Per-case × per-class segmentation metrics in millimetres (MONAI metrics).

Conventions (DESIGN.md, "Units"):

* Dice and Jaccard on empty truth *and* empty prediction are 1.
* An empty prediction against non-empty truth has Dice 0; its HD95/ASD are
  NaN with ``pred_empty`` set — never 0, which would reward missing organs.
* Distances use the voxel spacing (mm), so anisotropic CT is measured right.
* The case summary is the mean over foreground classes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_iou
from monai.networks.utils import one_hot

METRIC_COLUMNS = ("dice", "jaccard", "hd95_mm", "asd_mm")


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return one_hot(labels.reshape(1, 1, *labels.shape[-3:]).long(), num_classes, dim=1)


def case_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float],
    *,
    hd_percentile: float = 95.0,
) -> list[dict]:
    """One row per foreground class for one case.

    pred, label: integer maps of the same spatial shape (``[X, Y, Z]``, or
    with leading singleton dims). spacing: mm per voxel along each axis.
    Rows: ``class_index, dice, jaccard, hd95_mm, asd_mm, label_empty, pred_empty``.
    """
    pred = pred.reshape(pred.shape[-3:]) if pred.dim() > 3 else pred
    label = label.reshape(label.shape[-3:]) if label.dim() > 3 else label
    if pred.shape != label.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in shape")
    p1, y1 = _onehot(pred.cpu(), num_classes), _onehot(label.cpu(), num_classes)
    dice = compute_dice(p1, y1, include_background=False, ignore_empty=False)[0]
    iou = compute_iou(p1, y1, include_background=False, ignore_empty=False)[0]
    present_y = y1[0, 1:].flatten(1).any(1)
    present_p = p1[0, 1:].flatten(1).any(1)
    both = (present_y & present_p).nonzero().flatten().tolist()
    hd = torch.full((num_classes - 1,), math.nan, dtype=torch.float64)
    asd = torch.full((num_classes - 1,), math.nan, dtype=torch.float64)
    if both:
        idx = [0] + [c + 1 for c in both]
        sub_p, sub_y = p1[:, idx], y1[:, idx]
        spacing_t = [float(s) for s in spacing]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            h = compute_hausdorff_distance(
                sub_p, sub_y, include_background=False, percentile=hd_percentile, spacing=spacing_t
            )[0]
            a = compute_average_surface_distance(sub_p, sub_y, include_background=False, symmetric=True, spacing=spacing_t)[0]
        hd[both] = h.double()
        asd[both] = a.double()
    rows = []
    for c in range(num_classes - 1):
        y_empty, p_empty = not bool(present_y[c]), not bool(present_p[c])
        d = 1.0 if (y_empty and p_empty) else float(dice[c])
        j = 1.0 if (y_empty and p_empty) else float(iou[c])
        rows.append(
            {
                "class_index": c + 1,
                "dice": d,
                "jaccard": j,
                "hd95_mm": float(hd[c]),
                "asd_mm": float(asd[c]),
                "label_empty": y_empty,
                "pred_empty": p_empty,
            }
        )
    return rows


def mean_foreground(rows: Sequence[dict], column: str = "dice") -> float:
    """Mean over foreground classes (NaNs ignored; NaN if all are NaN)."""
    values = np.array([r[column] for r in rows], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan
    return float(np.nanmean(values))
