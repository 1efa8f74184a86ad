"""The real-file smoke-test dataset builder, on small stand-ins for the Debian packages'
files (the real files are exercised end to end by tests/e2e/test_realfiles.py) and on
nibabel's own test headers, which ship with nibabel."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from vrsearch.cli import app
from vrsearch.data import realfiles as rf
from vrsearch.data.layouts import read_dataset
from vrsearch.data.validate import check_dataset
from vrsearch.errors import DataError

# region index -> (name, AAL code): one region per lobe code, two for the limbic class
REGIONS = {
    1: ("Frontal_L", 2001),
    2: ("Insula_R", 3002),
    3: ("Hippocampus_L", 4101),
    4: ("Calcarine_R", 5002),
    5: ("Parietal_Sup_L", 6101),
    6: ("Thalamus_R", 7102),
    7: ("Temporal_Sup_L", 8111),
    8: ("Vermis_3", 9110),
}


def save(data: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def corners(volume: np.ndarray, affine: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of ``volume`` at the 8 voxels around each world point (nibabel's affine, numpy
    indexing): ``[N, 8]``, and whether all 8 lie inside. A nearest-neighbour resampling of
    ``volume`` must give one of these 8 values, whichever way it breaks ties."""
    low = np.floor(nib.affines.apply_affine(np.linalg.inv(affine), world)).astype(int)
    offsets = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    ijk = low[:, None, :] + offsets[None]
    inside = np.all((ijk >= 0) & (ijk < volume.shape[:3]), axis=(1, 2))
    values = np.zeros(ijk.shape[:2], dtype=volume.dtype)
    values[inside] = volume[tuple(np.moveaxis(ijk[inside], -1, 0))]
    return values, inside


def fake_sources(tmp: Path, seed: int = 0) -> rf.Sources:
    """A 1 mm RAS 'T1' with an 'atlas' of eight regions on its grid, the AAL name table, a
    0.5 mm 'macaque' and an LSA 2x2x3 mm 'ITK T1'; nibabel's own test headers."""
    rng = np.random.default_rng(seed)
    shape = (48, 56, 40)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-24.0, -30.0, -18.0)  # world x = 0 at i = 24
    ijk = np.indices(shape).astype(float)
    inside = sum(((ijk[a] - c) / r) ** 2 for a, c, r in zip(range(3), (24, 28, 20), (16, 20, 13))) < 1
    octant = (ijk[0] >= 24).astype(int) + 2 * (ijk[1] >= 28) + 4 * (ijk[2] >= 20)
    atlas = np.where(inside, octant + 1, 0).astype(np.uint8)
    t1 = np.clip(40 + 15 * atlas + rng.normal(0, 1, shape), 0, 255).astype(np.uint8)
    mricron, itk = tmp / "mricron", tmp / "itk"
    save(t1, affine, mricron / "ch2.nii.gz")
    save(atlas, affine, mricron / "aal.nii.gz")
    (mricron / "aal.nii.txt").write_text("".join(f"{i} {n} {c}\n" for i, (n, c) in REGIONS.items()))
    save(
        rng.uniform(0, 300, (20, 24, 16)).astype(np.float32),
        np.diag([0.5, 0.5, 0.5, 1.0]),
        mricron / "inia19-t1-brain.nii.gz",
    )
    lsa = np.array([[-2.0, 0, 0, 0], [0, 0, 3.0, -60], [0, 2.0, 0, 0], [0, 0, 0, 1]])
    save(rng.integers(0, 255, (16, 16, 10)).astype(np.int16), lsa, itk / rf.ITK_T1)
    return rf.Sources(mricron=mricron, itk=itk)


def test_writes_a_checked_mri_dataset_readable_as_msd_and_nnunet(tmp_path):
    sources = fake_sources(tmp_path)
    root = rf.write_realfiles(tmp_path / "ds", sources)
    for layout in ("msd", "nnunet"):
        index = read_dataset(layout, root)
        assert index.modality == "MRI" and tuple(index.labels.values()) == rf.CLASSES
        assert len(index.labeled) == 6 and len(index.unlabeled) == 2 and not index.test
        check_dataset(index, need_unlabeled=True)
    index = read_dataset("msd", root)
    axcodes = {c.id.split("_", 3)[3]: "".join(nib.aff2axcodes(nib.load(str(c.label)).affine)) for c in index.labeled}
    assert axcodes == {
        "ras2mm": "RAS",
        "lps1p5mm": "LPS",
        "itk_lsa": "LSA",
        "oblique_x": "LAS",
        "oblique_y": "LPS",
        "pir_sagittal": "PIR",
    }
    itk = next(c.image for c in index.unlabeled if c.id == "itk_t1")
    assert itk.read_bytes() == (sources.itk / rf.ITK_T1).read_bytes()  # the real file, byte for byte
    desc = json.loads((root / "dataset.json").read_text())
    assert "NOT A BENCHMARK" in desc["description"] and set(desc["provenance"]) == {
        c.id for c in (*index.labeled, *index.unlabeled)
    }


def test_reuses_its_own_output_and_refuses_anything_else(tmp_path):
    sources = fake_sources(tmp_path / "a")
    root = rf.write_realfiles(tmp_path / "ds", sources)
    first = (root / rf.MARKER).stat().st_mtime_ns
    assert rf.write_realfiles(root, sources) == root and (root / rf.MARKER).stat().st_mtime_ns == first
    with pytest.raises(FileExistsError, match="other settings") as err:
        rf.write_realfiles(root, fake_sources(tmp_path / "b", seed=1))  # other source files
    assert "\n" not in str(err.value)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a realfiles dataset"):
        rf.write_realfiles(foreign, sources)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert not list(tmp_path.glob(".*partial"))


def test_labels_stay_on_the_anatomy_of_the_source(tmp_path):
    """Each block's label, looked up by world position in the source atlas, is the source's
    class there, no two blocks hold the same part of the brain, and each block's image is
    the source's image there."""
    sources = fake_sources(tmp_path)
    root = rf.write_realfiles(tmp_path / "ds", sources)
    atlas = rf.grouped_atlas(
        nib.load(str(sources.mricron / "aal.nii.gz")),
        rf.aal_lookup(sources.mricron / "aal.nii.txt"),
        sources.mricron / "aal.nii.txt",
    )
    source, t1 = np.asarray(atlas.dataobj), np.asarray(nib.load(str(sources.mricron / "ch2.nii.gz")).dataobj)
    owner = np.full(source.shape, -1)
    for k, case in enumerate(read_dataset("msd", root).labeled):
        label, image = nib.load(str(case.label)), nib.load(str(case.image))
        assert np.allclose(label.affine, image.affine)
        data = np.asarray(label.dataobj)
        ijk = np.argwhere(data > 0)
        world = nib.affines.apply_affine(label.affine, ijk)
        around, inside = corners(source, atlas.affine, world)
        assert inside.all() and (around == data[tuple(ijk.T)][:, None]).any(1).all(), case.id
        src = nib.affines.apply_affine(np.linalg.inv(atlas.affine), world)
        grey = ndimage.map_coordinates(t1.astype(float), src.T, order=1)  # trilinear at the same points
        assert np.corrcoef(np.asarray(image.dataobj)[tuple(ijk.T)], grey)[0, 1] > 0.99, case.id
        src = np.rint(src).astype(int)
        hit = owner[tuple(src.T)]
        assert np.isin(hit, (-1, k)).mean() > 0.97, case.id  # blocks share at most their cut surfaces
        owner[tuple(src.T)] = k
    assert set(rf.blocks(atlas)[0][0].split("_")) == {"L", "inf"}


def test_blocks_partition_the_bounding_box():
    data = np.zeros((40, 30, 31), np.uint8)
    data[10:31, 5:25, 8:23] = 1
    atlas = nib.Nifti1Image(data, np.array([[1.0, 0, 0, -20], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    count = np.zeros(data.shape, int)
    for name, where in rf.blocks(atlas):
        count[where] += 1
        assert (where[0].stop <= 20) == name.startswith("L")  # x = 0 at i = 20
    m = rf.MARGIN_MM
    box = count[max(10 - m, 0) : min(31 + m, 40), max(5 - m, 0) : min(25 + m, 30), max(8 - m, 0) : min(23 + m, 31)]
    assert (box == 1).all() and count.sum() == box.size


@pytest.mark.parametrize("codes", ["LPS", "PIR", "SAL"])
def test_reorientation_to_a_grid_of_the_same_spacing_is_exact(codes):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 9, (7, 6, 5)).astype(np.uint8)
    img = nib.Nifti1Image(data, np.array([[1.0, 0, 0, -3], [0, 1, 0, 4], [0, 0, 1, 2], [0, 0, 0, 1]]))
    grid = rf.target_grid(img.shape, img.affine, rf.Geometry(codes, rf.axes(codes), (1.0, 1.0, 1.0), ""))
    assert "".join(nib.aff2axcodes(grid[1])) == codes
    ornt = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes))
    expected = nib.orientations.apply_orientation(data, ornt)
    for order in (0, 1):
        assert np.array_equal(rf.resample(img, grid, order).round(), expected)


