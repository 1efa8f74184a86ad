"""Per-case × per-class segmentation metrics in millimetres (MONAI metrics),
with the conventions of Metrics Reloaded (Maier-Hein et al., "Metrics
reloaded: recommendations for image analysis validation", Nature Methods
2024) for empty masks:

* **Missed or spurious class** (empty prediction of a present class, or a
  prediction of an absent one): Dice and Jaccard 0; HD95 and ASSD the
  *worst-case distance* of the case, the diagonal of the label image's
  bounding box in mm, ``sqrt(Σ_i (n_i·s_i)²)`` (shape ``n``, spacing ``s``) —
  longer than any distance between two of its voxels, so missing an organ can
  never make a mean distance better than finding it badly. Never NaN, never 0.
* **Class empty in truth and prediction**: NaN for every metric, so every
  mean (:func:`mean_foreground`, validation selection, tables) leaves it out;
  ``train.eval.both_empty: one`` restores Dice = Jaccard = 1 (distances stay
  NaN: there is no surface to measure).
* **HD95** = max of the two *directed* 95th percentiles of the distances
  from each surface to the other (MONAI, ``torch.quantile``, linear
  interpolation); **ASSD** = the mean of the distances of both surfaces,
  pooled: ``(Σ_{a∈∂P} d(a, ∂Y) + Σ_{b∈∂Y} d(b, ∂P)) / (|∂P| + |∂Y|)``.
  Surfaces are the mask voxels with a 6-neighbour outside the mask.
* Distances use the voxel spacing (mm), so anisotropic CT is measured right.

The flags ``label_empty`` / ``pred_empty`` of every row say which rule applied.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

METRIC_COLUMNS = ("dice", "jaccard", "hd95_mm", "assd_mm")
#: what a class empty in truth and prediction scores (``train.eval.both_empty``)
BothEmpty = Literal["nan", "one"]
#: version of the conventions below (1: Dice 1 on empty/empty, NaN distances for missed organs, ``asd_mm``)
CONVENTIONS_VERSION = 2


def conventions(both_empty: str = "nan") -> dict[str, str | int]:
    """The metric conventions of rows computed with ``both_empty`` (recorded with the results)."""
    return {
        "version": CONVENTIONS_VERSION,
        "both_empty": both_empty,
        "both_empty_rule": "NaN for every metric, left out of means"
        if both_empty == "nan"
        else "Dice = Jaccard = 1, distances NaN",
        "missed_or_spurious": "Dice = Jaccard = 0; HD95 = ASSD = image diagonal in mm",
        "hd95": "max of the two directed 95th percentiles of surface distances, mm",
        "assd": "mean surface distance pooled over both surfaces (symmetric), mm",
    }


def worst_distance_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The diagonal of an image of ``shape`` voxels of ``spacing`` mm: ``sqrt(Σ (n_i·s_i)²)``."""
    return float(math.sqrt(sum((int(n) * float(s)) ** 2 for n, s in zip(shape, spacing, strict=True))))


def _onehot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    from monai.networks.utils import one_hot  # MONAI where metrics are computed: a study's driver imports this module

    return one_hot(labels.reshape(1, 1, *labels.shape[-3:]).long(), num_classes, dim=1)


def _distances(
    p1: torch.Tensor, y1: torch.Tensor, both: list[int], spacing: Sequence[float], percentile: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """HD (at ``percentile``) and ASSD of the classes ``both`` (0-based foreground indices,
    each present in prediction and truth), from one pass of MONAI's surface distances per
    class. MONAI's ``compute_hausdorff_distance`` and ``compute_average_surface_distance``
    each make this same pass (``get_edge_surface_distance``: the surface voxels of both
    masks, then each one's Euclidean distance in mm to the nearest surface voxel of the
    other, in both directions) and reduce it: HD = the larger of the two
    directed ``percentile``-th percentiles (``torch.quantile``; the maximum for percentile
    0, as MONAI), ASSD = the mean of both directions' distances pooled. One pass gives
    both values exactly as the two functions do (``tests/engine/test_metrics.py`` runs
    both) for half the work."""
    from monai.metrics.utils import get_edge_surface_distance, prepare_spacing

    spacing_b = prepare_spacing(spacing=[float(s) for s in spacing], batch_size=1, img_dim=p1.ndim - 2)[0]
    hd = torch.empty(len(both), dtype=torch.float32)
    assd = torch.empty(len(both), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, c in enumerate(both):
            _, directed, _ = get_edge_surface_distance(
                p1[0, c + 1].float(),
                y1[0, c + 1].float(),
                distance_metric="euclidean",
                spacing=spacing_b,
                symmetric=True,
                class_index=c + 1,
            )
            per_direction = [torch.quantile(d, percentile / 100) if percentile else d.max() for d in directed]
            hd[i] = torch.stack(per_direction).max()
            assd[i] = torch.cat(directed).mean()
    return hd.double(), assd.double()


def case_metrics(
    pred: torch.Tensor,
    label: torch.Tensor,
    num_classes: int,
    spacing: Sequence[float],
    *,
    hd_percentile: float = 95.0,
    both_empty: BothEmpty = "nan",
) -> list[dict]:
    """One row per foreground class for one case (conventions: module docstring).

    pred, label: integer maps of the same spatial shape (``[X, Y, Z]``, or
    with leading singleton dims). spacing: mm per voxel along each axis.
    Rows: ``class_index, dice, jaccard, hd95_mm, assd_mm, label_empty, pred_empty``.
    """
    from monai.metrics import compute_dice, compute_iou

    if both_empty not in ("nan", "one"):
        raise ValueError(f"both_empty must be 'nan' or 'one', not {both_empty!r}")
    pred = pred.reshape(pred.shape[-3:]) if pred.dim() > 3 else pred
    label = label.reshape(label.shape[-3:]) if label.dim() > 3 else label
    if pred.shape != label.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in shape")
    p1, y1 = _onehot(pred.cpu(), num_classes), _onehot(label.cpu(), num_classes)
    dice = compute_dice(p1, y1, include_background=False, ignore_empty=False)[0].double()
    iou = compute_iou(p1, y1, include_background=False, ignore_empty=False)[0].double()
    present_y = y1[0, 1:].flatten(1).any(1)
    present_p = p1[0, 1:].flatten(1).any(1)
    worst = worst_distance_mm(label.shape, spacing)
    hd = torch.full((num_classes - 1,), worst, dtype=torch.float64)  # missed / spurious
    assd = hd.clone()
    both = (present_y & present_p).nonzero().flatten().tolist()
    if both:
        hd[both], assd[both] = _distances(p1, y1, both, spacing, hd_percentile)
    neither = ~(present_y | present_p)
    hd[neither] = assd[neither] = math.nan
    overlap = 1.0 if both_empty == "one" else math.nan
    dice[neither] = iou[neither] = overlap
    return [
        {
            "class_index": c + 1,
            "dice": float(dice[c]),
            "jaccard": float(iou[c]),
            "hd95_mm": float(hd[c]),
            "assd_mm": float(assd[c]),
            "label_empty": not bool(present_y[c]),
            "pred_empty": not bool(present_p[c]),
        }
        for c in range(num_classes - 1)
    ]


def mean_foreground(rows: Sequence[dict], column: str = "dice") -> float:
    """Mean over the rows' ``column`` (foreground classes × cases), NaN rows — classes
    empty in truth and prediction — left out; NaN if every row is NaN."""
    values = np.array([r[column] for r in rows], dtype=float)
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan
    return float(np.nanmean(values))
