"""Metrics: a hand-computed example in mm on anisotropic spacing, the Metrics Reloaded
conventions for empty masks, and agreement with an independent reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree

from vrsearch.engine.fit_state import summarize
from vrsearch.engine.metrics import METRIC_COLUMNS, case_metrics, mean_foreground, worst_distance_mm

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
    assert rows[1]["assd_mm"] == pytest.approx((6 + d + 6) / 7, rel=1e-4)
    # class 2: |P∩Y| = 8, |P| = 12, |Y| = 8 → Dice 16/20, Jaccard 8/12; the 4 extra
    # voxels are one z step (3 mm) from the truth.
    assert rows[2]["dice"] == pytest.approx(0.8)
    assert rows[2]["jaccard"] == pytest.approx(8 / 12)
    assert rows[2]["hd95_mm"] == pytest.approx(3.0)
    assert rows[2]["assd_mm"] == pytest.approx(12 / 20)
    assert not rows[2]["pred_empty"] and not rows[2]["label_empty"]


def test_empty_vs_empty_is_nan_and_left_out_of_means():
    p, y = hand_example()
    rows = case_metrics(p, y, 5, SPACING)
    r = rows[2]  # class 3: absent in both
    assert r["label_empty"] and r["pred_empty"]
    assert all(math.isnan(r[m]) for m in METRIC_COLUMNS)
    assert mean_foreground(rows) == pytest.approx((0.0 + 0.8 + 0.0) / 3)


def test_both_empty_one_restores_dice_one():
    p, y = hand_example()
    rows = case_metrics(p, y, 5, SPACING, both_empty="one")
    r = rows[2]
    assert r["dice"] == 1.0 and r["jaccard"] == 1.0
    assert math.isnan(r["hd95_mm"]) and math.isnan(r["assd_mm"])  # no surface to measure
    assert mean_foreground(rows) == pytest.approx((0.0 + 0.8 + 1.0 + 0.0) / 4)
    assert [r for i, r in enumerate(rows) if i != 2] == [
        r for i, r in enumerate(case_metrics(p, y, 5, SPACING)) if i != 2
    ]
    with pytest.raises(ValueError, match="both_empty"):
        case_metrics(p, y, 5, SPACING, both_empty="zero")


def test_missed_organ_gets_dice_zero_and_the_image_diagonal():
    p, y = hand_example()
    r = case_metrics(p, y, 5, SPACING)[3]  # class 4: present in truth only
    diagonal = math.sqrt((8 * 1.0) ** 2 + (8 * 2.0) ** 2 + (8 * 3.0) ** 2)
    assert worst_distance_mm(y.shape, SPACING) == pytest.approx(diagonal)
    assert r["dice"] == 0.0 and r["jaccard"] == 0.0 and r["pred_empty"] and not r["label_empty"]
    assert r["hd95_mm"] == pytest.approx(diagonal) and r["assd_mm"] == pytest.approx(diagonal)


def test_spurious_class_scores_zero_and_the_diagonal():
    y = torch.zeros(6, 6, 6, dtype=torch.long)
    p = y.clone()
    p[2, 2, 2] = 1
    (r,) = case_metrics(p, y, 2, SPACING)
    assert r["dice"] == 0.0 and r["label_empty"] and not r["pred_empty"]
    assert r["hd95_mm"] == r["assd_mm"] == pytest.approx(worst_distance_mm((6, 6, 6), SPACING))


def _two_organs(predict_second: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Truth: organs 1 and 2 (4³ blocks); prediction: organ 1 exact, organ 2 shifted by
    3 voxels along x if ``predict_second``, else not predicted at all."""
    y = torch.zeros(16, 16, 16, dtype=torch.long)
    y[2:6, 2:6, 2:6] = 1
    y[9:13, 9:13, 9:13] = 2
    p = torch.zeros_like(y)
    p[2:6, 2:6, 2:6] = 1
    if predict_second:
        p[12:16, 9:13, 9:13] = 2
    return p, y


