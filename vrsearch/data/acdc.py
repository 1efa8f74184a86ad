"""The ACDC release layout (Bernard et al. 2018, cardiac cine MRI).

    ROOT/training/patient001/Info.cfg                  ED: 1, ES: 12, Group: DCM, ...
    ROOT/training/patient001/patient001_frame01.nii.gz  (+ _gt.nii.gz)
    ROOT/testing/patient101/...                          (labels if released)

ROOT may also be the folder that holds ``database/`` (the 2020 re-release).
Each labeled case is one phase of one patient: id ``patient001_ED``, meta
``{"patient": "patient001", "phase": "ED"}``. Classes: 0 background, 1 right
ventricle, 2 myocardium, 3 left ventricle. The 4D cine volumes are not used.
"""

from __future__ import annotations

import re
from pathlib import Path

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.errors import DataError

ACDC_LABELS = {0: "background", 1: "right_ventricle", 2: "myocardium", 3: "left_ventricle"}
_FRAME = re.compile(r"^(patient\d+)_frame(\d+)\.nii(\.gz)?$")


def _info(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        raise DataError(f"ACDC patient info not found: {path}") from None
    out = {}
    for line in text.splitlines():
        if ":" in line:
            key, _, value = line.partition(":")
            out[key.strip()] = value.strip()
    return out


def _patient_cases(folder: Path, *, need_labels: bool) -> list[Case]:
    info = _info(folder / "Info.cfg")
    phases = {}
    for phase in ("ED", "ES"):
        try:
            phases[int(info[phase])] = phase
        except (KeyError, ValueError):
            raise DataError(f"{folder / 'Info.cfg'}: no valid '{phase}' frame number") from None
    cases = []
    for image in sorted(folder.iterdir()):
        m = _FRAME.match(image.name)
        if not m or int(m.group(2)) not in phases:
            continue
        phase = phases[int(m.group(2))]
        label: Path | None = image.with_name(image.name.replace(f"frame{m.group(2)}", f"frame{m.group(2)}_gt"))
        if label is not None and not label.is_file():
            if need_labels:
                raise DataError(f"ACDC label not found for {image}: expected {label}")
            label = None
        meta = {"patient": m.group(1), "phase": phase, "group": info.get("Group", "")}
        cases.append(Case(f"{m.group(1)}_{phase}", image, label, meta))
    if need_labels and len(cases) != 2:
        raise DataError(f"{folder}: expected the ED and ES frames, found {len(cases)}")
    return cases


def read_acdc(root: Path) -> DatasetIndex:
    base = root / "database" if (root / "database" / "training").is_dir() else root
    training = base / "training"
    if not training.is_dir():
        raise DataError(
            f"ACDC data not found under {root}: expected training/patientXXX/"
            "{Info.cfg, patientXXX_frameYY.nii.gz, patientXXX_frameYY_gt.nii.gz} "
            "(and optional testing/)"
        )
    labeled = [c for d in sorted(training.glob("patient*")) if d.is_dir() for c in _patient_cases(d, need_labels=True)]
    if not labeled:
        raise DataError(f"no ACDC patients found in {training}")
    test = []
    if (base / "testing").is_dir():
        test = [
            c
            for d in sorted((base / "testing").glob("patient*"))
            if d.is_dir()
            for c in _patient_cases(d, need_labels=False)
        ]
    return DatasetIndex(
        root=root,
        name="ACDC",
        labels=dict(ACDC_LABELS),
        labeled=tuple(labeled),
        unlabeled=(),
        test=tuple(test),
        modality="MRI",
    )
