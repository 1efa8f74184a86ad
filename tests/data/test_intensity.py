"""Intensity defaults that fit the modality, and a warning when a clip saturates the data.

An MR-like dataset (arbitrary units in the hundreds to thousands, declared ``MRI``)
goes through the real preprocessing (MONAI transforms) with default settings: no clip,
per-volume percentiles, so only the top 0.5 % percentile tail reaches 1.0. A CT window
forced on it saturates most voxels and ``vrsearch validate --check-data`` says so."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import tiny_study_dict
from tests.corpus._util import cli_in_process
from vrsearch.data.intensity import CT_WINDOW, resolve, saturation_warnings
from vrsearch.data.pipeline import preprocess
from vrsearch.data.prepare import prepare_data
from vrsearch.errors import DataError
from vrsearch.study.schema import DatasetConfig


def mr_like(shape=(24, 24, 16), scale: float = 1.0, seed: int = 0) -> np.ndarray:
    """A head-like T1: background ~0, tissue 300-1200 a.u. with smooth variation and noise."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    r = np.sqrt(x**2 + y**2 + (z * 1.3) ** 2)
    tissue = np.where(r < 0.8, 700 + 400 * np.cos(3 * r) + 150 * x, 0.0)
    return ((tissue + rng.normal(0, 30, shape)).clip(0) * scale).astype(np.float32)


def write_mr_dataset(root: Path, n: int = 4, scale: float = 1.0) -> Path:
    root.mkdir(parents=True)
    (root / "imagesTr").mkdir()
    (root / "labelsTr").mkdir()
    training = []
    for i in range(n):
        image = mr_like(scale=scale, seed=i)
        label = (image > 0.5 * image.max()).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / "imagesTr" / f"c{i}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "labelsTr" / f"c{i}.nii.gz")
        training.append({"image": f"./imagesTr/c{i}.nii.gz", "label": f"./labelsTr/c{i}.nii.gz"})
    (root / "dataset.json").write_text(
        json.dumps(
            {"name": "mr", "modality": {"0": "MRI"}, "labels": {"0": "background", "1": "tissue"}, "training": training}
        )
    )
    return root


def prepared(root: Path, **intensity):
    cfg = DatasetConfig(
        layout="msd",
        root=root,
        labeled_ratio=0.5,
        val_fraction=0.25,
        test_fraction=0.25,
        patch_size=(16, 16, 16),
        **({"intensity": intensity} if intensity else {}),
    )
    return prepare_data(cfg, method="supervised")


def scaled_image(data, case) -> np.ndarray:
    from monai.transforms import Compose

    out = Compose(preprocess(data.dataset, ["image"]))({"image": str(case.image)})
    return np.asarray(out["image"])


def test_mr_defaults_do_not_saturate(tmp_path):
    data = prepared(write_mr_dataset(tmp_path / "mr", scale=10.0))  # the crop scaled x10
    assert data.index.modality == "MRI"
    assert data.dataset.intensity.scale == "percentile" and data.dataset.intensity.clip is None
    image = scaled_image(data, data.index.labeled[0])
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert np.mean(image >= 1.0) <= 0.01  # only the 99.5th-percentile tail
    assert saturation_warnings(data.index, data.dataset) == []


def test_a_ct_window_on_mr_saturates_and_is_flagged(tmp_path):
    data = prepared(write_mr_dataset(tmp_path / "mr", scale=10.0), scale="percentile", clip=list(CT_WINDOW))
    case = data.index.labeled[0]
    tissue = np.asarray(nib.load(str(case.image)).dataobj) > 1000  # 100-1200 a.u. before the x10
    image = scaled_image(data, case)[0]
    assert np.mean(image[tissue] >= 1.0) > 0.99  # what the user would have trained on: flat tissue
    lines = saturation_warnings(data.index, data.dataset)
    assert len(lines) == 4 and all("dataset.intensity.clip [-325, 325] saturates" in ln for ln in lines)
    assert str(data.index.labeled[0].image) in "".join(lines)


def test_validate_check_data_prints_the_warning(tmp_path):
    root = write_mr_dataset(tmp_path / "mr", scale=10.0)
    study = tiny_study_dict(root, tmp_path / "out")
    study["dataset"]["intensity"] = {"scale": "percentile", "clip": [-325, 325]}
    path = tmp_path / "study.yaml"
    import yaml

    path.write_text(yaml.safe_dump(study))
    res = cli_in_process("validate", path, "--check-data")
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("warning: ")]
    assert warnings and "saturates" in warnings[0]
    clean = cli_in_process("validate", path, "--check-data", "--set", "dataset.intensity.clip=null")
    assert clean.returncode == 0 and "warning" not in clean.stderr
    assert "MRI, intensity percentiles 0.5-99.5 to [0, 1]" in clean.stderr


def test_ct_keeps_the_soft_tissue_window_without_warnings(tiny_phantom):
    data = prepared(tiny_phantom)
    assert data.index.modality == "CT"
    assert data.dataset.intensity.scale == "window" and tuple(data.dataset.intensity.clip) == CT_WINDOW
    assert saturation_warnings(data.index, data.dataset) == []


def test_a_window_without_clip_needs_ct(tmp_path):
    with pytest.raises(DataError, match="dataset.intensity.clip: scale 'window' needs a clip range for MRI"):
        prepared(write_mr_dataset(tmp_path / "mr"), scale="window")


@pytest.mark.parametrize(
    ("modality", "scale"),
    [("CT", "window"), ("ct", "window"), ("MRI", "percentile"), ("T2", "percentile"), ("", "percentile")],
)
def test_auto_follows_the_modality(modality, scale):
    assert resolve(DatasetConfig(), modality).intensity.scale == scale
