"""The ACDC release layout reader, on a fake tree of tiny volumes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from vrsearch.data.layouts import read_dataset
from vrsearch.errors import DataError


def vol(path, value=0):
    nib.save(nib.Nifti1Image(np.full((4, 4, 3), value, np.uint8), np.diag([1.5, 1.5, 10.0, 1.0])), path)


def patient(folder, pid, ed=1, es=9, labels=True, extra_frame=True):
    d = folder / pid
    d.mkdir(parents=True)
    (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: DCM\nHeight: 170.0\nNbFrame: 30\nWeight: 70.0\n")
    for f in (ed, es):
        vol(d / f"{pid}_frame{f:02d}.nii.gz")
        if labels:
            vol(d / f"{pid}_frame{f:02d}_gt.nii.gz", 2)
    if extra_frame:
        vol(d / f"{pid}_4d.nii.gz")


def test_reads_phases_as_cases_with_meta(tmp_path):
    patient(tmp_path / "training", "patient001")
    patient(tmp_path / "training", "patient002", ed=1, es=12)
    patient(tmp_path / "testing", "patient101", labels=False)
    idx = read_dataset("acdc", tmp_path)
    assert [c.id for c in idx.labeled] == ["patient001_ED", "patient001_ES", "patient002_ED", "patient002_ES"]
    assert idx.labeled[1].meta == {"patient": "patient001", "phase": "ES", "group": "DCM"}
    assert idx.labeled[3].image.name == "patient002_frame12.nii.gz"
    assert idx.num_classes == 4 and idx.labels[3] == "left_ventricle"
    assert [c.id for c in idx.test] == ["patient101_ED", "patient101_ES"] and idx.test[0].label is None


def test_database_subfolder_is_accepted(tmp_path):
    patient(tmp_path / "database" / "training", "patient001")
    assert len(read_dataset("acdc", tmp_path).labeled) == 2


def test_missing_label_and_missing_layout_name_the_files(tmp_path):
    patient(tmp_path / "training", "patient001")
    (tmp_path / "training" / "patient001" / "patient001_frame09_gt.nii.gz").unlink()
    with pytest.raises(DataError, match=r"patient001_frame09_gt\.nii\.gz"):
        read_dataset("acdc", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"ACDC data not found under .*training/patientXXX"):
        read_dataset("acdc", empty)


def test_bad_info_cfg(tmp_path):
    patient(tmp_path / "training", "patient001")
    (tmp_path / "training" / "patient001" / "Info.cfg").write_text("Group: DCM\n")
    with pytest.raises(DataError, match=r"Info\.cfg: no valid 'ED'"):
        read_dataset("acdc", tmp_path)
