"""Content checks of a dataset before any training starts.

Every file is read once and fully decoded (a ``.nii.gz`` is inflated to its
end, so truncation and CRC errors show), then parsed with nibabel; a broken
file is found here and not hours into a run. Each problem
raises :class:`~vrsearch.errors.DataError` with a one-line message naming the
file: missing or unreadable files, images that are not 3D (trailing singleton
axes such as ``(X, Y, Z, 1, 1)`` are 3D: the loader squeezes them), NaN/Inf voxels,
bad spacing or a singular affine, image/label shape or geometry mismatch,
label values that are not integers in ``0..num_classes-1``.
"""

from __future__ import annotations

import gzip
import io
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.errors import DataError

AFFINE_ATOL_MM = 1e-3

_quiet = threading.local()


class _QuietWhileChecking(logging.Filter):
    """Drops nibabel's header-fix messages logged by a thread that is checking a file
    (the checks report the problem as one line; nibabel would print its own lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_quiet, "on", False)


if not any(isinstance(f, _QuietWhileChecking) for f in nib.imageglobals.logger.filters):
    nib.imageglobals.logger.addFilter(_QuietWhileChecking())


@dataclass(frozen=True)
class _Volume:
    """What the checks keep of a decoded file: its geometry only."""

    path: Path
    shape: tuple[int, ...]
    affine: np.ndarray
    spacing: tuple[float, ...]


def _one_line(err: BaseException) -> str:
    return f"{type(err).__name__}: " + " ".join(str(err).split())


def _decompress(path: Path) -> bytes:
    """Whole file content; a ``.gz`` is fully inflated, so truncation and CRC errors show."""
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.lower().endswith(".gz") else raw


def _from_bytes(raw: bytes) -> tuple[nib.spatialimages.SpatialImage, tuple[float, ...]]:
    """NIfTI-1/2 image from file bytes, plus the spacing exactly as stored.

    nibabel silently replaces zero spacing by 1 and negative spacing by its
    absolute value when it loads a header; other readers (ITK) do not, so the
    stored ``pixdim`` is taken from an unchecked copy of the header.
    """
    size = int.from_bytes(raw[:4], "little")
    if size not in (348, 540):
        size = int.from_bytes(raw[:4], "big")
    klass = nib.Nifti2Image if size == 540 else nib.Nifti1Image
    _quiet.on = True  # nibabel's header fixes ("setting 0 dims to 1") are not printed: checked here
    try:
        img = klass.from_bytes(raw)
    finally:
        _quiet.on = False
    stored = klass.header_class.from_fileobj(io.BytesIO(raw), check=False)
    return img, tuple(float(z) for z in stored["pixdim"][1:4])


def _read(path: Path, what: str) -> tuple[nib.spatialimages.SpatialImage, np.ndarray, tuple[float, ...]]:
    """Header, whole (unscaled when possible) array and stored spacing of ``path``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    single_file = path.name.lower().endswith((".nii", ".nii.gz"))
    try:
        raw = _decompress(path) if single_file else b""
    except Exception as err:  # EOFError, zlib.error, gzip.BadGzipFile, OSError
        raise DataError(f"cannot decode {what} {path} (truncated or corrupt file?): {_one_line(err)}") from err
    try:
        if single_file:
            img, zooms = _from_bytes(raw)
        else:  # other formats nibabel knows (e.g. .hdr/.img pairs, .mgz)
            loaded = nib.load(str(path))
            if not isinstance(loaded, nib.spatialimages.SpatialImage):
                raise ValueError(f"a {type(loaded).__name__}, not a volume")
            img = loaded
            zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    except Exception as err:  # nibabel raises many types for bad headers
        raise DataError(f"cannot read {what} {path}: {_one_line(err)}") from err
    try:
        proxy = img.dataobj
        data = np.asarray(proxy.get_unscaled() if hasattr(proxy, "get_unscaled") else proxy)
    except Exception as err:  # data shorter than the header says, ...
        raise DataError(f"cannot decode {what} {path} (truncated or corrupt file?): {_one_line(err)}") from err
    return img, data, zooms


def _spatial_shape(shape: tuple[int, ...], path: Path, what: str) -> tuple[int, int, int]:
    if len(shape) < 3 or any(s != 1 for s in shape[3:]):
        raise DataError(f"{what} {path} must be a 3D volume; got shape {shape}")
    return tuple(int(s) for s in shape[:3])  # type: ignore[return-value]


