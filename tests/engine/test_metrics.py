"""Metric edge cases and a hand-computed example in mm on anisotropic spacing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vrsearch.engine.metrics import case_metrics, mean_foreground

SPACING = (1.0, 2.0, 3.0)  # mm along x, y, z


def hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    """5 classes on a 8×8×8 grid.

    class 1: thin lines (edge = whole mask): truth x∈1..3 at (y=2,z=2);
             prediction the same line at y=3 plus one voxel at (3,3,4).
    class 2: truth a 2×2×2 block, prediction the block extended by one z slice.
    class 3: absent in both.  class 4: present in truth only.
    """
    y = torch.zeros(8, 8, 8, dtype=torch.long)
    p = torch.zeros_like(y)
    y[1:4, 2, 2] = 1
    p[1:4, 3, 2] = 1
    p[3, 3, 4] = 1
    y[5:7, 5:7, 5:7] = 2
    p[5:7, 5:7, 4:7] = 2
    y[0, 7, 7] = 4
    return p, y


def test_hand_computed_example_in_mm():
    p, y = hand_example()
    rows = {r["class_index"]: r for r in case_metrics(p, y, 5, SPACING)}
    # class 1: no overlap. pred→truth distances: 2, 2, 2 (one y step of 2 mm) and
    # sqrt((1·2)^2 + (2·3)^2) = sqrt(40) for the extra voxel; truth→pred: 2, 2, 2.
    d = math.sqrt(40.0)
    hd95 = max(np.percentile([2, 2, 2, d], 95), np.percentile([2, 2, 2], 95))
    assert rows[1]["dice"] == 0.0 and rows[1]["jaccard"] == 0.0
    assert rows[1]["hd95_mm"] == pytest.approx(hd95, rel=1e-4)
    assert rows[1]["asd_mm"] == pytest.approx((6 + d + 6) / 7, rel=1e-4)
    # class 2: |P∩Y| = 8, |P| = 12, |Y| = 8 → Dice 16/20, Jaccard 8/12; the 4 extra
    # voxels are one z step (3 mm) from the truth.
    assert rows[2]["dice"] == pytest.approx(0.8)
    assert rows[2]["jaccard"] == pytest.approx(8 / 12)
    assert rows[2]["hd95_mm"] == pytest.approx(3.0)
    assert rows[2]["asd_mm"] == pytest.approx(12 / 20)
    assert not rows[2]["pred_empty"] and not rows[2]["label_empty"]


def test_empty_vs_empty_is_one_with_nan_distances():
    p, y = hand_example()
    r = {r["class_index"]: r for r in case_metrics(p, y, 5, SPACING)}[3]
    assert r["dice"] == 1.0 and r["jaccard"] == 1.0
    assert r["label_empty"] and r["pred_empty"]
    assert math.isnan(r["hd95_mm"]) and math.isnan(r["asd_mm"])


def test_empty_prediction_is_zero_and_flagged_never_zero_distance():
    p, y = hand_example()
    r = {r["class_index"]: r for r in case_metrics(p, y, 5, SPACING)}[4]
    assert r["dice"] == 0.0 and r["pred_empty"] and not r["label_empty"]
    assert math.isnan(r["hd95_mm"]) and math.isnan(r["asd_mm"])


def test_false_positive_class_scores_zero():
    y = torch.zeros(6, 6, 6, dtype=torch.long)
    p = y.clone()
    p[2, 2, 2] = 1
    (r,) = case_metrics(p, y, 2, SPACING)
    assert r["dice"] == 0.0 and r["label_empty"] and not r["pred_empty"] and math.isnan(r["hd95_mm"])


def test_spacing_scales_distances():
    p, y = hand_example()
    base = {r["class_index"]: r for r in case_metrics(p, y, 5, SPACING)}
    doubled = {r["class_index"]: r for r in case_metrics(p, y, 5, tuple(2 * s for s in SPACING))}
    assert doubled[2]["hd95_mm"] == pytest.approx(2 * base[2]["hd95_mm"])
    assert doubled[1]["asd_mm"] == pytest.approx(2 * base[1]["asd_mm"])


def test_perfect_prediction():
    _, y = hand_example()
    rows = case_metrics(y.clone(), y, 5, SPACING)
    assert [r["dice"] for r in rows] == [1.0, 1.0, 1.0, 1.0]
    assert rows[0]["hd95_mm"] == 0.0


def test_mean_foreground_and_shape_check():
    p, y = hand_example()
    rows = case_metrics(p, y, 5, SPACING)
    assert mean_foreground(rows) == pytest.approx((0.0 + 0.8 + 1.0 + 0.0) / 4)
    assert mean_foreground(rows, "hd95_mm") == pytest.approx(np.nanmean([r["hd95_mm"] for r in rows]))
    with pytest.raises(ValueError, match="differ in shape"):
        case_metrics(p[:4], y, 5, SPACING)
