"""The synthetic abdominal CT phantom: anatomy, intensities, orientation, files."""

from __future__ import annotations

import dataclasses
import json
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from vrsearch.data import phantom
from vrsearch.data.phantom import (
    LABEL_NAMES,
    ORGANS,
    PhantomConfig,
    gallbladder_absent,
    generate_case,
    write_phantom,
)

SMALL = dict(size=(64, 64, 40), spacing=(5.0, 5.0, 6.4))
TINY = PhantomConfig(cases=3, unlabeled=2, test=1, seed=5, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
GB = 9


def centroid_mm(label: np.ndarray, affine: np.ndarray, value: int) -> np.ndarray:
    ijk = np.argwhere(label == value).mean(0)
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.fixture(scope="module")
def default_cases():
    """Four subjects at the default resolution (volumes are in true mL)."""
    cfg = PhantomConfig()
    return cfg, [generate_case(i, cfg) for i in range(4)]


def test_table_and_names_follow_flare22_order():
    assert [o.label for o in ORGANS] == list(range(1, 14))
    assert LABEL_NAMES[0] == "background" and LABEL_NAMES[1] == "liver" and LABEL_NAMES[13] == "left_kidney"
    assert [LABEL_NAMES[i] for i in (2, 3, 7, 8, 9, 11)] == [
        "right_kidney", "spleen", "right_adrenal", "left_adrenal", "gallbladder", "stomach"]


def test_same_seed_same_case_other_seed_or_index_differs():
    cfg = PhantomConfig(seed=7, **SMALL)
    a_img, a_lab, a_aff = generate_case(2, cfg)
    b_img, b_lab, b_aff = generate_case(2, cfg)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_lab, b_lab) and np.array_equal(a_aff, b_aff)
    c_img, c_lab, _ = generate_case(2, PhantomConfig(seed=8, **SMALL))
    assert not np.array_equal(a_lab, c_lab) and not np.array_equal(a_img, c_img)
    d_img, d_lab, _ = generate_case(3, cfg)
    assert not np.array_equal(a_lab, d_lab)
    # the case count does not change a subject
    assert np.array_equal(generate_case(2, PhantomConfig(seed=7, cases=2, unlabeled=0, **SMALL))[1], a_lab)


@pytest.mark.parametrize("index", [0, 1, 3])
def test_types_and_all_organs_present(index):
    cfg = PhantomConfig(seed=0, **SMALL)
    image, label, affine = generate_case(index, cfg)
    assert image.dtype == np.int16 and label.dtype == np.uint8 and affine.dtype == np.float64
    assert image.shape == label.shape == cfg.size and label.max() <= 13
    expected = set(range(14)) - ({GB} if gallbladder_absent(cfg.seed, index) else set())
    assert set(np.unique(label).tolist()) == expected
    assert image.min() >= -1024 and image.max() > 500  # air floor, bone


def test_organ_volumes_have_the_long_tail(default_cases):
    cfg, cases = default_cases
    voxel_ml = float(np.prod(cfg.spacing)) / 1000
    vols = np.mean([np.bincount(lab.ravel(), minlength=14) * voxel_ml for _, lab, _ in cases], axis=0)
    v = dict(zip(LABEL_NAMES.values(), vols))
    kidneys = min(v["right_kidney"], v["left_kidney"])
    assert v["liver"] > v["stomach"] > v["spleen"] > kidneys
    assert kidneys > max(v["aorta"], v["pancreas"], v["duodenum"])
    assert min(v["aorta"], v["pancreas"], v["duodenum"]) > max(v["gallbladder"], v["esophagus"])
    assert min(v["gallbladder"], v["esophagus"]) > max(v["right_adrenal"], v["left_adrenal"])
    assert 900 < v["liver"] < 2200
    assert 1 < v["right_adrenal"] < 10 and 1 < v["left_adrenal"] < 10
    assert v["liver"] / max(v["right_adrenal"], v["left_adrenal"]) > 100