def test_real_oblique_headers_give_the_smallest_orthonormal_grids_that_cover_the_volume():
    x = rf.header_geometry("x", rf.NIBABEL_DATA / "example4d.nii.gz", "")
    y = rf.header_geometry("y", rf.NIBABEL_DATA / "phantom_EPI_asc_CLEAR_2_1.PAR", "")
    assert x.zooms == pytest.approx((2.0, 2.0, 2.2), abs=1e-3) and y.zooms == pytest.approx((3.75, 3.75, 8.0))
    # example4d is tilted 9.2 degrees about left-right (axis 0), the PAR 13.3 about anterior-posterior (axis 1)
    for geometry, axis, degrees in ((x, 0, 9.2), (y, 1, 13.3)):
        assert np.allclose(geometry.direction.T @ geometry.direction, np.eye(3), atol=1e-9)
        cosines = np.abs(np.diag(geometry.direction))
        assert cosines[axis] == pytest.approx(1.0)
        assert np.degrees(np.arccos(np.delete(cosines, axis))) == pytest.approx([degrees] * 2, abs=0.1)
        shape, affine = (30, 40, 20), np.array([[1.0, 0, 0, 5], [0, 1, 0, -7], [0, 0, 1, 3], [0, 0, 0, 1]])
        size, grid = rf.target_grid(shape, affine, geometry)
        corners = np.array(
            [[i, j, k] for i in (-0.5, shape[0] - 0.5) for j in (-0.5, shape[1] - 0.5) for k in (-0.5, shape[2] - 0.5)]
        )
        vox = nib.affines.apply_affine(np.linalg.inv(grid), nib.affines.apply_affine(affine, corners))
        assert np.allclose(vox.min(0), -0.5)  # the grid starts at the volume ...
        assert (vox.max(0) <= np.array(size) - 0.5 + 1e-6).all()  # ... covers it ...
        assert (vox.max(0) > np.array(size) - 1.5).all()  # ... and ends within its last voxel


def test_missing_or_damaged_sources_are_one_line(tmp_path):
    sources = fake_sources(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    for where, package in (("mricron", "mricron-data"), ("itk", "insighttoolkit5-examples")):
        with pytest.raises(DataError, match=f"install Debian's {package}: make realdata") as err:
            rf.write_realfiles(
                tmp_path / "ds", rf.Sources(**{"mricron": sources.mricron, "itk": sources.itk, where: empty})
            )
        assert str(empty) in str(err.value) and "\n" not in str(err.value)
    res = CliRunner().invoke(app, ["data", "realfiles", str(tmp_path / "out"), "--mricron", str(empty)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "make realdata" in lines[0] and "ch2.nii.gz" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "ds").exists()
    t1 = sources.mricron / "ch2.nii.gz"
    t1.write_bytes(t1.read_bytes()[:-200])  # a damaged package file
    with pytest.raises(DataError, match=f"cannot read real-file source {t1}") as err:
        rf.write_realfiles(tmp_path / "ds", sources)
    assert "\n" not in str(err.value) and not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds.*"))


def test_the_aal_table_is_read_strictly(tmp_path):
    names = tmp_path / "aal.nii.txt"
    names.write_text("1 Precentral_L 2001\n\n2 Vermis_10 9170\n")
    lut = rf.aal_lookup(names)
    assert lut[1] == rf.CLASSES.index("frontal") and lut[2] == rf.CLASSES.index("cerebellum") and lut[3] == -1
    for bad, message in (
        ("1 Precentral_L\n", "line 1: expected 'index name code'"),
        ("1 Precentral_L 2001\n7 Nowhere 1234\n", "line 2: region Nowhere has code 1234"),
    ):
        names.write_text(bad)
        with pytest.raises(DataError, match=message):
            rf.aal_lookup(names)
    names.write_text("1 Precentral_L 2001\n")
    atlas = nib.Nifti1Image(np.array([[[0, 1], [1, 5]]], np.uint8), np.eye(4))
    with pytest.raises(DataError, match=f"holds region 5, which {names} does not name"):
        rf.grouped_atlas(atlas, rf.aal_lookup(names), names)
