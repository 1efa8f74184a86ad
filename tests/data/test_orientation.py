"""Non-RAS and oblique volumes load correctly and are scored in their own grid."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as T

from vrsearch.data.cases import Case
from vrsearch.data.pipeline import preprocess
from vrsearch.engine.evaluate import load_eval_cases, to_label_grid
from vrsearch.engine.metrics import case_metrics
from vrsearch.study.schema import DatasetConfig

SPACING = (2.0, 3.0, 4.0)
SHAPE = (20, 16, 12)


def ras_volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    label = np.zeros(SHAPE, np.uint8)
    label[3:9, 2:8, 2:6] = 1
    label[12:17, 9:14, 5:10] = 2
    label[4:6, 11:13, 8:10] = 3
    image = (label * 100 + rng.normal(0, 5, SHAPE)).astype(np.int16)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (-20.0, -24.0, -24.0)
    return image, label, affine


def reoriented(image, label, affine, flips=(), perm=(0, 1, 2)):
    """Same world content stored with flipped and/or permuted voxel axes."""
    img, lab, aff = image.copy(), label.copy(), affine.copy()
    for ax in flips:
        img, lab = np.flip(img, ax), np.flip(lab, ax)
        f = np.eye(4)
        f[ax, ax], f[ax, 3] = -1, img.shape[ax] - 1
        aff = aff @ f
    img, lab = np.transpose(img, perm), np.transpose(lab, perm)
    p = np.zeros((4, 4))
    p[3, 3] = 1
    for new, old in enumerate(perm):
        p[old, new] = 1
    return np.ascontiguousarray(img), np.ascontiguousarray(lab), aff @ p


def save(tmp_path, name, image, label, affine) -> Case:
    ip, lp = tmp_path / f"{name}_0000.nii.gz", tmp_path / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(image, affine), ip)
    nib.save(nib.Nifti1Image(label, affine), lp)
    return Case(name, ip, lp)


def cfg(**kw) -> DatasetConfig:
    return DatasetConfig(patch_size=(16, 16, 8), intensity={"scale": "window", "clip": [-100, 400]}, **kw)


VARIANTS = {
    "LPS": dict(flips=(0, 1)),
    "LAI": dict(flips=(0, 2)),
    "permuted_SRA": dict(perm=(2, 0, 1)),
    "flipped_permuted": dict(flips=(1,), perm=(1, 2, 0)),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reoriented_volume_preprocesses_to_the_ras_arrays(tmp_path, variant):
    image, label, affine = ras_volume()
    ref = save(tmp_path, "ras", image, label, affine)
    other = save(tmp_path, variant, *reoriented(image, label, affine, **VARIANTS[variant]))
    t = T.Compose(preprocess(cfg(), ["image", "label"]))
    a = t({"image": str(ref.image), "label": str(ref.label)})
    b = t({"image": str(other.image), "label": str(other.label)})
    assert torch.equal(a["image"].as_tensor(), b["image"].as_tensor())
    assert torch.equal(a["label"].as_tensor(), b["label"].as_tensor())
    assert np.allclose(np.asarray(a["image"].affine), np.asarray(b["image"].affine))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prediction_maps_back_to_the_original_grid(tmp_path, variant):
    """A perfect prediction in the RAS working grid scores Dice 1 in the stored grid."""
    image, label, affine = ras_volume()
    case = save(tmp_path, variant, *reoriented(image, label, affine, **VARIANTS[variant]))
    (ev,) = load_eval_cases([case], cfg())
    assert ev.spacing == pytest.approx(tuple(np.asarray(SPACING)[list(VARIANTS[variant].get("perm", (0, 1, 2)))]))
    probs = torch.nn.functional.one_hot(torch.as_tensor(label).long(), 4).permute(3, 0, 1, 2).float()
    pred = to_label_grid(probs, ev)
    assert torch.equal(pred, ev.label)
    assert all(r["dice"] == 1.0 for r in case_metrics(pred, ev.label, 4, ev.spacing))


def oblique_affine(angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(SPACING)
    affine[:3, 3] = (-20.0, -24.0, -24.0)
    return affine


def test_oblique_spacing_comes_from_the_affine_columns(tmp_path):
    image, label, _ = ras_volume()
    case = save(tmp_path, "oblique", image, label, oblique_affine(20.0))
    (ev,) = load_eval_cases([case], cfg())
    assert ev.spacing == pytest.approx(SPACING)  # not the diagonal of the affine
    assert ev.same_grid
    probs = torch.nn.functional.one_hot(torch.as_tensor(label).long(), 4).permute(3, 0, 1, 2).float()
    assert torch.equal(to_label_grid(probs, ev), ev.label)


@pytest.mark.parametrize("angle", [0.0, 20.0])
def test_resampled_prediction_round_trips(tmp_path, angle):
    """Resampling to another spacing and back keeps the segmentation (Dice ≈ 1)."""
    image, label, affine = ras_volume()
    aff = affine if angle == 0 else oblique_affine(angle)
    case = save(tmp_path, "case", *reoriented(image, label, aff, flips=(0,)))
    c = cfg(spacing=(1.5, 1.5, 2.0))
    work = T.Compose(preprocess(c, ["image", "label"]))({"image": str(case.image), "label": str(case.label)})
    assert work["image"].shape[1:] != label.shape  # really resampled
    (ev,) = load_eval_cases([case], c)
    assert tuple(ev.image.shape) == tuple(work["image"].shape)
    probs = torch.nn.functional.one_hot(work["label"].as_tensor()[0].long(), 4).permute(3, 0, 1, 2).float()
    pred = to_label_grid(probs, ev)
    assert pred.shape == ev.label.shape
    dice = [r["dice"] for r in case_metrics(pred, ev.label, 4, ev.spacing)]
    assert min(dice) > 0.85, dice