def test_missing_an_organ_no_longer_improves_mean_hd95():
    found = case_metrics(*_two_organs(True), 3, (1.0, 1.0, 1.0))
    missed = case_metrics(*_two_organs(False), 3, (1.0, 1.0, 1.0))
    assert found[1]["hd95_mm"] == pytest.approx(3.0) and found[1]["dice"] == pytest.approx(0.25)
    # the old rule (a missed organ's distances NaN, left out) made missing it look better ...
    old = [{**r, "hd95_mm": math.nan if r["pred_empty"] else r["hd95_mm"]} for r in missed]
    assert mean_foreground(old, "hd95_mm") == 0.0 < mean_foreground(found, "hd95_mm") == pytest.approx(1.5)
    # ... the worst-case distance makes it worse than finding the organ badly
    assert mean_foreground(missed, "hd95_mm") > mean_foreground(found, "hd95_mm")
    assert mean_foreground(missed, "assd_mm") > mean_foreground(found, "assd_mm")
    assert mean_foreground(missed) < mean_foreground(found)


def _cases(model: str) -> list[dict]:
    """Rows of 4 validation cases; organ 2 (a 4³ block) is present in case 0 only. ``nothing``
    never predicts organ 2; ``finds`` predicts 3 of its 4 slices in case 0 (Dice 6/7) and a
    spurious voxel in case 1."""
    rows = []
    for case in range(4):
        y = torch.zeros(12, 12, 12, dtype=torch.long)
        y[1:5, 1:5, 1:5] = 1
        p = y.clone()
        if case == 0:
            y[6:10, 6:10, 6:10] = 2
            if model == "finds":
                p[6:10, 6:10, 6:9] = 2
        if case == 1 and model == "finds":
            p[11, 11, 11] = 2
        rows += case_metrics(p, y, 3, (1.0, 1.0, 1.0))
    return rows


def test_selection_cannot_be_won_by_predicting_nothing():
    nothing, finds = summarize(_cases("nothing")), summarize(_cases("finds"))
    assert nothing["dice"] == pytest.approx(4 / 5) and finds["dice"] == pytest.approx((4 + 6 / 7) / 6)
    assert finds["dice"] > nothing["dice"]
    assert finds["hd95_mm"] < nothing["hd95_mm"] and finds["assd_mm"] < nothing["assd_mm"]
    # with Dice 1 on empty/empty (the old rule, still available) the empty model wins
    one = {
        m: [{**r, "dice": 1.0 if r["label_empty"] and r["pred_empty"] else r["dice"]} for r in _cases(m)]
        for m in ("nothing", "finds")
    }
    assert summarize(one["nothing"])["dice"] > summarize(one["finds"])["dice"]


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-neighbour outside it (outside the image counts as outside)."""
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def _reference(p: np.ndarray, y: np.ndarray, spacing) -> tuple[float, float]:
    """HD95 (max of directed 95th percentiles) and pooled ASSD by nearest neighbours in mm."""
    a, b = (np.argwhere(_surface(m)) * np.asarray(spacing) for m in (p, y))
    d_ab, d_ba = cKDTree(b).query(a)[0], cKDTree(a).query(b)[0]
    hd95 = max(np.percentile(d_ab, 95), np.percentile(d_ba, 95))
    return float(hd95), float(np.concatenate([d_ab, d_ba]).mean())


def test_distances_agree_with_an_independent_nearest_neighbour_reference():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(6):
        shape = tuple(int(n) for n in rng.integers(14, 22, size=3))
        spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, size=3))
        # irregular organs: smoothed noise thresholded into 3 classes, prediction = truth perturbed
        field = gaussian_filter(rng.normal(size=shape), 2.0)
        y = np.digitize(field, np.quantile(field, [0.55, 0.8, 0.93]))
        noisy = gaussian_filter(field + rng.normal(scale=0.6 * field.std(), size=shape), 1.0)
        p = np.digitize(noisy, np.quantile(noisy, [0.55, 0.8, 0.93]))
        rows = case_metrics(torch.as_tensor(p), torch.as_tensor(y), 4, spacing)
        for r in rows:
            c = r["class_index"]
            hd95, assd = _reference(p == c, y == c, spacing)
            assert r["hd95_mm"] == pytest.approx(hd95, rel=1e-5, abs=1e-5)
            assert r["assd_mm"] == pytest.approx(assd, rel=1e-5, abs=1e-5)
            assert r["hd95_mm"] < worst_distance_mm(shape, spacing)
            checked += 1
    assert checked == 18


@pytest.mark.parametrize("percentile", [95.0, 50.0, 100.0])
def test_one_surface_pass_gives_monais_hausdorff_and_average_surface_distance_exactly(percentile):
    """``case_metrics`` takes HD and ASSD from one ``get_edge_surface_distance`` pass per
    class; MONAI's two functions each make their own pass. Same values, to the bit."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    from monai.networks.utils import one_hot

    rng = np.random.default_rng(1)
    for _ in range(4):
        shape = tuple(int(n) for n in rng.integers(12, 20, size=3))
        spacing = [float(s) for s in rng.uniform(0.4, 3.5, size=3)]
        field = gaussian_filter(rng.normal(size=shape), 1.5)
        y = np.digitize(field, np.quantile(field, [0.5, 0.75, 0.9, 0.97]))
        noisy = gaussian_filter(field + rng.normal(scale=0.8 * field.std(), size=shape), 1.0)
        p = np.digitize(noisy, np.quantile(noisy, [0.5, 0.75, 0.9, 0.97]))
        rows = case_metrics(torch.as_tensor(p), torch.as_tensor(y), 5, spacing, hd_percentile=percentile)
        p1, y1 = (one_hot(torch.as_tensor(a).reshape(1, 1, *shape), 5, dim=1) for a in (p, y))
        hd = compute_hausdorff_distance(p1, y1, include_background=False, percentile=percentile, spacing=spacing)[0]
        assd = compute_average_surface_distance(p1, y1, include_background=False, symmetric=True, spacing=spacing)[0]
        assert [r["hd95_mm"] for r in rows] == hd.double().tolist()
        assert [r["assd_mm"] for r in rows] == assd.double().tolist()


