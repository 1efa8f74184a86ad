"""A dataset made of real scanner files, for an end-to-end smoke test.

**A smoke test, not a benchmark.** The labeled cases are six disjoint blocks of one
subject's brain, so no number measured on them says how well a method segments
anything. What they show is that real files -- integer intensities in arbitrary MR
units, non-RAS index orders, oblique direction cosines, anisotropic voxels, fields
of view of different sizes, another species -- pass validation, preprocessing,
training, evaluation in each label's own grid and the report.

Sources (Debian bookworm packages, installed by ``make realdata``; file names as
these packages ship them):

* ``mricron-data`` (:data:`MRICRON_DIR`): ``ch2.nii.gz``, the Colin27 single-subject
  T1 (181×217×181, 1 mm, MNI space), and ``aal.nii.gz``, the 116-region AAL atlas
  drawn on it (same grid), with ``aal.nii.txt`` naming each region and its code;
  ``inia19-t1-brain.nii.gz``, the INIA19 macaque T1 template (168×206×128, 0.5 mm).
* ``insighttoolkit5-examples`` (:data:`ITK_DIR`): ``KmeansTest_T1UCharRaw.nii.gz``,
  a 128×128×62 T1 stored in coronal slices (LSA axes) of 2×2×3 mm.
* nibabel's own test data (installed with nibabel): the headers of
  ``example4d.nii.gz`` (oblique: 9.2° about left-right, 2×2×2.2 mm) and of the
  Philips ``phantom_EPI_asc_CLEAR_2_1.PAR`` (oblique: 13.3° about anterior-posterior,
  LPS, 3.75×3.75×8 mm).

Classes: the AAL regions grouped by the atlas's own lobe code, the thousands digit
of each region's code in ``aal.nii.txt`` (:data:`LOBES`): frontal, insula_limbic
(insula with the limbic lobe: cingulum, hippocampus, parahippocampal gyrus,
amygdala), occipital, parietal, deep_gray (caudate, putamen, pallidum, thalamus),
temporal, cerebellum (hemispheres and vermis).

Labeled cases: the bounding box of the atlas's labels plus :data:`MARGIN_MM`, cut at
the midline (x = 0 mm) and into three slabs along inferior-superior, gives six
disjoint blocks; block ``k`` is written on a grid of geometry ``k`` of
:func:`geometries` (the voxel axes' directions and spacing of a real header or of a
common convention; :mod:`vrsearch.data.realfiles_grids`) that covers the block, zero outside it (the field of view ends
there). Image (trilinear, no anti-aliasing) and label (nearest) are resampled with
``nibabel.processing`` from the same 1 mm source, so they stay aligned in world
coordinates by construction. Unlabeled: the ITK T1 copied byte for byte, and the
macaque T1 resampled to 1.5 mm in LIA axes (FreeSurfer's). The ITK example's k-means
tissue map and the macaque's NeuroMaps labels are other label sets and are not used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from vrsearch.data.phantom import _save, begin, publish
from vrsearch.data.realfiles_grids import Geometry, axes, header_geometry, load, resample, target_grid
from vrsearch.errors import DataError

MRICRON_DIR = Path("/usr/share/mricron/templates")
ITK_DIR = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
NIBABEL_DATA = Path(nib.__file__).parent / "tests" / "data"
MARKER = "realfiles.json"
VERSION = 1

CLASSES = ("background", "frontal", "insula_limbic", "occipital", "parietal", "deep_gray", "temporal", "cerebellum")
#: AAL lobe code (thousands digit of a region's code) -> class index in :data:`CLASSES`
LOBES = {2: 1, 3: 2, 4: 2, 5: 3, 6: 4, 7: 5, 8: 6, 9: 7}
#: mm added around the atlas's labels before the brain is cut into blocks
MARGIN_MM = 8
HEMISPHERES = ("L", "R")
SLABS = ("inf", "mid", "sup")
ITK_T1 = "KmeansTest_T1UCharRaw.nii.gz"
_PACKAGE = {"mricron": "mricron-data", "itk": "insighttoolkit5-examples"}


#: role -> (folder of :class:`Sources`, file name)
SOURCE_FILES = {
    "t1": ("mricron", "ch2.nii.gz"),
    "aal": ("mricron", "aal.nii.gz"),
    "aal_names": ("mricron", "aal.nii.txt"),
    "macaque": ("mricron", "inia19-t1-brain.nii.gz"),
    "itk_t1": ("itk", ITK_T1),
    "oblique_x": ("nibabel", "example4d.nii.gz"),
    "oblique_y": ("nibabel", "phantom_EPI_asc_CLEAR_2_1.PAR"),
}


@dataclass(frozen=True)
class Sources:
    """Where the source files are (the Debian packages' paths by default)."""

    mricron: Path = MRICRON_DIR
    itk: Path = ITK_DIR
    nibabel: Path = NIBABEL_DATA

    def files(self) -> dict[str, Path]:
        """Every source file by role; a missing one raises DataError saying what to install."""
        out = {}
        for role, (where, name) in SOURCE_FILES.items():
            path = Path(getattr(self, where)) / name
            if not path.is_file():
                how = (
                    f"install Debian's {_PACKAGE[where]}: make realdata"
                    if where in _PACKAGE
                    else "nibabel's test data is missing: reinstall nibabel (pip install --force-reinstall nibabel)"
                )
                raise DataError(f"real-file source not found: {path}; {how}")
            out[role] = path
        return out


def geometries(files: dict[str, Path]) -> list[Geometry]:
    """The six grids of the labeled blocks, in block order (see module doc)."""
    return [
        Geometry("ras2mm", axes("RAS"), (2.0, 2.0, 2.0), "the atlas's own axes (RAS), 2 mm"),
        Geometry("lps1p5mm", axes("LPS"), (1.5, 1.5, 1.5), "DICOM patient axes (LPS), 1.5 mm"),
        header_geometry("itk_lsa", files["itk_t1"], "ITK example T1: coronal slices, LSA, 2x2x3 mm"),
        header_geometry("oblique_x", files["oblique_x"], "nibabel example: oblique about left-right, 2x2x2.2 mm"),
        header_geometry(
            "oblique_y", files["oblique_y"], "Philips PAR: oblique about anterior-posterior, LPS, 3.75x3.75x8 mm"
        ),
        Geometry("pir_sagittal", axes("PIR"), (1.5, 1.5, 3.0), "sagittal slices (PIR), 1.5x1.5x3 mm"),
    ]


def aal_lookup(path: Path) -> np.ndarray:
    """Class of every AAL region index (0 where the table names none), from ``aal.nii.txt``."""
    lut = np.full(256, -1, dtype=np.int16)
    lut[0] = 0
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not (parts[0].isdigit() and parts[2].isdigit()) or int(parts[0]) > 255:
            raise DataError(f"{path} line {n}: expected 'index name code', got {line.strip()!r}")
        code = int(parts[2])
        if code // 1000 not in LOBES:
            raise DataError(f"{path} line {n}: region {parts[1]} has code {code}, in no AAL lobe (2xxx-9xxx)")
        lut[int(parts[0])] = LOBES[code // 1000]
    return lut


def grouped_atlas(aal: nib.spatialimages.SpatialImage, lut: np.ndarray, names: Path) -> nib.Nifti1Image:
    """The atlas with every region replaced by its class (uint8, same grid)."""
    data = np.asarray(aal.dataobj).astype(np.int64)
    values = np.unique(data)
    unnamed = values[(values < 0) | (values >= lut.size)]
    unnamed = unnamed if unnamed.size else values[lut[values] < 0]
    if unnamed.size:
        raise DataError(f"{aal.get_filename()} holds region {unnamed[0]}, which {names} does not name")
    return nib.Nifti1Image(lut[data].astype(np.uint8), aal.affine)


def blocks(label: nib.Nifti1Image) -> list[tuple[str, tuple[slice, slice, slice]]]:
    """Six disjoint blocks (hemisphere × slab) of the labels' bounding box plus the margin."""
    if nib.aff2axcodes(label.affine) != ("R", "A", "S"):
        raise DataError(f"{label.get_filename()} is not stored in RAS axes: {''.join(nib.aff2axcodes(label.affine))}")
    found = np.argwhere(np.asarray(label.dataobj) > 0)
    margin = np.ceil(MARGIN_MM / np.asarray(label.header.get_zooms()[:3])).astype(int)
    low = np.maximum(found.min(0) - margin, 0)
    high = np.minimum(found.max(0) + 1 + margin, label.shape[:3])
    midline = int(round(nib.affines.apply_affine(np.linalg.inv(label.affine), [0.0, 0.0, 0.0])[0]))
    cuts = np.linspace(low[2], high[2], len(SLABS) + 1).round().astype(int)
    x_ranges = {"L": slice(low[0], midline), "R": slice(midline, high[0])}  # RAS: x < 0 is left
    return [
        (f"{h}_{s}", (x_ranges[h], slice(low[1], high[1]), slice(cuts[i], cuts[i + 1])))
        for h in HEMISPHERES
        for i, s in enumerate(SLABS)
    ]


def _labeled(tmp: Path, files: dict[str, Path]) -> tuple[list[dict], dict[str, str]]:
    t1 = load(files["t1"])
    atlas = grouped_atlas(load(files["aal"]), aal_lookup(files["aal_names"]), files["aal_names"])
    if t1.shape[:3] != atlas.shape or not np.allclose(t1.affine, atlas.affine, atol=1e-3):
        raise DataError(f"{files['aal']} is not on the grid of {files['t1']}")
    entries, provenance = [], {}
    for (block, where), geometry in zip(blocks(atlas), geometries(files), strict=True):
        case = f"ch2_{block}_{geometry.name}"
        grid = target_grid(atlas.slicer[where].shape, atlas.slicer[where].affine, geometry)
        image = np.clip(np.rint(resample(t1.slicer[where], grid, 1)), 0, None).astype(np.int16)
        for folder, name, data in (
            ("imagesTr", f"{case}_0000.nii.gz", image),
            ("labelsTr", f"{case}.nii.gz", resample(atlas.slicer[where], grid, 0)),
        ):
            (tmp / folder).mkdir(exist_ok=True)
            _save(data.astype(np.int16 if folder == "imagesTr" else np.uint8), grid[1], tmp / folder / name)
        entries.append({"image": f"./imagesTr/{case}_0000.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        provenance[case] = f"{block} block of {files['t1'].name}/{files['aal'].name} on the grid of {geometry.source}"
    return entries, provenance


def _unlabeled(tmp: Path, files: dict[str, Path]) -> tuple[list[dict], dict[str, str]]:
    (tmp / "imagesUnlabeled").mkdir(exist_ok=True)
    shutil.copyfile(files["itk_t1"], tmp / "imagesUnlabeled" / "itk_t1_0000.nii.gz")
    macaque = load(files["macaque"])
    grid = target_grid(macaque.shape, macaque.affine, Geometry("lia", axes("LIA"), (1.5, 1.5, 1.5), ""))
    _save(resample(macaque, grid, 1).astype(np.float32), grid[1], tmp / "imagesUnlabeled" / "macaque_0000.nii.gz")
    return (
        [{"image": "./imagesUnlabeled/itk_t1_0000.nii.gz"}, {"image": "./imagesUnlabeled/macaque_0000.nii.gz"}],
        {
            "itk_t1": f"{files['itk_t1'].name}, copied byte for byte",
            "macaque": f"{files['macaque'].name}, resampled to 1.5 mm in LIA axes",
        },
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def write_realfiles(out: Path | str, sources: Sources = Sources()) -> Path:
    """Write the smoke-test dataset under ``out`` (MSD layout that also reads as nnU-Net;
    modality MRI) and return it. Idempotent: a folder built from the same source files
    (``realfiles.json`` holds their SHA-256, 16 hex digits) is returned as is; other content raises
    FileExistsError; a missing source raises DataError naming the package to install.
    Files go to a temporary sibling renamed into place at the end."""
    out = Path(out)
    files = sources.files()
    stamp = {
        "generator": "vrsearch.data.realfiles",
        "version": VERSION,
        "sources": {role: _sha256(path) for role, path in files.items()},
    }
    tmp = begin(out, stamp, MARKER)
    if tmp is None:
        return out
    try:
        training, about = _labeled(tmp, files)
        unlabeled, more = _unlabeled(tmp, files)
        desc = {
            "name": "vrsearch-realfiles",
            "description": "SMOKE TEST, NOT A BENCHMARK: six disjoint blocks of one "
            "subject's T1 (Colin27) with AAL lobes, on grids of real headers, plus two real unlabeled T1s "
            "(vrsearch.data.realfiles). 'unlabeled' is a vrsearch extension.",
            "reference": "Debian packages mricron-data and insighttoolkit5-examples; nibabel test data",
            "tensorImageSize": "3D",
            "modality": {"0": "MRI"},
            "channel_names": {"0": "MRI"},
            "labels": {str(i): name for i, name in enumerate(CLASSES)},
            "numTraining": len(training),
            "numTest": 0,
            "numUnlabeled": len(unlabeled),
            "file_ending": ".nii.gz",
            "training": training,
            "test": [],
            "unlabeled": unlabeled,
            "provenance": {**about, **more},
        }
        (tmp / "dataset.json").write_text(json.dumps(desc, indent=2) + "\n")
        publish(tmp, out, stamp, MARKER)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
