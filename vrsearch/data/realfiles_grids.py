"""Grids of the real-file dataset (:mod:`vrsearch.data.realfiles`): voxel axes and
spacing (:class:`Geometry`, from axis codes or a real header's direction cosines), the
smallest grid of a geometry that covers a volume, and resampling onto it with
``nibabel.processing``; source images are read with one DataError line when damaged.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from vrsearch.errors import DataError


@dataclass(frozen=True)
class Geometry:
    """Voxel axes of a grid: ``direction`` columns are unit world (RAS) vectors."""

    name: str
    direction: np.ndarray
    zooms: tuple[float, float, float]
    source: str


def axes(codes: str) -> np.ndarray:
    """Direction matrix whose voxel axes point to ``codes`` (e.g. ``"LPS"``)."""
    unit = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    out = np.zeros((3, 3))
    for col, code in enumerate(codes):
        row, sign = unit[code]
        out[row, col] = sign
    return out


def load(path: Path) -> nib.spatialimages.SpatialImage:
    """A source image, its voxels read (a damaged file is one DataError line naming it)."""
    try:
        img = nib.load(str(path))
        if not isinstance(img, nib.spatialimages.SpatialImage):
            raise TypeError(f"a {type(img).__name__}, not a volume")
        img.get_fdata(dtype=np.float32)
    except Exception as err:  # nibabel and gzip raise many types for damaged files
        raise DataError(
            f"cannot read real-file source {path}: {type(err).__name__}: " + " ".join(str(err).split())
        ) from err
    return img


def header_geometry(name: str, path: Path, what: str) -> Geometry:
    """The direction cosines (made exactly orthonormal) and spacing of a real header."""
    linear = np.asarray(load(path).affine, dtype=float)[:3, :3]
    zooms = np.linalg.norm(linear, axis=0)
    u, _, vt = np.linalg.svd(linear / zooms)
    zx, zy, zz = (float(z) for z in zooms.round(4))
    return Geometry(name, u @ vt, (zx, zy, zz), f"{what} ({path.name})")


def target_grid(
    shape: Sequence[int], affine: np.ndarray, geometry: Geometry
) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the smallest grid of ``geometry`` covering the volume ``(shape, affine)``."""
    corners = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in shape[:3]])))
    along = nib.affines.apply_affine(affine, corners) @ geometry.direction  # mm along each target axis
    zooms = np.asarray(geometry.zooms)
    low, high = along.min(0), along.max(0)
    size = np.maximum(np.ceil((high - low) / zooms - 1e-6), 1).astype(int)
    out = np.eye(4)
    out[:3, :3] = geometry.direction * zooms
    out[:3, 3] = geometry.direction @ (low + zooms / 2)
    sx, sy, sz = (int(s) for s in size)
    return (sx, sy, sz), out


def resample(
    img: nib.spatialimages.SpatialImage, grid: tuple[tuple[int, int, int], np.ndarray], order: int
) -> np.ndarray:
    """``img`` sampled on ``grid`` (zero outside it): order 1 trilinear, 0 nearest."""
    src = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    return np.asarray(resample_from_to(src, grid, order=order, mode="constant", cval=0.0).dataobj)
