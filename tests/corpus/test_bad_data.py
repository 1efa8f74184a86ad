"""Malformed datasets: ``validate --check-data`` and ``run`` stop with one line naming the
offending file (or dataset.json field) before Ray starts, and write nothing.

Each case copies the session's tiny phantom (msd layout: ``dataset.json`` plus
``imagesTr``/``labelsTr``/``imagesUnlabeled``/``imagesTs``) into a tmp dir and
breaks ONE thing with nibabel/numpy.
"""

from __future__ import annotations

import functools
import gzip
import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from tests.conftest import tiny_study_dict
from tests.corpus._util import cli_in_process, snapshot
from tests.e2e.test_cli import assert_one_line_error, cli

pytestmark = pytest.mark.slow

VICTIM = 1  # index in dataset.json's "training" list of the case that gets broken


def _desc(root: Path) -> dict:
    return json.loads((root / "dataset.json").read_text())


def _write_desc(root: Path, desc: dict) -> None:
    (root / "dataset.json").write_text(json.dumps(desc, indent=2))


def _file(root: Path, what: str, index: int = VICTIM) -> Path:
    """Absolute path of training[index]'s image or label."""
    return (root / _desc(root)["training"][index][what]).resolve()


def _resave(path: Path, data: np.ndarray | None = None, affine: np.ndarray | None = None, dtype=None) -> None:
    img = nib.load(path)
    arr = np.asarray(img.dataobj) if data is None else data
    header = img.header.copy()
    if dtype is not None:
        arr = arr.astype(dtype)
        header.set_data_dtype(dtype)
    header.set_slope_inter(1, 0)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), img.affine if affine is None else affine, header), path)


# ---------------------------------------------------------------- damages
# each breaks one thing in the copy at ``root`` and returns what the line must name


def missing_image(root: Path) -> list[str]:
    victim = _file(root, "image")
    victim.unlink()
    return ["image listed in", "dataset.json not found", f"imagesTr/{victim.name}"]


def missing_label(root: Path) -> list[str]:
    victim = _file(root, "label")
    victim.unlink()
    return ["label listed in", f"labelsTr/{victim.name}"]


def truncated_gzip(root: Path) -> list[str]:
    victim = _file(root, "image")
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) * 2 // 3])  # the gzip stream ends early
    return ["cannot decode image", f"imagesTr/{victim.name}", "truncated or corrupt"]


def truncated_unlabeled(root: Path) -> list[str]:
    victim = (root / _desc(root)["unlabeled"][0]["image"]).resolve()
    data = victim.read_bytes()
    victim.write_bytes(data[:200])
    return ["cannot decode image", f"imagesUnlabeled/{victim.name}"]


def _poison(root: Path, value: float) -> Path:
    victim = _file(root, "image")
    arr = np.asarray(nib.load(victim).dataobj).astype(np.float32)
    arr[3, 4, 5] = value
    arr[7, 8, 9] = value
    _resave(victim, arr, dtype=np.float32)
    return victim


def nan_voxels(root: Path) -> list[str]:
    victim = _poison(root, np.nan)
    return [f"image {victim}", "has 2 NaN/Inf voxels"]


def inf_voxels(root: Path) -> list[str]:
    victim = _poison(root, np.inf)
    return [f"image {victim}", "has 2 NaN/Inf voxels"]


def shape_mismatch(root: Path) -> list[str]:
    victim = _file(root, "label")
    arr = np.asarray(nib.load(victim).dataobj)[:, :, :-2]
    _resave(victim, arr)
    return [f"label {victim}", "does not match image", "shape"]


def affine_mismatch(root: Path) -> list[str]:
    victim = _file(root, "label")
    img = nib.load(victim)
    affine = img.affine.copy()
    affine[:3, 3] += 5.0  # origin moved by 5 mm
    _resave(victim, affine=affine)
    return [f"label {victim}", "geometry does not match image", "origin"]


def four_d_image(root: Path) -> list[str]:
    victim = _file(root, "image")
    arr = np.asarray(nib.load(victim).dataobj)
    _resave(victim, np.stack([arr, arr], axis=-1))
    return [f"image {victim}", "must be a 3D volume"]


def label_beyond_classes(root: Path) -> list[str]:
    victim = _file(root, "label")
    arr = np.asarray(nib.load(victim).dataobj).copy()
    arr[0, 0, 0] = 20
    _resave(victim, arr)
    return ["label value 20 ≥ num_classes 14", f"labelsTr/{victim.name}"]


def negative_label(root: Path) -> list[str]:
    victim = _file(root, "label")
    arr = np.asarray(nib.load(victim).dataobj).astype(np.int16)
    arr[0, 0, 0] = -1
    _resave(victim, arr, dtype=np.int16)
    return ["negative label value -1", f"labelsTr/{victim.name}"]


def fractional_label(root: Path) -> list[str]:
    victim = _file(root, "label")
    arr = np.asarray(nib.load(victim).dataobj).astype(np.float32)
    arr[0, 0, 0] = 0.5
    _resave(victim, arr, dtype=np.float32)
    return [f"label {victim}", "non-integer value 0.5"]


def all_labels_empty(root: Path) -> list[str]:
    for entry in _desc(root)["training"]:
        victim = (root / entry["label"]).resolve()
        _resave(victim, np.zeros(nib.load(victim).shape, dtype=np.uint8))
    return ["every labeled case", "empty label map", f"labelsTr/{Path(_desc(root)['training'][0]['label']).name}"]