def test_one_surface_pass_per_class_present_in_both(monkeypatch):
    """Classes 1-2 present in both maps, 3 missed, 4 absent: two passes, not four (nor eight)."""
    import monai.metrics.utils as mu

    calls = []
    real = mu.get_edge_surface_distance
    monkeypatch.setattr(mu, "get_edge_surface_distance", lambda *a, **k: calls.append(1) or real(*a, **k))
    y = torch.zeros(12, 12, 12, dtype=torch.long)
    y[2:6, 2:6, 2:6], y[7:10, 7:10, 7:10], y[1:3, 8:11, 8:11] = 1, 2, 3
    p = y.clone()
    p[p == 3] = 0
    p[2:5, 2:6, 2:6] = 1
    rows = case_metrics(p, y, 5, (1.0, 1.0, 2.0))
    assert len(calls) == 2
    assert [r["pred_empty"] for r in rows] == [False, False, True, True]


def test_spacing_scales_distances():
    p, y = hand_example()
    base = {r["class_index"]: r for r in case_metrics(p, y, 5, SPACING)}
    doubled = {r["class_index"]: r for r in case_metrics(p, y, 5, tuple(2 * s for s in SPACING))}
    assert doubled[2]["hd95_mm"] == pytest.approx(2 * base[2]["hd95_mm"])
    assert doubled[1]["assd_mm"] == pytest.approx(2 * base[1]["assd_mm"])


def test_perfect_prediction():
    _, y = hand_example()
    rows = case_metrics(y.clone(), y, 5, SPACING)
    dice = [r["dice"] for r in rows]
    assert dice[:2] + dice[3:] == [1.0, 1.0, 1.0] and math.isnan(dice[2])  # class 3: empty/empty
    assert rows[0]["hd95_mm"] == 0.0 and rows[0]["assd_mm"] == 0.0


def test_mean_foreground_and_shape_check():
    p, y = hand_example()
    rows = case_metrics(p, y, 5, SPACING)
    assert mean_foreground(rows) == pytest.approx((0.0 + 0.8 + 0.0) / 3)
    assert mean_foreground(rows, "hd95_mm") == pytest.approx(np.nanmean([r["hd95_mm"] for r in rows]))
    with pytest.raises(ValueError, match="differ in shape"):
        case_metrics(p[:4], y, 5, SPACING)
