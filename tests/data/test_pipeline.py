"""Training batches: a pure function of the iteration, with patch positions."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import torch

from vrsearch.data.cases import Case
from vrsearch.data.pipeline import BatchSource, PatchStream, cached, case_dicts, labeled_train_transform
from vrsearch.study.schema import DatasetConfig


def z_ramp_case(tmp_path, depth=30) -> Case:
    """Image intensity = axial (z) voxel index; labels in two blobs."""
    shape = (12, 12, depth)
    image = np.broadcast_to(np.arange(depth, dtype=np.int16), shape).copy()
    label = np.zeros(shape, np.uint8)
    label[2:6, 2:6, 3:8] = 1
    label[6:10, 6:10, 20:27] = 2
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "c_0000.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), tmp_path / "c.nii.gz")
    return Case("c", tmp_path / "c_0000.nii.gz", tmp_path / "c.nii.gz")


def source(tmp_path, seed=0, rank=0) -> BatchSource:
    cfg = DatasetConfig(patch_size=(8, 8, 6), intensity={"scale": "none", "clip": None})
    ds = cached(case_dicts([z_ramp_case(tmp_path)], True), labeled_train_transform(cfg, 3), cfg)
    return BatchSource(PatchStream(ds, 4, seed, 0, rank), None, 0, 10)


def test_batches_are_a_function_of_the_iteration(tmp_path):
    src = source(tmp_path)
    a, b = src.batch(3), src.batch(3)
    assert torch.equal(a.image, b.image) and torch.equal(a.label, b.label)
    assert not torch.equal(src.batch(3).image, src.batch(4).image)
    other_rank = source(tmp_path, rank=1)
    assert not torch.equal(a.image, other_rank.batch(3).image)
    assert list(iter(src))[3].image.equal(a.image)  # iterating gives the same stream


def test_patch_positions_match_the_crop(tmp_path):
    src = source(tmp_path)
    for it in range(6):
        batch = src.batch(it)
        centre = batch.image[:, 0].mean(dim=(1, 2, 3))  # mean z index of each patch
        assert torch.allclose(batch.positions * 30, centre + 0.5, atol=1e-4)
        assert batch.label.dtype == torch.int64 and batch.cases == ["c"] * 4


def test_trailing_singleton_axes_are_squeezed_for_training_and_evaluation(tmp_path):
    """A NIfTI image and label of shape (X, Y, Z, 1, 1) (or (X, Y, Z, 1)) pass the data
    checks and load as the 3D volume they are, for training patches and for evaluation
    (they used to reach Orientationd with 4 spatial axes and die there)."""
    from vrsearch.data.validate import check_case
    from vrsearch.engine.evaluate import load_eval_cases

    case = z_ramp_case(tmp_path)
    plain = load_eval_cases([case], DatasetConfig())[0]
    for path, extra in ((case.image, (1, 1)), (case.label, (1,))):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj).reshape(img.shape + extra), img.affine), path)
    assert nib.load(case.image).shape == (12, 12, 30, 1, 1)
    check_case(case, 3, require_label=True)
    cfg = DatasetConfig(patch_size=(8, 8, 6), intensity={"scale": "none", "clip": None})
    ds = cached(case_dicts([case], True), labeled_train_transform(cfg, 3), cfg)
    batch = BatchSource(PatchStream(ds, 2, 0, 0, 0), None, 0, 10).batch(0)
    assert batch.image.shape == (2, 1, 8, 8, 6) and batch.label.shape == (2, 1, 8, 8, 6)
    squeezed = load_eval_cases([case], DatasetConfig())[0]
    assert torch.equal(squeezed.image, plain.image) and torch.equal(squeezed.label, plain.label)