def duplicated_case_id(root: Path) -> list[str]:
    desc = _desc(root)
    desc["training"].append(dict(desc["training"][VICTIM]))
    _write_desc(root, desc)
    n = len(desc["training"]) - 1
    return ["duplicated case id 'phantom_001'", "dataset.json", f"training[{VICTIM}] and training[{n}]"]


def no_unlabeled_for_semi_supervised(root: Path) -> list[str]:
    desc = _desc(root)
    desc["unlabeled"] = []
    _write_desc(root, desc)
    return ["method mean_teacher needs unlabeled cases", "dataset.json 'unlabeled'"]


def zero_spacing(root: Path) -> list[str]:
    """pixdim[1] = 0 in the stored header (nibabel's writer would not keep it: patch the bytes)."""
    victim = _file(root, "image")
    raw = bytearray(gzip.decompress(victim.read_bytes()))
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1]: byte 76 + 4
    victim.write_bytes(gzip.compress(bytes(raw)))
    return [f"image {victim}", "invalid voxel spacing (0.0,"]


def invalid_json(root: Path) -> list[str]:
    path = root / "dataset.json"
    path.write_text(path.read_text()[:-20])
    return [f"invalid JSON in {path}"]


def labels_not_contiguous(root: Path) -> list[str]:
    desc = _desc(root)
    desc["labels"].pop("5")
    _write_desc(root, desc)
    return ["labels in", "dataset.json must be contiguous"]


@dataclass(frozen=True)
class Case:
    damage: Callable[[Path], list[str]]
    study: dict = field(default_factory=dict)  # section overrides of the tiny study

    def __str__(self) -> str:
        return self.damage.__name__


SEMI = {"method": {"name": "mean_teacher"}, "dataset": {"labeled_ratio": 1.0}}
CASES = [
    Case(missing_image),
    Case(missing_label),
    Case(truncated_gzip),
    Case(truncated_unlabeled, SEMI),
    Case(nan_voxels),
    Case(inf_voxels),
    Case(shape_mismatch),
    Case(affine_mismatch),
    Case(four_d_image),
    Case(label_beyond_classes),
    Case(negative_label),
    Case(fractional_label),
    Case(all_labels_empty),
    Case(duplicated_case_id),
    Case(no_unlabeled_for_semi_supervised, SEMI),
    Case(zero_spacing),
    Case(invalid_json),
    Case(labels_not_contiguous),
]


def _refused(case: Case, tiny_phantom: Path, tmp_path: Path, cli_call) -> None:
    """Break a copy of the phantom as ``case`` says; ``validate --check-data`` and ``run``
    (through ``cli_call``) each stop with one line naming the problem and write nothing."""
    root = tmp_path / "ds"
    shutil.copytree(tiny_phantom, root)
    fragments = case.damage(root)
    out = tmp_path / "run"
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict(root, out, **case.study)))
    before = snapshot(tmp_path)
    for command in (("validate", "--check-data"), ("run",)):
        proc = cli_call(*command[:1], study, *command[1:])
        line = assert_one_line_error(proc, *fragments)
        assert line.startswith("error: "), line
        # the run stopped on the data: no Ray session, no run directory, nothing else written
        assert snapshot(tmp_path) == before, command
        assert not out.exists()


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.filterwarnings("error")  # a warning would be a second line on the console script's stderr
def test_bad_data_is_one_line_before_ray_and_writes_nothing(case, tiny_phantom, tmp_path, monkeypatch):
    """In this interpreter (the same command code as the console script, without its start-up):
    the study never reaches Ray's start (recorded at the one place the run starts it)."""
    from vrsearch.orchestrate import experiment

    started: list[tuple] = []
    monkeypatch.setattr(experiment, "init_ray", lambda *args: started.append(args))
    monkeypatch.chdir(tmp_path)  # a relative path the CLI might write to lands in the snapshot
    _refused(case, tiny_phantom, tmp_path, cli_in_process)
    assert not started, "run started Ray before refusing the data"


def test_the_console_script_refuses_bad_data_in_one_line(tiny_phantom, tmp_path):
    """The same through the real ``vrsearch`` executable, for one file-level and one field-level defect."""
    for case in (Case(truncated_gzip), Case(invalid_json)):
        sub = tmp_path / str(case)
        sub.mkdir()
        _refused(case, tiny_phantom, sub, functools.partial(cli, cwd=sub))


def test_singleton_5d_nifti_is_squeezed_validated_and_trained(tiny_phantom, tmp_path):
    """Issue 17: an image and label stored as (X, Y, Z, 1, 1) passed ``validate
    --check-data`` and then died in ``train`` with a 91-line traceback. Every case of
    the copy is re-saved that way: the data check and a real ``train`` both succeed."""
    root = tmp_path / "ds"
    shutil.copytree(tiny_phantom, root)
    desc = _desc(root)
    for entry in (*desc["training"], *desc.get("unlabeled", []), *desc.get("test", [])):
        for key in ("image", "label"):
            if key in entry:
                path = (root / entry[key]).resolve()
                arr = np.asarray(nib.load(path).dataobj)
                _resave(path, arr.reshape(arr.shape + (1, 1)))
    assert nib.load(_file(root, "image")).shape[3:] == (1, 1)
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(tiny_study_dict(root, tmp_path / "run", train={"iterations": 4})))
    checked = cli("validate", study, "--check-data", cwd=tmp_path)
    assert checked.returncode == 0 and "data ok" in checked.stderr, checked.stderr
    trained = cli("train", study, cwd=tmp_path)
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr
