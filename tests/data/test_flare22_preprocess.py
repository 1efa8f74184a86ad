"""The FLARE22 paper's preprocessing through the real MONAI pipeline.

LPI orientation, spacing 1.25 × 1.25 × 2.5 mm, HU clip [-325, 325], then
percentile (0.5, 99.5) scaling to [0, 1], on a tiny FLARE22-layout phantom.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai import transforms as T

from vrsearch.data.layouts import read_dataset
from vrsearch.data.phantom import PhantomConfig
from vrsearch.data.phantom_flare import write_phantom_flare22
from vrsearch.data.pipeline import geometry_transforms, load_transforms, preprocess
from vrsearch.study.schema import DatasetConfig, Study

PAPER_SPACING = (1.25, 1.25, 2.5)
CLIP = (-325.0, 325.0)
PERCENTILES = (0.5, 99.5)
# small field of view at 10 mm: the paper's spacing gives ~ 128 × 128 × 64 voxels (fast)
PHANTOM = PhantomConfig(cases=1, unlabeled=0, test=0, seed=1, size=(16, 16, 16), spacing=(10.0, 10.0, 10.0))


def paper_config(root: Path, spacing=PAPER_SPACING) -> DatasetConfig:
    return DatasetConfig(
        layout="flare22",
        root=root,
        orientation="LPI",
        spacing=spacing,
        patch_size=(16, 16, 16),
        intensity={"scale": "percentile", "clip": list(CLIP), "percentiles": list(PERCENTILES)},
    )


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = write_phantom_flare22(tmp_path_factory.mktemp("flare") / "FLARE22", PHANTOM)
    (c,) = read_dataset("flare22", root).labeled
    return root, c


def test_schema_accepts_the_paper_settings(tmp_path):
    cfg = paper_config(tmp_path)
    assert cfg.orientation == "LPI" and cfg.spacing == PAPER_SPACING
    assert cfg.intensity.scale == "percentile" and cfg.intensity.clip == CLIP
    assert cfg.intensity.percentiles == PERCENTILES
    study = Study(
        name="flare", dataset={**cfg.model_dump(mode="json"), "unlabeled_pool": 378}, model={"channels": [4, 8]}
    )
    assert study.dataset.unlabeled_pool == 378


@pytest.mark.parametrize("spacing", [PAPER_SPACING, (4.0, 4.0, 5.0)])
def test_lpi_spacing_and_clip_then_percentile(case, spacing):
    root, c = case
    cfg = paper_config(root, spacing)
    keys = ["image", "label"]
    item = {"image": str(c.image), "label": str(c.label)}
    out = T.Compose(preprocess(cfg, keys))(item)
    image, label = out["image"], out["label"]
    affine = np.asarray(image.affine, dtype=float)

    # LPI: voxel axes run to the left, posterior and inferior (negative RAS directions)
    assert nib.aff2axcodes(affine) == ("L", "P", "I")
    assert np.all(np.diag(affine)[:3] < 0)
    assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), spacing)
    assert np.allclose(np.asarray(label.affine), affine) and label.shape == image.shape
    stored = nib.load(c.image)
    extent = (np.array(stored.shape) - 1) * np.array(stored.header.get_zooms())  # first to last voxel centre
    gap = extent - (np.array(image.shape[1:]) - 1) * np.array(spacing)
    assert np.all(gap > -1e-6) and np.all(gap < np.array(spacing))  # same field of view, to a voxel

    # intensities: [0, 1], and equal to clip → percentiles → scale on the resampled HU
    value = image.as_tensor().numpy()
    assert value.min() >= 0.0 and value.max() <= 1.0 and value.min() == 0.0 and value.max() == 1.0
    hu = T.Compose(load_transforms(keys) + geometry_transforms(cfg, keys))(item)["image"].as_tensor().numpy()
    assert hu.min() < CLIP[0] and hu.max() > CLIP[1]  # the clip really does something here
    clipped = np.clip(hu, *CLIP)
    lo, hi = np.percentile(clipped, PERCENTILES)
    expected = np.clip((clipped - lo) / (hi - lo), 0.0, 1.0)
    assert np.allclose(value, expected, atol=1e-5)
    # percentiles taken before the clip would give a different image
    raw_lo, raw_hi = np.percentile(hu, PERCENTILES)
    wrong = np.clip((hu - raw_lo) / (raw_hi - raw_lo), 0.0, 1.0)
    assert not np.allclose(value, wrong, atol=1e-2)
    # labels are resampled with nearest neighbour: still the FLARE22 integer classes
    labels = np.unique(label.as_tensor().numpy())
    assert np.array_equal(labels, np.round(labels)) and labels.min() == 0 and labels.max() <= 13
