"""The prepared-data cache: the same arrays as the transforms it replaces, built once,
invalidated by a changed file or setting, and rebuilt — never trusted — when damaged."""

from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai import transforms as T

from vrsearch.data import prepared
from vrsearch.data.cases import Case
from vrsearch.data.pipeline import (
    BatchSource,
    PatchStream,
    cached,
    case_dicts,
    labeled_train_transform,
    preprocess,
    preprocess_settings,
)
from vrsearch.data.prepared import PreparedStore, entry_key
from vrsearch.engine.evaluate import load_eval_cases
from vrsearch.study.schema import DatasetConfig


def oblique_case(tmp_path) -> Case:
    """An LPS-ordered, anisotropic image + label that reorientation and resampling change."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 30, (14, 11, 9)).astype(np.float32)
    label = (image > 110).astype(np.uint8) + (image > 140)
    affine = np.array([[-1.5, 0, 0, 10], [0, -1.2, 0, 5], [0, 0, 2.5, -3], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "o_0000.nii.gz")
    nib.save(nib.Nifti1Image(label.astype(np.uint8), affine), tmp_path / "o.nii.gz")
    return Case("o", tmp_path / "o_0000.nii.gz", tmp_path / "o.nii.gz")


CFG = DatasetConfig(patch_size=(8, 8, 6), spacing=(1.0, 1.0, 1.7), intensity={"scale": "percentile"})


@pytest.fixture(autouse=True)
def fresh_process_memory():
    prepared.forget_open()
    yield
    prepared.forget_open()


def counting(store: PreparedStore):
    """``store.get`` wrapped to count the builds it runs."""
    builds = []
    get = store.get

    def wrapped(key, build):
        return get(key, lambda: builds.append(key) or build())

    store.get = wrapped
    return builds


def test_cached_arrays_equal_the_transforms_they_replace(tmp_path):
    case = oblique_case(tmp_path)
    store = PreparedStore(tmp_path / "cache")
    item = {"image": str(case.image), "label": str(case.label)}
    want = T.Compose(preprocess(CFG, ["image", "label"]))(dict(item))
    for _ in range(2):  # built, then read back (memory-mapped in this process)
        got = T.Compose(preprocess(CFG, ["image", "label"], store))(dict(item))
        for k in ("image", "label"):
            assert got[k].shape == want[k].shape and got[k].dtype == want[k].dtype
            assert torch.equal(got[k].as_tensor(), want[k].as_tensor()), k
            assert torch.equal(got[k].affine, want[k].affine), k
    plain, warm = load_eval_cases([case], CFG)[0], load_eval_cases([case], CFG, store)[0]
    assert torch.equal(plain.image.as_tensor(), warm.image.as_tensor()) and torch.equal(plain.label, warm.label)
    assert np.array_equal(plain.label_affine, warm.label_affine) and plain.spacing == warm.spacing
    # training batches drawn through the cache are the batches drawn without it
    a = cached(case_dicts([case], True), labeled_train_transform(CFG, 3), CFG)
    b = cached(case_dicts([case], True), labeled_train_transform(CFG, 3, store), CFG)
    for it in range(3):
        x, y = (BatchSource(PatchStream(ds, 2, 7, 0), None, 0, 3).batch(it) for ds in (a, b))
        assert torch.equal(x.image, y.image) and torch.equal(x.label, y.label) and torch.equal(x.positions, y.positions)


def test_built_once_then_read_by_every_process(tmp_path):
    case = oblique_case(tmp_path)
    store = PreparedStore(tmp_path / "cache")
    builds = counting(store)
    t = T.Compose(preprocess(CFG, ["image"], store))
    first = t({"image": str(case.image)})["image"]
    prepared.forget_open()  # as another process would: verified from the files
    second = t({"image": str(case.image)})["image"]
    assert len(builds) == 1  # asked twice, built once
    assert len(list((tmp_path / "cache").glob("*/*/entry.json"))) == 1
    assert torch.equal(first.as_tensor(), second.as_tensor())
    second += 1  # a reader's copy is its own: the cache is unchanged
    assert torch.equal(t({"image": str(case.image)})["image"].as_tensor(), first.as_tensor())


def build_calls(store: PreparedStore, key: str, make) -> int:
    calls = []
    store.get(key, lambda: calls.append(1) or make())
    return len(calls)


def image_entry(case: Case, cfg: DatasetConfig = CFG):
    key = entry_key("preprocess", {"image": str(case.image)}, preprocess_settings(cfg))
    return key, lambda: {"image": T.Compose(preprocess(cfg, ["image"]))({"image": str(case.image)})["image"]}


def test_a_changed_file_or_setting_is_a_new_key(tmp_path):
    case = oblique_case(tmp_path)
    key, _ = image_entry(case)
    assert key == image_entry(case)[0]
    assert key != image_entry(case, CFG.model_copy(update={"spacing": (1.0, 1.0, 1.8)}))[0]
    assert key != image_entry(case, CFG.model_copy(update={"orientation": "LPS"}))[0]
    assert (
        key
        != image_entry(
            case, DatasetConfig(patch_size=(8, 8, 6), spacing=(1.0, 1.0, 1.7), intensity={"scale": "zscore"})
        )[0]
    )
    img = nib.load(case.image)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 1, img.affine), case.image)  # new content
    assert key != image_entry(case)[0]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_entry", "bad_entry"])
def test_a_damaged_entry_is_rebuilt_never_read(tmp_path, damage):
    case = oblique_case(tmp_path)
    store = PreparedStore(tmp_path / "cache")
    key, make = image_entry(case)
    assert build_calls(store, key, make) == 1
    good = store.get(key, make)["image"].clone()
    folder = store.folder(key)
    npy = folder / "image.npy"
    if damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "flip_byte":  # same size, different content: only the digest sees it
        data = bytearray(npy.read_bytes())
        data[-5] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "no_entry":
        (folder / "entry.json").unlink()
    else:
        (folder / "entry.json").write_text("{not json")
    prepared.forget_open()
    assert store.open(key) is None
    assert build_calls(store, key, make) == 1
    assert torch.equal(store.get(key, make)["image"], good)
    assert store.open(key) is not None


KILL_MID_WRITE = """
import os, signal, sys
from pathlib import Path
from monai import transforms as T
from vrsearch.data import prepared
from vrsearch.data.pipeline import preprocess
from vrsearch.study.schema import DatasetConfig

real = prepared._replace_atomic
def dying(path, write):
    if path.name == prepared.ENTRY_FILE:  # the arrays are written; the entry that vouches for them is not
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, write)
prepared._replace_atomic = dying
cfg = DatasetConfig.model_validate_json(sys.argv[3])
T.Compose(preprocess(cfg, ["image"], prepared.PreparedStore(sys.argv[1])))({"image": sys.argv[2]})
"""


def test_a_cache_killed_mid_write_is_rebuilt(tmp_path):
    case = oblique_case(tmp_path)
    root = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_MID_WRITE, str(root), str(case.image), CFG.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    store = PreparedStore(root)
    key, make = image_entry(case)
    assert (store.folder(key) / "image.npy").exists() and not (store.folder(key) / "entry.json").exists()
    assert store.open(key) is None
    assert build_calls(store, key, make) == 1
    entry = json.loads((store.folder(key) / "entry.json").read_text())
    assert entry["key"] == key and entry["arrays"]["image"]["shape"][0] == 1
    assert torch.equal(store.get(key, make)["image"].as_tensor(), make()["image"].as_tensor())
