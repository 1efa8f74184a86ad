"""Dataset layout readers: msd, nnunet, flare22 on tiny fake trees."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vrsearch.data.cases import Case, case_id
from vrsearch.data.flare22 import FLARE22_LABELS
from vrsearch.data.layouts import LAYOUTS, read_dataset
from vrsearch.errors import DataError

MSD_LABELS = {"0": "background", "1": "liver", "2": "spleen"}


def _nii(path: Path, label: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((8, 8, 6), np.uint8 if label else np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _json(root: Path, desc: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(desc))


def _msd(root: Path, n: int = 3, labels=None, suffix: str = "", **extra) -> Path:
    training = []
    for i in range(n):
        _nii(root / "imagesTr" / f"case_{i:03d}{suffix}.nii.gz")
        _nii(root / "labelsTr" / f"case_{i:03d}.nii.gz", label=True)
        training.append({"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"})
    _json(root, {"name": "Toy", "labels": labels or MSD_LABELS, "training": training, **extra})
    return root


def _nnunet(root: Path, labels=None, n: int = 3, channels=None, ts_labels: bool = True) -> Path:
    for i in range(n):
        _nii(root / "imagesTr" / f"toy_{i:03d}_0000.nii.gz")
        _nii(root / "labelsTr" / f"toy_{i:03d}.nii.gz", label=True)
    _nii(root / "imagesTs" / "toy_100_0000.nii.gz")
    _nii(root / "imagesTs" / "toy_101_0000.nii.gz")
    if ts_labels:
        _nii(root / "labelsTs" / "toy_100.nii.gz", label=True)
    _nii(root / "imagesUnlabeled" / "u_000_0000.nii.gz")
    _json(
        root,
        {
            "labels": labels or {"background": 0, "liver": 1, "spleen": 2},
            "channel_names": channels or {"0": "CT"},
            "file_ending": ".nii.gz",
            "numTraining": n,
        },
    )
    return root


# ------------------------------------------------------------------ generic


def test_unknown_layout_lists_valid_ones(tmp_path):
    with pytest.raises(DataError, match="unknown dataset layout .decathlon..*msd, nnunet, flare22, acdc"):
        read_dataset("decathlon", tmp_path)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_missing_root_names_it(tmp_path, layout):
    with pytest.raises(DataError, match=f"not found.*{tmp_path / 'nope'}"):
        read_dataset(layout, tmp_path / "nope")


def test_case_id_strips_ending_and_channel():
    assert case_id("FLARE22_Tr_0001_0000.nii.gz") == "FLARE22_Tr_0001"
    assert case_id("hippocampus_001.nii.gz") == "hippocampus_001"
    assert case_id("x_0000.nii") == "x"
    assert case_id("a_0000.mha", ".mha") == "a"


def test_case_hashable_despite_meta():
    a = Case("a", Path("a.nii.gz"), None, {"patient": "p1"})
    assert len({a, Case("a", Path("a.nii.gz"), None, {"patient": "p1"})}) == 1


# --------------------------------------------------------------------- MSD


def test_msd_reads_training_test_unlabeled(tmp_path):
    root = tmp_path / "Task99"
    _nii(root / "imagesTs" / "t_000.nii.gz")
    _nii(root / "labelsTs" / "t_001.nii.gz", label=True)
    _nii(root / "imagesTs" / "t_001.nii.gz")
    _nii(root / "imagesUn" / "u_000.nii.gz")
    _msd(
        root,
        test=["./imagesTs/t_000.nii.gz", {"image": "./imagesTs/t_001.nii.gz", "label": "./labelsTs/t_001.nii.gz"}],
        unlabeled=[{"image": "./imagesUn/u_000.nii.gz"}],
    )
    index = read_dataset("msd", str(root))
    assert index.name == "Toy" and index.root == root
    assert index.labels == {0: "background", 1: "liver", 2: "spleen"} and index.num_classes == 3
    assert [c.id for c in index.labeled] == ["case_000", "case_001", "case_002"]
    assert index.labeled[1].image == root / "imagesTr" / "case_001.nii.gz"
    assert index.labeled[1].label == root / "labelsTr" / "case_001.nii.gz"
    assert [(c.id, c.label) for c in index.test] == [("t_000", None), ("t_001", root / "labelsTs" / "t_001.nii.gz")]
    assert [(c.id, c.label) for c in index.unlabeled] == [("u_000", None)]


def test_msd_falls_back_to_channel_suffixed_image(tmp_path):
    index = read_dataset("msd", _msd(tmp_path / "d", suffix="_0000"))
    assert index.labeled[0].image.name == "case_000_0000.nii.gz"
    assert index.labeled[0].id == "case_000"


def test_msd_accepts_nnunet_label_direction_and_keeps_meta(tmp_path):
    root = _msd(tmp_path / "d", labels={"background": 0, "liver": 1})
    desc = json.loads((root / "dataset.json").read_text())
    desc["training"][0]["patient"] = "P7"
    (root / "dataset.json").write_text(json.dumps(desc))
    index = read_dataset("msd", root)
    assert index.labels == {0: "background", 1: "liver"}
    assert index.labeled[0].meta == {"patient": "P7"}


def test_msd_missing_json(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match=f"{tmp_path / 'd' / 'dataset.json'}"):
        read_dataset("msd", tmp_path / "d")


def test_msd_invalid_json_names_file_and_problem(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "dataset.json").write_text('{"labels": {"0": "background",}')
    with pytest.raises(DataError, match=r"invalid JSON in .*dataset\.json: .*line 1"):
        read_dataset("msd", root)


def test_msd_listed_image_missing(tmp_path):
    root = _msd(tmp_path / "d")
    (root / "imagesTr" / "case_001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"image listed in .*dataset\.json not found: .*imagesTr/case_001\.nii\.gz"):
        read_dataset("msd", root)


def test_msd_listed_label_missing(tmp_path):
    root = _msd(tmp_path / "d")
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"label listed in .* not found: .*labelsTr/case_002\.nii\.gz"):
        read_dataset("msd", root)


def test_msd_duplicate_case_ids(tmp_path):
    root = _msd(tmp_path / "d", suffix="_0000")
    _nii(root / "imagesTr" / "case_000.nii.gz")  # same id as case_000_0000
    desc = json.loads((root / "dataset.json").read_text())
    desc["unlabeled"] = ["./imagesTr/case_000_0000.nii.gz"]
    (root / "dataset.json").write_text(json.dumps(desc))
    with pytest.raises(DataError, match=r"duplicated case id 'case_000'.*case_000_0000\.nii\.gz"):
        read_dataset("msd", root)


@pytest.mark.parametrize(
    "labels", [{"0": "background", "2": "liver"}, {"1": "liver", "2": "spleen"}, {"background": 0, "liver": 3}]
)
def test_labels_must_be_contiguous_from_zero(tmp_path, labels):
    root = _msd(tmp_path / "d", labels=labels)
    with pytest.raises(DataError, match=r"contiguous 0\.\.C-1.*dataset\.json|dataset\.json.*contiguous"):
        read_dataset("msd", root)


# ------------------------------------------------------------------ nnU-Net


def test_nnunet_reads_all_groups(tmp_path):
    root = _nnunet(tmp_path / "Dataset001_Toy")
    index = read_dataset("nnunet", root)
    assert index.name == "Dataset001_Toy"
    assert index.labels == {0: "background", 1: "liver", 2: "spleen"}
    assert [c.id for c in index.labeled] == ["toy_000", "toy_001", "toy_002"]
    assert all(c.label == root / "labelsTr" / f"{c.id}.nii.gz" for c in index.labeled)
    assert [(c.id, c.label) for c in index.test] == [
        ("toy_100", root / "labelsTs" / "toy_100.nii.gz"),
        ("toy_101", None),
    ]
    assert [(c.id, c.label) for c in index.unlabeled] == [("u_000", None)]


def test_nnunet_accepts_msd_label_direction(tmp_path):
    index = read_dataset("nnunet", _nnunet(tmp_path / "d", labels={"0": "background", "1": "liver", "2": "x"}))
    assert index.labels == {0: "background", 1: "liver", 2: "x"}


def test_nnunet_without_labelsTs_has_unlabeled_test(tmp_path):
    index = read_dataset("nnunet", _nnunet(tmp_path / "d", ts_labels=False))
    assert [c.label for c in index.test] == [None, None]


def test_nnunet_region_labels_rejected(tmp_path):
    root = _nnunet(tmp_path / "d", labels={"background": 0, "whole": [1, 2], "core": 2})
    with pytest.raises(DataError, match=r"region-based label 'whole'.*dataset\.json"):
        read_dataset("nnunet", root)


def test_nnunet_multichannel_rejected(tmp_path):
    root = _nnunet(tmp_path / "d", channels={"0": "T1", "1": "T2"})
    with pytest.raises(DataError, match=r"single-channel.*dataset\.json"):
        read_dataset("nnunet", root)


def test_nnunet_missing_label_names_it(tmp_path):
    root = _nnunet(tmp_path / "d")
    (root / "labelsTr" / "toy_001.nii.gz").unlink()
    with pytest.raises(DataError, match=r"labelsTr/toy_001\.nii\.gz"):
        read_dataset("nnunet", root)


def test_nnunet_missing_imagesTr(tmp_path):
    root = tmp_path / "d"
    _json(root, {"labels": {"background": 0, "a": 1}, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"})
    with pytest.raises(DataError, match=r"imagesTr"):
        read_dataset("nnunet", root)


def test_phantom_style_json_is_readable_by_both_readers(tmp_path):
    root = _msd(tmp_path / "d", suffix="_0000", test=[])
    desc = json.loads((root / "dataset.json").read_text())
    desc.update(channel_names={"0": "CT"}, file_ending=".nii.gz")
    for e in desc["training"]:
        e["image"] = e["image"].replace(".nii.gz", "_0000.nii.gz")
    (root / "dataset.json").write_text(json.dumps(desc))
    a, b = read_dataset("msd", root), read_dataset("nnunet", root)
    assert a.labels == b.labels == {0: "background", 1: "liver", 2: "spleen"}
    assert [(c.id, c.image, c.label) for c in a.labeled] == [(c.id, c.image, c.label) for c in b.labeled]


# ------------------------------------------------------------------ FLARE22


def _flare(root: Path, n: int = 3) -> Path:
    lab = root / "Training" / "FLARE22_LabeledCase50"
    for i in range(1, n + 1):
        _nii(lab / "images" / f"FLARE22_Tr_{i:04d}_0000.nii.gz")
        _nii(lab / "labels" / f"FLARE22_Tr_{i:04d}.nii.gz", label=True)
    _nii(root / "Training" / "FLARE22_UnlabeledCase1-1000" / "Case_00001_0000.nii.gz")
    _nii(root / "Training" / "FLARE22_UnlabeledCase1-1000" / "Case_00002_0000.nii.gz")
    _nii(root / "Training" / "FLARE22_UnlabeledCase1001-2000" / "Case_01001_0000.nii.gz")
    for i in (1, 2):
        _nii(root / "Validation" / f"FLARETs_{i:04d}_0000.nii.gz")
    return root


def test_flare22_reads_labeled_two_unlabeled_folders_and_validation(tmp_path):
    root = _flare(tmp_path / "FLARE22")
    index = read_dataset("flare22", root)
    assert index.num_classes == 14 and index.labels[13] == "left_kidney" and index.labels[1] == "liver"
    assert [c.id for c in index.labeled] == ["FLARE22_Tr_0001", "FLARE22_Tr_0002", "FLARE22_Tr_0003"]
    assert index.labeled[0].label == root / "Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0001.nii.gz"
    assert [c.id for c in index.unlabeled] == ["Case_00001", "Case_00002", "Case_01001"]
    assert all(c.label is None for c in index.unlabeled)
    assert [(c.id, c.label) for c in index.test] == [("FLARETs_0001", None), ("FLARETs_0002", None)]


def test_flare22_validation_labels_are_found(tmp_path):
    root = _flare(tmp_path / "F")
    _nii(root / "Validation" / "labels" / "FLARETs_0002.nii.gz", label=True)
    index = read_dataset("flare22", root)
    assert [c.label for c in index.test] == [None, root / "Validation/labels/FLARETs_0002.nii.gz"]


def test_flare22_missing_label_names_it(tmp_path):
    root = _flare(tmp_path / "F")
    (root / "Training/FLARE22_LabeledCase50/labels/FLARE22_Tr_0002.nii.gz").unlink()
    with pytest.raises(DataError, match=r"labels/FLARE22_Tr_0002\.nii\.gz"):
        read_dataset("flare22", root)


def test_flare22_not_found_message_says_where_and_how(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as err:
        read_dataset("flare22", tmp_path / "empty")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "empty") in msg
    assert "Training/FLARE22_LabeledCase50/{images,labels}/FLARE22_Tr_XXXX" in msg


def test_flare22_falls_back_to_nnunet_conversion(tmp_path):
    flare = {"background": 0, **{name: i for i, name in FLARE22_LABELS.items() if i}}
    index = read_dataset("flare22", _nnunet(tmp_path / "Dataset701", labels=flare))
    assert index.num_classes == 14 and len(index.labeled) == 3
