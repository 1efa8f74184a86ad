"""The real ``vrsearch`` console script: help, errors, and a tiny training run."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from vrsearch.engine.setup import kernels, pick_device

VRSEARCH = str(Path(sys.executable).with_name("vrsearch"))


def cli(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """The console script; ``env``: variables added to this process's environment."""
    return subprocess.run(
        [VRSEARCH, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env=None if env is None else {**os.environ, **env},
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args", [[], ["validate"], ["train"], ["methods"], ["data"], ["data", "phantom"], ["data", "realfiles"]]
)
def test_help_everywhere(args):
    proc = cli(*args, "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout


def test_methods_lists_knobs():
    proc = cli("methods")
    assert proc.returncode == 0
    assert "supervised" in proc.stdout and "fully_supervised" in proc.stdout
    rows = {line.split()[0]: line.split()[1:3] for line in proc.stdout.splitlines() if line[:1].isalpha()}
    assert rows["all_labels"] == ["false", "bool"] and rows["loss"][0] == '"dice_ce"'


def test_validate_prints_resolved_study(tiny_study):
    proc = cli("validate", tiny_study(), "--check-data")
    assert proc.returncode == 0, proc.stderr
    assert "all_labels: false" in proc.stdout and "data ok: 2 labeled" in proc.stderr


def test_validate_bad_study_is_one_line(tmp_path, tiny_study):
    path = tiny_study()
    assert_one_line_error(cli("validate", path, "--set", "train.batch.labeled=two"), "train.batch.labeled")
    assert_one_line_error(cli("validate", path, "--set", "method.params.los=ce"), "did you mean 'loss'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n  method: [\n")
    assert_one_line_error(cli("validate", bad), str(bad), "YAML syntax error")


@pytest.mark.slow
def test_train_writes_the_results_contract(tiny_study, tmp_path):
    path = tiny_study()
    proc = cli("train", path)
    assert proc.returncode == 0, proc.stderr
    assert "completed: best val dice" in proc.stdout
    run = tmp_path / "run"
    trials = pd.read_parquet(run / "trials.parquet")
    history = pd.read_parquet(run / "history.parquet")
    cases = pd.read_parquet(run / "cases.parquet")
    assert len(trials) == 1 and trials.status[0] == "completed"
    assert trials["config.train.iterations"][0] == 6
    # the kernels it trained on (engine/setup.py): this PyTorch, the CPU's dispatched instruction set
    assert trials["kernels"][0] == kernels(pick_device("auto"))
    assert trials["kernels"][0].startswith(f"torch {torch.__version__}, ")
    assert history.iteration.max() == 6 and "val_dice" in history
    assert set(cases.split) == {"val", "test"}
    assert cases.groupby(["split", "case_id"]).class_name.nunique().eq(13).all()
    assert (run / "study.yaml").exists() and (run / "checkpoints" / "train" / "best.pt").exists()
    from vrsearch.results import load

    res = load(run)
    assert len(res.cases) == len(cases) and res.study["name"] == "tiny"
    # running it again resumes the finished trial instead of retraining
    again = cli("train", path)
    assert again.returncode == 0 and "completed" in again.stdout
    assert pd.read_parquet(run / "cases.parquet").equals(cases)
    # a different study in the same directory is refused
    other = cli("train", path, "--set", "train.iterations=7")
    assert_one_line_error(other, "holds results of a different study")


def corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def relabel(path: Path, value: int) -> None:
    img = nib.load(path)
    arr = np.asarray(img.dataobj).copy()
    arr.flat[0] = value
    nib.save(nib.Nifti1Image(arr, img.affine, img.header), path)


def reshape_label(path: Path) -> None:
    img = nib.load(path)
    arr = np.asarray(img.dataobj)[:-1]
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr), img.affine), path)


def remove(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    "damage,target",
    [(truncate, "label"), (truncate, "image"), (relabel, "label"), (reshape_label, "label"), (remove, "image")],
)
def test_bad_data_stops_before_training_with_one_line(tiny_phantom, tmp_path, damage, target):
    root = corrupt_copy(tiny_phantom, tmp_path / "ds")
    entry = json.loads((root / "dataset.json").read_text())["training"][1]
    victim = (root / entry[target]).resolve()
    if damage is relabel:
        relabel(victim, 14)
    else:
        damage(victim)
    out = tmp_path / "run"
    study = tmp_path / "s.yaml"
    import yaml

    from tests.conftest import tiny_study_dict

    study.write_text(yaml.safe_dump(tiny_study_dict(root, out)))
    line = assert_one_line_error(cli("train", study), victim.name)
    if damage is relabel:
        assert "label value 14 ≥ num_classes 14" in line
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_data_phantom_command(tmp_path):
    args = ("data", "phantom", tmp_path / "p", *"--cases 2 --unlabeled 1 --size 32 32 24 --spacing 10 10 10".split())
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    ds = json.loads((tmp_path / "p" / "dataset.json").read_text())
    assert len(ds["training"]) == 2 and len(ds["unlabeled"]) == 1
    img = nib.load(tmp_path / "p" / ds["training"][0]["image"])
    assert img.shape == (32, 32, 24) and img.get_data_dtype() == np.int16
    assert np.allclose(img.header.get_zooms(), (10, 10, 10))
    assert json.loads((tmp_path / "p" / "phantom.json").read_text())["config"]["population"] == "cohort"
    bad = cli("data", "phantom", tmp_path / "q", "--size", "4", "4", "4")
    assert_one_line_error(bad, "--size")
    other = cli(*args, "--population", "classic")  # other settings: not overwritten
    assert_one_line_error(other, "population cohort, wanted classic")


def test_gzip_header_is_really_checked(tiny_phantom):
    """Guard for the fixture itself: the files are real gzip-compressed NIfTI."""
    first = next((tiny_phantom / "imagesTr").iterdir())
    with gzip.open(first) as fh:
        assert len(fh.read(348)) == 348


#: runs the console script in a process where importing torch or MONAI fails
NO_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "monai"):
            raise ImportError(f"{name} imported by a process that trains nothing")

sys.meta_path.insert(0, NoTorch())
from vrsearch.cli import main

sys.argv = ["vrsearch", *sys.argv[1:]]
main()
"""


def test_validate_and_methods_need_neither_torch_nor_monai(tiny_phantom, tmp_path):
    """A study's driver validates every method's knobs from the specs alone
    (``vrsearch.methods.specs``); ``train`` builds a method and does import torch, which
    shows the blocker works."""
    from tests.conftest import tiny_study_dict

    study = tmp_path / "study.yaml"
    raw = tiny_study_dict(tiny_phantom, tmp_path / "run", method={"name": "dvcl", "params": {"k": 3}})
    study.write_text(json.dumps(raw))  # JSON is YAML
    shown = {}
    for args in (["validate", study], ["methods"], ["methods", "arco"]):
        proc = subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        shown[args[-1]] = proc.stdout
    assert "k_prime" in shown[study] and "stage1_fraction" in shown["arco"]  # the resolved knobs, the listed ones
    trained = subprocess.run([sys.executable, "-c", NO_TORCH, "train", str(study)], capture_output=True, text=True)
    assert trained.returncode != 0 and "imported by a process that trains nothing" in trained.stdout + trained.stderr
    assert not (tmp_path / "run" / "trials.parquet").exists()
