"""The real ``vrsearch`` console script on FLARE22-layout studies (fast: tiny phantom, no training)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.e2e.test_cli import cli
from vrsearch.data.phantom import PhantomConfig
from vrsearch.data.phantom_flare import write_phantom_flare22

TINY_FLARE = PhantomConfig(cases=6, unlabeled=3, test=0, seed=2, size=(32, 24, 16), spacing=(10.0, 10.0, 12.0))


@pytest.fixture(scope="module")
def flare_root(tmp_path_factory) -> Path:
    return write_phantom_flare22(tmp_path_factory.mktemp("flare") / "FLARE22", TINY_FLARE)


def flare_study(tmp_path: Path, root: Path, **dataset) -> Path:
    study = tiny_study_dict(root, tmp_path / "run", dataset={"layout": "flare22", **dataset})
    path = tmp_path / "flare.yaml"
    path.write_text(yaml.safe_dump(study))
    return path


def output_lines(proc) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_validate_missing_flare_root_is_one_line(tmp_path):
    missing = tmp_path / "nowhere" / "FLARE22"
    proc = cli("validate", flare_study(tmp_path, missing), "--check-data")
    assert proc.returncode == 2, proc.stderr
    lines = output_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: FLARE22 dataset not found at ") and str(missing) in lines[0]
    assert "Training/FLARE22_LabeledCase50/{images,labels}/" in lines[0] and "dataset.root" in lines[0]


def test_validate_flare_phantom_succeeds(tmp_path, flare_root):
    proc = cli("validate", flare_study(tmp_path, flare_root, unlabeled_pool=2), "--check-data")
    assert proc.returncode == 0, proc.stderr
    assert "# data ok: 1 labeled, 3 unlabeled, 2 val, 2 test; 14 classes" in proc.stderr  # 1 withheld + 2 pool
    assert "layout: flare22" in proc.stdout and "unlabeled_pool: 2" in proc.stdout


def test_validate_pool_larger_than_the_folder_is_one_line(tmp_path, flare_root):
    proc = cli("validate", flare_study(tmp_path, flare_root, unlabeled_pool=378), "--check-data")
    assert proc.returncode == 2
    lines = output_lines(proc)
    assert lines == [f"error: dataset.unlabeled_pool is 378 but {flare_root} has only 3 unlabeled images"]


def test_data_phantom_flare22_layout(tmp_path):
    out = tmp_path / "F"
    proc = cli(
        "data",
        "phantom",
        out,
        "--layout",
        "flare22",
        "--cases",
        "2",
        "--unlabeled",
        "1",
        "--size",
        "16",
        "16",
        "16",
        "--spacing",
        "10",
        "10",
        "10",
    )
    assert proc.returncode == 0, proc.stderr
    assert "flare22 layout" in proc.stdout
    img = nib.load(out / "Training/FLARE22_LabeledCase50/images/FLARE22_Tr_0002_0000.nii.gz")
    assert img.shape == (16, 16, 16) and img.get_data_dtype() == np.int16
    assert (out / "Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0002.nii.gz").is_file()
    assert (out / "Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz").is_file()
    bad = cli("data", "phantom", tmp_path / "G", "--layout", "decathlon")
    assert bad.returncode == 2 and "decathlon" in bad.stderr
