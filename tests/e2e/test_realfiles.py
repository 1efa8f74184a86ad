"""Real scanner files end to end: ``vrsearch data realfiles`` then ``vrsearch run
studies/realfiles_smoke.yaml`` through real Ray (a smoke test, not a benchmark: four
iterations of a tiny UNet). Needs Debian's mricron-data and insighttoolkit5-examples
(``make test`` installs them through ``make realdata``); without them the dataset
fixture fails with the one line saying what to install."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from monai import transforms as T

from tests.data.test_realfiles import corners
from tests.e2e.test_cli import cli
from vrsearch.data.pipeline import preprocess
from vrsearch.data.prepare import prepare_data
from vrsearch.data.realfiles import CLASSES, Sources, aal_lookup, grouped_atlas
from vrsearch.engine.metrics import worst_distance_mm
from vrsearch.study import load_study

pytestmark = pytest.mark.slow

STUDY = Path(__file__).resolve().parents[2] / "studies" / "realfiles_smoke.yaml"


@pytest.fixture(scope="module")
def realfiles(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("realfiles") / "ds"
    proc = cli("data", "realfiles", root)
    assert proc.returncode == 0, proc.stderr
    return root


def at_root(root: Path, run: Path | None = None) -> list[str]:
    sets = ["--set", f"dataset.root={root}"]
    return sets + (["--set", f"output.dir={run}"] if run is not None else [])


@pytest.fixture(scope="module")
def realfiles_run(realfiles, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("realfiles_run") / "run"
    proc = cli("run", STUDY, *at_root(realfiles, run))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run


def nearest(volume: np.ndarray, affine: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``volume``'s voxel nearest to each world point (nibabel's affine, numpy indexing), and
    whether the point falls inside the volume (0 outside)."""
    ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(affine), world)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < volume.shape[:3]), axis=1)
    out = np.zeros(len(ijk), dtype=volume.dtype)
    out[inside] = volume[tuple(ijk[inside].T)]
    return out, inside


def test_validate_prints_the_mri_defaults_and_flags_a_saturating_clip(realfiles):
    proc = cli("validate", STUDY, *at_root(realfiles), "--check-data")
    assert proc.returncode == 0, proc.stderr
    assert (
        "data ok: 2 labeled, 4 unlabeled, 1 val, 1 test; 8 classes; MRI, intensity percentiles 0.5-99.5 to "
        "[0, 1]" in proc.stderr
    ), proc.stderr
    assert "warning" not in proc.stderr
    # the saturation check does read these MR volumes: a clip at 50 flattens their bright tissue
    clipped = cli("validate", STUDY, *at_root(realfiles), "--check-data", "--set", "dataset.intensity.clip=[0, 50]")
    assert clipped.returncode == 0, clipped.stderr
    assert "warning: dataset.intensity.clip [0, 50] saturates" in clipped.stderr and "ch2_" in clipped.stderr


def test_preprocessing_keeps_image_and_label_on_the_anatomy(realfiles):
    """Every labeled case (RAS, LPS, LSA, two oblique headers, PIR; 1.5 to 8 mm voxels) after the
    pipeline's orientation (RAS) and spacing (3 mm) holds, at each voxel's world position, one of
    the 8 label values around that position in its file as nibabel reads it (a nearest-neighbour
    resampling can give no other), and both label and image agree with the 1 mm source they
    were cut from (a flipped label agrees on ~15-35 % of its foreground, an aligned one on 87-100 %)."""
    study = load_study(STUDY, [f"dataset.root={realfiles}"])
    data = prepare_data(study.dataset, method="supervised")
    assert data.dataset.spacing == (3.0, 3.0, 3.0) and data.dataset.orientation == "RAS"
    files = Sources().files()
    source_t1 = nib.load(str(files["t1"]))
    source = grouped_atlas(nib.load(str(files["aal"])), aal_lookup(files["aal_names"]), files["aal_names"])
    atlas, t1 = np.asarray(source.dataobj), np.asarray(source_t1.dataobj, dtype=np.float32)
    transform = T.Compose(preprocess(data.dataset, ["image", "label"]))
    axcodes = set()
    for case in data.index.labeled:
        out = transform({"image": str(case.image), "label": str(case.label)})
        affine = np.asarray(out["label"].affine, dtype=float)
        assert np.allclose(affine, np.asarray(out["image"].affine), atol=1e-4)
        assert nib.aff2axcodes(affine) == ("R", "A", "S")
        assert np.allclose(np.linalg.norm(affine[:3, :3], axis=0), 3.0, atol=1e-4)
        label, image = out["label"][0].numpy().round().astype(int).ravel(), out["image"][0].numpy().ravel()
        world = nib.affines.apply_affine(affine, np.indices(out["label"].shape[1:]).reshape(3, -1).T)
        stored = nib.load(str(case.label))
        axcodes.add("".join(nib.aff2axcodes(stored.affine)))
        around, inside = corners(np.asarray(stored.dataobj), stored.affine, world)
        assert inside.mean() > 0.5 and (around == label[:, None]).any(1)[inside].all(), case.id
        truth, _ = nearest(atlas, source.affine, world)
        foreground = label > 0
        assert foreground.sum() > 100 and np.mean(truth[foreground] == label[foreground]) > 0.8, case.id
        bright, _ = nearest(t1, source.affine, world)
        seen = image > 0
        assert np.corrcoef(bright[seen], image[seen])[0, 1] > 0.6, case.id
    assert {"RAS", "LPS", "LSA", "PIR"} <= axcodes and len(axcodes) >= 4


def test_run_scores_in_mm_in_each_labels_own_grid(realfiles, realfiles_run):
    trials = pd.read_parquet(realfiles_run / "trials.parquet")
    assert len(trials) == 2 and set(trials.status) == {"completed"}, trials[["trial_id", "status", "error"]]
    cases = pd.read_parquet(realfiles_run / "cases.parquet")
    assert set(cases.split) == {"val", "test"} and set(cases.class_name) == set(CLASSES[1:])
    assert cases.groupby(["trial_id", "split", "case_id"]).size().eq(len(CLASSES) - 1).all()
    for case_id, rows in cases.groupby("case_id"):
        label = nib.load(str(realfiles / "labelsTr" / f"{case_id}.nii.gz"))
        diagonal = worst_distance_mm(label.shape, label.header.get_zooms()[:3])
        present = set(np.unique(np.asarray(label.dataobj))) - {0}
        assert set(rows.class_index[~rows.label_empty]) == present, case_id
        neither = rows.label_empty & rows.pred_empty
        missed = rows.label_empty != rows.pred_empty
        both = ~rows.label_empty & ~rows.pred_empty
        assert rows[neither][["dice", "hd95_mm", "assd_mm"]].isna().all().all()
        for column in ("hd95_mm", "assd_mm"):
            assert np.allclose(rows[missed][column], diagonal), (case_id, column)  # mm, not voxels
            values = rows[both][column]
            assert np.isfinite(values).all() and (values >= 0).all() and (values <= diagonal).all(), case_id
        assert rows[~neither].dice.between(0, 1).all()


def test_report_and_table_render(realfiles_run, tmp_path):
    report = realfiles_run / "report.html"
    assert report.is_file() and "realfiles_smoke" in report.read_text(encoding="utf-8")
    proc = cli("table", realfiles_run, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "mean_teacher" in table and "HD95" in table