def test_volumes_track_the_table_per_subject(default_cases):
    cfg, cases = default_cases
    voxel_ml = float(np.prod(cfg.spacing)) / 1000
    for _, lab, _ in cases:
        counts = np.bincount(lab.ravel(), minlength=14) * voxel_ml
        for o in ORGANS:
            if counts[o.label] == 0:
                continue
            # drawn volumes are log-normal around the table (sigma <= 0.4)
            assert o.volume_ml / 3.5 < counts[o.label] < o.volume_ml * 3.5, o.name


def test_hu_means_and_contrasts(default_cases):
    _, cases = default_cases
    for image, label, _ in cases:
        mean = {o.name: float(image[label == o.label].mean()) for o in ORGANS if (label == o.label).any()}
        core = {o.name: float(image[ndimage.binary_erosion(label == o.label)].mean())
                for o in ORGANS if o.label in (1, 2, 3, 5, 13)}
        assert abs(mean["liver"] - 105) < 25
        for o in ORGANS:
            if o.name in core:
                assert abs(core[o.name] - o.hu_mean) < 35, o.name
        assert core["right_kidney"] > mean["liver"] > mean.get("gallbladder", -100)
        assert image[0, 0, 0] < -900  # air in the corner
        # anterior subcutaneous fat: 2-3 voxels (7-10 mm) below the skin along each column
        skin = np.argmax(image[:, ::-1, :] > -500, axis=1)  # first body voxel from anterior
        xs, zs = np.nonzero(skin > 0)
        xs, zs = xs[np.abs(xs - image.shape[0] // 2) < 8], zs[np.abs(xs - image.shape[0] // 2) < 8]
        ny = image.shape[1]
        fat = [image[x, ny - 1 - skin[x, z] - d, z] for x, z in zip(xs, zs) for d in (2, 3)]
        assert np.median(fat) < -50


def test_orientation_is_ras(default_cases):
    cfg, cases = default_cases
    for image, label, affine in cases:
        assert np.allclose(np.diag(affine)[:3], cfg.spacing) and np.allclose(affine[:3, :3], np.diag(cfg.spacing))
        assert np.allclose(affine[:3, :3] @ (np.array(cfg.size) - 1) / 2 + affine[:3, 3], 0)  # centred
        c = {o.name: centroid_mm(label, affine, o.label) for o in ORGANS if (label == o.label).any()}
        assert c["liver"][0] < 0 < c["spleen"][0]  # patient's right is -x in RAS
        assert c["right_kidney"][0] < c["left_kidney"][0]
        assert c["right_adrenal"][0] < c["left_adrenal"][0]
        assert max(c["right_kidney"][1], c["left_kidney"][1]) < c["stomach"][1]  # kidneys posterior
        assert c["liver"][2] > max(c["right_kidney"][2], c["left_kidney"][2])    # liver superior
        assert c["aorta"][1] < c["pancreas"][1]


def test_gallbladder_absent_sometimes_but_rarely():
    for seed in range(5):
        absent = [i for i in range(24) if gallbladder_absent(seed, i)]
        assert 1 <= len(absent) <= 6, (seed, absent)
    rate = np.mean([gallbladder_absent(s, i) for s in range(10) for i in range(96)])
    assert 0.05 < rate < 0.13
    cfg = PhantomConfig(seed=0, size=(32, 32, 24), spacing=(10.0, 10.0, 10.5))
    gone = next(i for i in range(24) if gallbladder_absent(0, i))
    kept = next(i for i in range(24) if not gallbladder_absent(0, i))
    assert not (generate_case(gone, cfg)[1] == GB).any()
    assert (generate_case(kept, cfg)[1] == GB).any()


def test_write_layout_dataset_json_and_roundtrip(tmp_path):
    calls = []
    root = write_phantom(tmp_path / "ds", TINY, progress=lambda i, n: calls.append((i, n)))
    assert root == tmp_path / "ds"
    assert calls == [(i, 6) for i in range(1, 7)]
    names = lambda d: sorted(p.name for p in (root / d).iterdir())  # noqa: E731
    assert names("imagesTr") == [f"phantom_{i:03d}_0000.nii.gz" for i in range(3)]
    assert names("labelsTr") == [f"phantom_{i:03d}.nii.gz" for i in range(3)]
    assert names("imagesUnlabeled") == ["phantom_003_0000.nii.gz", "phantom_004_0000.nii.gz"]
    assert names("imagesTs") == ["phantom_005_0000.nii.gz"] and names("labelsTs") == ["phantom_005.nii.gz"]
    ds = json.loads((root / "dataset.json").read_text())
    assert ds["name"] == "vrsearch-phantom" and ds["tensorImageSize"] == "3D" and ds["file_ending"] == ".nii.gz"
    assert ds["modality"] == {"0": "CT"} and ds["channel_names"] == {"0": "CT"}
    assert ds["labels"] == {str(k): v for k, v in LABEL_NAMES.items()} and len(ds["labels"]) == 14
    assert ds["numTraining"] == 3 and ds["numTest"] == 1
    assert ds["training"][0] == {"image": "./imagesTr/phantom_000_0000.nii.gz",
                                 "label": "./labelsTr/phantom_000.nii.gz"}
    assert ds["test"] == [{"image": "./imagesTs/phantom_005_0000.nii.gz", "label": "./labelsTs/phantom_005.nii.gz"}]
    assert ds["unlabeled"] == [{"image": f"./imagesUnlabeled/phantom_{i:03d}_0000.nii.gz"} for i in (3, 4)]
    for entry in ds["training"] + ds["test"] + ds["unlabeled"]:
        assert all((root / p).is_file() for p in entry.values())
    assert json.loads((root / "phantom.json").read_text())["config"]["seed"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name != "ds"]  # no temporary leftovers
    # files load back with the same arrays, affine, spacing and dtypes
    image, label, affine = generate_case(5, TINY)
    img, lab = nib.load(root / "imagesTs/phantom_005_0000.nii.gz"), nib.load(root / "labelsTs/phantom_005.nii.gz")
    for nii, arr, dtype in ((img, image, np.int16), (lab, label, np.uint8)):
        assert nii.get_data_dtype() == dtype and np.asanyarray(nii.dataobj).dtype == dtype
        assert np.array_equal(np.asanyarray(nii.dataobj), arr)
        assert np.allclose(nii.affine, affine) and np.allclose(nii.header.get_zooms(), TINY.spacing)
        assert int(nii.header["qform_code"]) == 1 and int(nii.header["sform_code"]) == 1
        assert nii.header.get_xyzt_units()[0] == "mm"
        assert nib.aff2axcodes(nii.affine) == ("R", "A", "S")


def test_write_is_idempotent_and_refuses_other_content(tmp_path):
    root = write_phantom(tmp_path / "ds", TINY)
    stamp = (root / "phantom.json").stat().st_mtime_ns
    first = (root / "imagesTr/phantom_000_0000.nii.gz").stat().st_mtime_ns
    assert write_phantom(str(tmp_path / "ds"), TINY) == root
    assert (root / "phantom.json").stat().st_mtime_ns == stamp
    assert (root / "imagesTr/phantom_000_0000.nii.gz").stat().st_mtime_ns == first
    with pytest.raises(FileExistsError, match="different config"):
        write_phantom(root, dataclasses.replace(TINY, seed=6))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError) as err:
        write_phantom(foreign, TINY)
    assert "\n" not in str(err.value)
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_phantom(empty, TINY) / "phantom.json").is_file()


def test_failed_generation_leaves_nothing(tmp_path, monkeypatch):
    real, calls = phantom.generate_case, []

    def flaky(index, config):
        calls.append(index)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(index, config)

    monkeypatch.setattr(phantom, "generate_case", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        write_phantom(tmp_path / "ds", TINY)
    assert len(calls) == 3
    assert not (tmp_path / "ds").exists()
    assert os.listdir(tmp_path) == []


def test_config_validation():
    with pytest.raises(ValueError):
        PhantomConfig(size=(4, 4, 4))
    with pytest.raises(ValueError):
        PhantomConfig(spacing=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        PhantomConfig(cases=-1)
    assert PhantomConfig(size=[32, 32, 24], spacing=[10, 10, 10]).size == (32, 32, 24)
