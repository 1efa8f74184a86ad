"""FLARE22: the paper's splits, the unlabeled pool, missing-root messages, the FLARE22-layout phantom."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from vrsearch.core.step import DataNeeds
from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.data.flare22 import FLARE22_LABELS
from vrsearch.data.layouts import LAYOUTS, read_dataset
from vrsearch.data.phantom import PhantomConfig, generate_case, phantom_affine, write_phantom
from vrsearch.data.phantom_flare import write_phantom_flare22
from vrsearch.data.prepare import prepare_data
from vrsearch.data.splits import make_split, pool_cases
from vrsearch.errors import DataError
from vrsearch.study.schema import DatasetConfig

TINY_FLARE = PhantomConfig(cases=5, unlabeled=3, test=1, seed=3, size=(32, 24, 16), spacing=(10.0, 10.0, 12.0))
LABELED = "Training/FLARE22_LabeledCase50"


def _flare_index(n_labeled: int = 70, n_unlabeled: int = 400, reverse: bool = False) -> DatasetIndex:
    """Fake FLARE22 index (70 labeled, 400 unlabeled); the paths need not exist for make_split."""
    root = Path("/data/FLARE22")
    labeled = [
        Case(
            f"FLARE22_Tr_{i:04d}",
            root / f"{LABELED}/images/FLARE22_Tr_{i:04d}_0000.nii.gz",
            root / f"{LABELED}/labels/FLARE22_Tr_{i:04d}.nii.gz",
        )
        for i in range(1, n_labeled + 1)
    ]
    unlabeled = [
        Case(f"Case_{i:05d}", root / f"Training/FLARE22_UnlabeledCase1-1000/Case_{i:05d}_0000.nii.gz", None)
        for i in range(1, n_unlabeled + 1)
    ]
    if reverse:
        labeled.reverse()
        unlabeled.reverse()
    return DatasetIndex(root, "FLARE22", dict(FLARE22_LABELS), tuple(labeled), tuple(unlabeled), ())


PAPER = dict(labeled_ratio=1.0, split_seed=0, val_fraction=0.2, test_fraction=0.2)


def _ids(cases) -> list[str]:
    return [c.id for c in cases]


# ------------------------------------------------------------- paper splits


@pytest.mark.parametrize("pool", [42, 378])
def test_paper_split_is_42_14_14_with_pool(pool):
    split = make_split(_flare_index(), **PAPER, unlabeled_pool=pool)
    assert (len(split.labeled), len(split.val), len(split.test)) == (42, 14, 14)
    assert len(split.unlabeled) == pool
    assert all(c.label is None and c.id.startswith("Case_") for c in split.unlabeled)
    assert len(set(_ids(split.unlabeled))) == pool


def test_pool_none_keeps_the_whole_pool_sorted():
    split = make_split(_flare_index(), **PAPER)
    assert _ids(split.unlabeled) == [f"Case_{i:05d}" for i in range(1, 401)]


def test_pools_are_nested_and_deterministic():
    index = _flare_index()
    small = make_split(index, **PAPER, unlabeled_pool=42)
    large = make_split(index, **PAPER, unlabeled_pool=378)
    assert large.unlabeled[:42] == small.unlabeled  # 42 ⊂ 378, as a prefix
    assert set(_ids(small.unlabeled)) < set(_ids(large.unlabeled))
    # labeled/val/test do not depend on the pool size
    assert (small.labeled, small.val, small.test) == (large.labeled, large.val, large.test)
    # same inputs, same split; file-system order does not matter
    assert make_split(index, **PAPER, unlabeled_pool=42) == small
    assert make_split(_flare_index(reverse=True), **PAPER, unlabeled_pool=42) == small
    # the choice is a shuffle, not the first ids, and changes with the split seed
    assert _ids(small.unlabeled) != [f"Case_{i:05d}" for i in range(1, 43)]
    other = make_split(index, **{**PAPER, "split_seed": 1}, unlabeled_pool=42)
    assert set(_ids(other.unlabeled)) != set(_ids(small.unlabeled))


def test_pool_choice_is_independent_of_the_labeled_shuffle():
    """The pool uses its own stream of the seed: the labeled count does not move it."""
    a = pool_cases(_flare_index(n_labeled=70), 0, 42)
    b = pool_cases(_flare_index(n_labeled=20), 0, 42)
    assert a == b
    assert make_split(_flare_index(n_labeled=20), **PAPER, unlabeled_pool=42).unlabeled == a


def test_pool_larger_than_the_dataset_is_one_line_error():
    with pytest.raises(DataError) as err:
        make_split(_flare_index(n_unlabeled=40), **PAPER, unlabeled_pool=378)
    assert str(err.value) == "dataset.unlabeled_pool is 378 but /data/FLARE22 has only 40 unlabeled images"


def test_pool_zero_and_withheld_labels():
    split = make_split(_flare_index(), **{**PAPER, "labeled_ratio": 0.5}, unlabeled_pool=0)
    assert len(split.labeled) == 21 and len(split.unlabeled) == 21  # only withheld-label cases
    assert all(c.id.startswith("FLARE22_Tr_") for c in split.unlabeled)


def test_schema_unlabeled_pool():
    assert DatasetConfig().unlabeled_pool is None
    assert DatasetConfig(layout="flare22", unlabeled_pool=378).unlabeled_pool == 378
    with pytest.raises(ValidationError):
        DatasetConfig(unlabeled_pool=-1)


# ------------------------------------------------------- missing dataset root

HINTS = {
    "flare22": (
        "FLARE22 dataset",
        "Training/FLARE22_LabeledCase50/{images,labels}/",
        "Training/FLARE22_UnlabeledCase*/",
        "Validation/",
    ),
    "msd": ("MSD dataset", "dataset.json", "imagesTr/", "labelsTr/"),
    "nnunet": ("nnU-Net dataset", "imagesTr/<case>_0000.nii.gz", "labelsTr/<case>.nii.gz", "imagesUnlabeled/"),
    "acdc": ("ACDC dataset", "training/patientXXX/", "Info.cfg"),
}


def test_every_layout_has_a_hint():
    assert set(HINTS) == set(LAYOUTS)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_root_says_where_and_which_layout(tmp_path, monkeypatch, layout):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as err:
        read_dataset(layout, Path("data") / "missing")  # relative: the message shows it absolute
    msg = str(err.value)
    assert "\n" not in msg
    assert f"not found at {tmp_path / 'data' / 'missing'}:" in msg
    assert msg.endswith("or set dataset.root")
    for fragment in HINTS[layout]:
        assert fragment in msg, (fragment, msg)


def test_existing_but_wrong_flare_folder_is_one_line(tmp_path):
    (tmp_path / "FLARE22" / "Training").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        read_dataset("flare22", tmp_path / "FLARE22")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "FLARE22") in msg and "FLARE22_LabeledCase50" in msg


# ------------------------------------------------------- FLARE22-layout phantom


@pytest.fixture(scope="module")
def flare_root(tmp_path_factory) -> Path:
    return write_phantom_flare22(tmp_path_factory.mktemp("flare") / "FLARE22", TINY_FLARE)


def test_flare_phantom_files(flare_root):
    root = flare_root
    assert (root / LABELED / "images" / "FLARE22_Tr_0001_0000.nii.gz").is_file()
    assert (root / LABELED / "labels" / "FLARE22_Tr_0005.nii.gz").is_file()
    assert (root / "Training/FLARE22_UnlabeledCase1-1000/Case_00003_0000.nii.gz").is_file()
    assert (root / "Validation/FLARETs_0001_0000.nii.gz").is_file()
    assert not (root / "dataset.json").exists()
    stamp = json.loads((root / "phantom.json").read_text())
    assert stamp["layout"] == "flare22" and stamp["config"]["cases"] == 5
    img = nib.load(root / LABELED / "images" / "FLARE22_Tr_0002_0000.nii.gz")
    lab = nib.load(root / LABELED / "labels" / "FLARE22_Tr_0002.nii.gz")
    assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
    assert np.allclose(img.affine, phantom_affine(TINY_FLARE)) and np.allclose(lab.affine, img.affine)
    # FLARE22_Tr_0002 is subject 1, the same volume as phantom_001 of write_phantom
    image, label, _ = generate_case(1, TINY_FLARE)
    assert np.array_equal(np.asarray(img.dataobj), image) and np.array_equal(np.asarray(lab.dataobj), label)
    unl = nib.load(root / "Training/FLARE22_UnlabeledCase1-1000/Case_00001_0000.nii.gz")
    assert np.array_equal(np.asarray(unl.dataobj), generate_case(5, TINY_FLARE)[0])


def test_flare_phantom_is_indexed_by_the_flare22_reader(flare_root):
    index = read_dataset("flare22", flare_root)
    assert index.name == "FLARE22" and index.labels == FLARE22_LABELS and index.num_classes == 14
    assert _ids(index.labeled) == [f"FLARE22_Tr_{i:04d}" for i in range(1, 6)]
    assert _ids(index.unlabeled) == ["Case_00001", "Case_00002", "Case_00003"]
    assert _ids(index.test) == ["FLARETs_0001"]
    for case in (*index.labeled, *index.test):
        assert case.image.name == f"{case.id}_0000.nii.gz"
        assert case.label.name == f"{case.id}.nii.gz" and case.label.parent.name == "labels"
        assert nib.load(case.label).shape == nib.load(case.image).shape
    assert all(c.label is None for c in index.unlabeled)


def test_flare_phantom_is_idempotent_and_refuses_other_content(tmp_path, flare_root):
    assert write_phantom_flare22(flare_root, TINY_FLARE) == flare_root
    with pytest.raises(FileExistsError, match=r"other settings \(seed 3, wanted 4\)"):
        write_phantom_flare22(flare_root, dataclasses.replace(TINY_FLARE, seed=4))
    nnunet = write_phantom(tmp_path / "nn", dataclasses.replace(TINY_FLARE, cases=2, unlabeled=0, test=0))
    with pytest.raises(FileExistsError):  # an nnU-Net phantom is not overwritten either
        write_phantom_flare22(nnunet, dataclasses.replace(TINY_FLARE, cases=2, unlabeled=0, test=0))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a phantom"):
        write_phantom_flare22(tmp_path / "other", TINY_FLARE)
    assert not list(tmp_path.glob(".*partial"))


def test_prepare_data_threads_the_pool_through(flare_root):
    cfg = DatasetConfig(
        layout="flare22",
        root=flare_root,
        labeled_ratio=1.0,
        val_fraction=0.2,
        test_fraction=0.2,
        unlabeled_pool=2,
        patch_size=(16, 16, 16),
    )
    data = prepare_data(cfg, method="supervised", needs=DataNeeds(unlabeled=True))
    assert (len(data.split.labeled), len(data.split.val), len(data.split.test)) == (3, 1, 1)
    assert data.split.unlabeled == pool_cases(data.index, 0, 2) and len(data.split.unlabeled) == 2
    assert data.class_names == tuple(FLARE22_LABELS.values())
    with pytest.raises(DataError, match="dataset.unlabeled_pool is 4 but .* has only 3 unlabeled images"):
        prepare_data(cfg.model_copy(update={"unlabeled_pool": 4}), method="supervised", needs=DataNeeds(unlabeled=True))
    with pytest.raises(DataError, match="dataset.unlabeled_pool is 0"):
        prepare_data(
            cfg.model_copy(update={"unlabeled_pool": 0}), method="mean_teacher", needs=DataNeeds(unlabeled=True)
        )