def _geometry(
    img: nib.spatialimages.SpatialImage, zooms: tuple[float, ...], shape: tuple[int, ...], path: Path, what: str
) -> _Volume:
    if len(zooms) < 3 or not all(np.isfinite(z) and z > 0 for z in zooms):
        raise DataError(f"{what} {path} has invalid voxel spacing {zooms}; spacing must be finite and > 0")
    affine = np.asarray(img.affine, dtype=float)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(f"{what} {path} has a singular or non-finite affine: {affine[:3].round(4).tolist()}")
    return _Volume(Path(path), shape, affine, zooms)


def _check_image(path: Path) -> _Volume:
    img, data, zooms = _read(path, "image")
    shape = _spatial_shape(tuple(data.shape), path, "image")
    if data.dtype.kind in "fc":
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise DataError(f"image {path} has {bad} NaN/Inf voxels")
    return _geometry(img, zooms, shape, path, "image")


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.3f}" for v in values) + ")"


def _check_label(path: Path, image: _Volume, num_classes: int) -> bool:
    """Check a label map against its image; return whether it has foreground."""
    img, data, zooms = _read(path, "label")
    shape = _spatial_shape(tuple(data.shape), path, "label")
    if shape != image.shape:
        raise DataError(f"label {path} shape {shape} does not match image {image.path} shape {image.shape}")
    label = _geometry(img, zooms, shape, path, "label")
    if not np.allclose(label.affine, image.affine, atol=AFFINE_ATOL_MM):
        raise DataError(
            f"label {path} geometry does not match image {image.path}: spacing {_fmt(label.spacing)} vs "
            f"{_fmt(image.spacing)} mm, origin {_fmt(label.affine[:3, 3])} vs {_fmt(image.affine[:3, 3])} mm"
        )
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    if slope != 1 or inter != 0:
        data = np.asanyarray(img.dataobj)
    if data.size == 0:
        return False
    if data.dtype.kind in "fc":
        if data.dtype.kind == "c":
            raise DataError(f"label {path} has complex values; labels must be integers")
        finite = np.isfinite(data)
        if not finite.all():
            raise DataError(f"label {path} has non-integer values (NaN/Inf); labels must be integers")
        fractional = data[np.mod(data, 1) != 0]
        if fractional.size:
            raise DataError(f"label {path} has non-integer value {fractional.flat[0]:g}; labels must be integers")
    elif data.dtype.kind not in "iub":
        raise DataError(f"label {path} has dtype {data.dtype}; labels must be integers")
    low, high = data.min().item(), data.max().item()
    if low < 0:
        raise DataError(f"negative label value {low:g} in {path}")
    if high >= num_classes:
        raise DataError(f"label value {high:g} ≥ num_classes {num_classes} in {path}")
    return bool(high > 0)


def _check(case: Case, num_classes: int, require_label: bool) -> bool | None:
    """Check one case; return whether its label has foreground (None: no label)."""
    image = _check_image(case.image)
    if case.label is None:
        if require_label:
            raise DataError(f"case {case.id} ({case.image}) has no label but one is required")
        return None
    return _check_label(case.label, image, num_classes)


def check_case(case: Case, num_classes: int, *, require_label: bool) -> None:
    """Read and check the image (and label, if any) of one case.

    Raises DataError naming the offending file. With ``require_label`` a case
    without a label is an error.
    """
    _check(case, num_classes, require_label)


def check_dataset(index: DatasetIndex, *, need_unlabeled: bool, workers: int = 1, method: str | None = None) -> None:
    """Check every case of ``index``; raise DataError on the first problem.

    Labeled cases must have a label; unlabeled and test cases are checked with
    an optional label. ``need_unlabeled`` requires at least one case in
    ``index.unlabeled`` (``method`` names who needs them in the message).
    Every labeled label map being pure background is an error. ``workers > 1``
    reads files in a thread pool (decompression releases the GIL); the error
    reported is still the first in case order.
    """
    if not index.labeled:
        raise DataError(f"no labeled cases found in {index.root}")
    if need_unlabeled and not index.unlabeled:
        who = f"method {method}" if method else "this method"
        raise DataError(f"{who} needs unlabeled cases; none found in {index.root}")
    jobs = [(c, True) for c in index.labeled]
    jobs += [(c, False) for c in (*index.unlabeled, *index.test)]
    if workers <= 1:
        results = [_check(c, index.num_classes, req) for c, req in jobs]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_check, c, index.num_classes, req) for c, req in jobs]
            try:
                results = [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    if not any(results[: len(index.labeled)]):
        raise DataError(
            f"every labeled case in {index.root} has an empty label map (background only), "
            f"e.g. {index.labeled[0].label}"
        )
