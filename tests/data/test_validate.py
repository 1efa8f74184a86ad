"""Content checks: every bad-data case raises a DataError naming the file."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.data.validate import check_case, check_dataset
from vrsearch.errors import DataError

SHAPE = (8, 8, 6)
AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def _nii(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _image(tmp_path: Path, name: str = "x", data=None, affine=AFFINE) -> Path:
    if data is None:
        data = np.random.default_rng(0).normal(0, 100, SHAPE).astype(np.float32)
    return _nii(tmp_path / "imagesTr" / f"{name}_0000.nii.gz", data, affine)


def _label(tmp_path: Path, name: str = "x", data=None, affine=AFFINE) -> Path:
    if data is None:
        data = np.zeros(SHAPE, np.uint8)
        data[2:5, 2:5, 1:4] = 1
        data[5, 5, 5] = 2
    return _nii(tmp_path / "labelsTr" / f"{name}.nii.gz", data, affine)


def _case(tmp_path: Path, name: str = "x", image=None, label=None, **kw) -> Case:
    return Case(
        name,
        _image(tmp_path, name, image, kw.get("image_affine", AFFINE)),
        _label(tmp_path, name, label, kw.get("label_affine", AFFINE)),
    )


def _fails(case: Case, pattern: str, path: Path, num_classes: int = 3, require_label: bool = True) -> str:
    with pytest.raises(DataError) as err:
        check_case(case, num_classes, require_label=require_label)
    msg = str(err.value)
    assert str(path) in msg, msg
    assert "\n" not in msg
    assert re.search(pattern, msg), msg
    return msg


def _index(tmp_path: Path, labeled, unlabeled=(), test=(), num_classes: int = 3) -> DatasetIndex:
    labels = {i: f"c{i}" for i in range(num_classes)}
    return DatasetIndex(tmp_path, "toy", labels, tuple(labeled), tuple(unlabeled), tuple(test))


# ------------------------------------------------------------------ good data


def test_good_case_passes_including_4d_singleton(tmp_path):
    check_case(_case(tmp_path), 3, require_label=True)
    img4 = _nii(tmp_path / "y4.nii.gz", np.zeros((*SHAPE, 1), np.int16))
    check_case(Case("y4", img4, None), 3, require_label=False)


def test_nifti2_image_is_read(tmp_path):
    path = tmp_path / "n2.nii.gz"
    nib.save(nib.Nifti2Image(np.zeros(SHAPE, np.float32), AFFINE), str(path))
    check_case(Case("n2", path, None), 3, require_label=False)
    bad = np.zeros(SHAPE, np.float32)
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti2Image(bad, AFFINE), str(path))
    _fails(Case("n2", path, None), "NaN/Inf", path, require_label=False)


def test_good_dataset_passes_with_threads(tmp_path):
    index = _index(
        tmp_path, [_case(tmp_path, f"c{i}") for i in range(4)], unlabeled=[Case("u", _image(tmp_path, "u"), None)]
    )
    check_dataset(index, need_unlabeled=True, workers=2)
    check_dataset(index, need_unlabeled=True, workers=1)


# ------------------------------------------------------------------ files


def test_missing_image(tmp_path):
    case = _case(tmp_path)
    case.image.unlink()
    _fails(case, "image file not found", case.image)


def test_missing_label(tmp_path):
    case = _case(tmp_path)
    case.label.unlink()
    _fails(case, "label file not found", case.label)


def test_label_required(tmp_path):
    case = Case("x", _image(tmp_path), None)
    _fails(case, "no label", case.image)
    check_case(case, 3, require_label=False)


def test_truncated_gzip_is_caught(tmp_path):
    case = _case(
        tmp_path,
        image=np.random.default_rng(1).normal(size=(32, 32, 16)).astype(np.float32),
        label=np.zeros((32, 32, 16), np.uint8),
    )
    raw = case.image.read_bytes()
    case.image.write_bytes(raw[: len(raw) // 2])
    _fails(case, "cannot (decode|read) image", case.image)


def test_gzip_missing_only_its_trailer_is_caught(tmp_path):
    case = _case(tmp_path)
    case.label.write_bytes(case.label.read_bytes()[:-4])  # data intact, size/CRC trailer cut
    _fails(case, "cannot decode label", case.label)


def test_gzip_crc_error_is_caught(tmp_path):
    case = _case(tmp_path)
    raw = bytearray(case.image.read_bytes())
    raw[-8] ^= 0xFF  # corrupt the stored CRC32
    case.image.write_bytes(bytes(raw))
    _fails(case, "cannot decode image", case.image)


def test_uncompressed_truncated_nifti_is_caught(tmp_path):
    path = _nii(tmp_path / "t.nii", np.ones((16, 16, 16), np.float32))
    path.write_bytes(path.read_bytes()[:2000])
    _fails(Case("t", path, None), "cannot (decode|read) image", path, require_label=False)


def test_garbage_file_is_caught(tmp_path):
    path = tmp_path / "g.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti at all" * 10))
    _fails(Case("g", path, None), "cannot read image", path, require_label=False)


# ------------------------------------------------------------------ image content


def test_real_4d_image_rejected(tmp_path):
    path = _nii(tmp_path / "m.nii.gz", np.zeros((*SHAPE, 2), np.int16))
    _fails(Case("m", path, None), r"must be a 3D volume; got shape \(8, 8, 6, 2\)", path, require_label=False)


def test_2d_image_rejected(tmp_path):
    path = _nii(tmp_path / "p.nii.gz", np.zeros((8, 8), np.int16))
    _fails(Case("p", path, None), "must be a 3D volume", path, require_label=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_voxels(tmp_path, bad):
    data = np.zeros(SHAPE, np.float32)
    data[1, 2, 3] = bad
    case = _case(tmp_path, image=data)
    _fails(case, "1 NaN/Inf voxels", case.image)


@pytest.mark.parametrize("zoom", [0.0, -1.0, np.nan])
def test_bad_spacing(tmp_path, zoom):
    # nibabel refuses to write such headers (and "fixes" them on load), so patch pixdim[2] in the bytes
    plain = _nii(tmp_path / "s.nii", np.zeros(SHAPE, np.int16))
    raw = bytearray(plain.read_bytes())
    raw[76 + 8 : 76 + 12] = struct.pack("<f", zoom)
    path = tmp_path / "s.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))
    _fails(
        Case("s", path, None), r"invalid voxel spacing \(0\.8.*, (0\.0|-1\.0|nan), 2\.5\)", path, require_label=False
    )


def test_singular_affine(tmp_path):
    affine = AFFINE.copy()
    affine[2, :3] = affine[1, :3]  # two parallel axes
    hdr = nib.Nifti1Header()
    hdr.set_sform(affine, code=1)
    hdr.set_qform(None, code=0)
    path = tmp_path / "sing.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), None, hdr), str(path))
    _fails(Case("sing", path, None), "singular", path, require_label=False)


# ------------------------------------------------------------------ image/label agreement


def test_shape_mismatch(tmp_path):
    case = _case(tmp_path, label=np.zeros((8, 8, 5), np.uint8))
    msg = _fails(case, r"shape \(8, 8, 5\) does not match image", case.label)
    assert str(case.image) in msg


def test_affine_mismatch_reports_spacing_and_origin(tmp_path):
    shifted = AFFINE.copy()
    shifted[:3, 3] = [0.0, 0.0, 5.0]
    case = _case(tmp_path, label_affine=shifted)
    _fails(
        case,
        r"geometry does not match.*spacing \(0\.800, 0\.800, 2\.500\).*origin \(0\.000, 0\.000, 5\.000\) "
        r"vs \(0\.000, 0\.000, 0\.000\)",
        case.label,
    )


def test_affine_within_tolerance_passes(tmp_path):
    nudged = AFFINE.copy()
    nudged[0, 3] = 5e-4
    check_case(_case(tmp_path, label_affine=nudged), 3, require_label=True)


# ------------------------------------------------------------------ label values


def test_label_value_too_large(tmp_path):
    data = np.zeros(SHAPE, np.uint8)
    data[0, 0, 0] = 15
    case = _case(tmp_path, label=data)
    msg = _fails(case, "label value 15 ≥ num_classes 14 in", case.label, num_classes=14)
    assert msg == f"label value 15 ≥ num_classes 14 in {case.label}"


def test_negative_label(tmp_path):
    data = np.zeros(SHAPE, np.int16)
    data[1, 1, 1] = -1
    case = _case(tmp_path, label=data)
    _fails(case, "negative label value -1", case.label)


def test_non_integer_label(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[1, 1, 1] = 0.5
    case = _case(tmp_path, label=data)
    _fails(case, "non-integer value 0.5", case.label)


def test_float_integer_valued_label_passes(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[1, 1, 1] = 2.0
    check_case(_case(tmp_path, label=data), 3, require_label=True)


# ------------------------------------------------------------------ dataset level


def test_all_labels_empty_is_a_dataset_error(tmp_path):
    cases = [_case(tmp_path, f"c{i}", label=np.zeros(SHAPE, np.uint8)) for i in range(2)]
    with pytest.raises(DataError, match=f"every labeled case in {re.escape(str(tmp_path))} has an empty label map"):
        check_dataset(_index(tmp_path, cases), need_unlabeled=False)
    cases.append(_case(tmp_path, "c9"))
    check_dataset(_index(tmp_path, cases), need_unlabeled=False)


def test_need_unlabeled_without_any(tmp_path):
    index = _index(tmp_path, [_case(tmp_path)])
    with pytest.raises(DataError, match=f"method dvcl needs unlabeled cases; none found in {re.escape(str(tmp_path))}"):
        check_dataset(index, need_unlabeled=True, method="dvcl")
    with pytest.raises(DataError, match="needs unlabeled cases"):
        check_dataset(index, need_unlabeled=True)
    check_dataset(index, need_unlabeled=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_dataset_reports_bad_unlabeled_and_test_files(tmp_path, workers):
    good = [_case(tmp_path, f"c{i}") for i in range(3)]
    bad = _nii(tmp_path / "u" / "bad.nii.gz", np.full(SHAPE, np.nan, np.float32))
    with pytest.raises(DataError, match=re.escape(str(bad))):
        check_dataset(_index(tmp_path, good, unlabeled=[Case("bad", bad, None)]), need_unlabeled=True, workers=workers)
    bad_label = _label(tmp_path, "t", np.full(SHAPE, 7, np.uint8))
    test = [Case("t", _image(tmp_path, "t"), bad_label), Case("t2", _image(tmp_path, "t2"), None)]
    with pytest.raises(DataError, match=re.escape(str(bad_label))):
        check_dataset(_index(tmp_path, good, test=test), need_unlabeled=False, workers=workers)


def test_dataset_first_error_in_case_order_with_threads(tmp_path):
    cases = [_case(tmp_path, f"c{i}") for i in range(6)]
    cases[1].image.unlink()
    cases[4].label.unlink()
    with pytest.raises(DataError, match=re.escape(str(cases[1].image))):
        check_dataset(_index(tmp_path, cases), need_unlabeled=False, workers=2)
