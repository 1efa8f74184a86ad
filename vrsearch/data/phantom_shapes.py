"""The shapes of the phantom's organs, as approximate signed distances in mm (negative inside).

Rotated ellipsoids (:class:`Ellipsoid`), tubes of varying radius along
Catmull-Rom centrelines (:class:`Tube`) and an organ made of both
(:class:`OrganSpec`: a union of parts minus "cut" parts). The reference subject
built from them is :mod:`vrsearch.data.phantom_anatomy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

Vec = tuple[float, float, float]


def rotation(deg: Vec | np.ndarray) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for Euler angles (about x, y, z) in degrees."""
    ax, ay, az = np.deg2rad(np.asarray(deg, dtype=float))
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass(frozen=True)
class Ellipsoid:
    """Rotated ellipsoid; sdf = (normalised radius - 1) x smallest semi-axis (mm)."""

    center: Vec
    semi: Vec
    rot: Vec = (0.0, 0.0, 0.0)

    def sdf(self, p):
        r = rotation(self.rot).tolist()  # python floats keep float32 arrays float32
        d = [p[i] - float(self.center[i]) for i in range(3)]
        acc = 0.0
        for i in range(3):
            local = d[0] * r[0][i] + d[1] * r[1][i] + d[2] * r[2][i]
            acc = acc + (local * (1.0 / self.semi[i])) ** 2
        return (np.sqrt(acc) - 1.0) * min(self.semi)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(rotation(self.rot) ** 2 @ np.square(self.semi))
        return np.asarray(self.center) - half, np.asarray(self.center) + half

    @property
    def thickness(self) -> float:
        return float(min(self.semi))


@dataclass(frozen=True)
class Tube:
    """Tube along a Catmull-Rom spline through ``points``; radius interpolated."""

    points: tuple[Vec, ...]
    radii: tuple[float, ...]
    samples: int = 4  # polyline segments per control segment

    @cached_property
    def polyline(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(self.points, dtype=float)
        ext = np.vstack([pts[:1], pts, pts[-1:]])
        t = np.linspace(0.0, 1.0, self.samples, endpoint=False)[:, None]
        out, rad = [], []
        for i in range(len(pts) - 1):
            p0, p1, p2, p3 = ext[i], ext[i + 1], ext[i + 2], ext[i + 3]
            out.append(
                0.5
                * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
            )
            rad.append(self.radii[i] + (self.radii[i + 1] - self.radii[i]) * t[:, 0])
        return np.vstack(out + [pts[-1:]]), np.concatenate(rad + [np.asarray(self.radii[-1:])])

    @cached_property
    def segments(self) -> tuple[tuple[list, list, float, float], ...]:
        """(a, b, radius at a, radius at b) of each polyline segment (python floats)."""
        pts, rad = self.polyline
        return tuple(zip(pts[:-1].tolist(), pts[1:].tolist(), rad[:-1].tolist(), rad[1:].tolist()))

    @staticmethod
    def segment_sdf(p, a, b, ra, rb):
        """Signed distance to the capsule of one segment (radius linear along it)."""
        ab = [b[i] - a[i] for i in range(3)]
        d = [p[i] - a[i] for i in range(3)]
        t = (d[0] * ab[0] + d[1] * ab[1] + d[2] * ab[2]) * (1.0 / max(sum(v * v for v in ab), 1e-9))
        t = np.minimum(np.maximum(t, 0.0), 1.0)
        dist = np.sqrt((d[0] - t * ab[0]) ** 2 + (d[1] - t * ab[1]) ** 2 + (d[2] - t * ab[2]) ** 2)
        return dist - (ra + (rb - ra) * t)

    @staticmethod
    def segment_bounds(a: list[float], b: list[float], ra: float, rb: float) -> tuple[np.ndarray, np.ndarray]:
        r = max(ra, rb)
        return np.minimum(a, b) - r, np.maximum(a, b) + r

    def sdf(self, p):
        best = None
        for seg in self.segments:
            f = self.segment_sdf(p, *seg)
            best = f if best is None else np.minimum(best, f)
        return best

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pts, rad = self.polyline
        return pts.min(0) - rad.max(), pts.max(0) + rad.max()

    @property
    def thickness(self) -> float:
        return float(min(self.radii))


@dataclass(frozen=True)
class OrganSpec:
    """One labelled organ: FLARE22 label, typical volume/HU and its shape.

    ``vol_sigma`` is the log-normal sigma of the subject's volume factor.
    ``fit="volume"``: the grid threshold is chosen to hit the drawn volume;
    ``fit="radius"``: a tube leaving the field of view (aorta, IVC,
    esophagus) whose radius is scaled instead, so the volume per mm is right.
    """

    label: int
    name: str
    volume_ml: float
    hu_mean: float
    hu_sd: float
    parts: tuple = ()
    cuts: tuple = ()
    vol_sigma: float = 0.15
    fit: str = "volume"
    shift_mm: float = 8.0
    rot_deg: float = 10.0

    def sdf(self, p):
        f = self.parts[0].sdf(p)
        for part in self.parts[1:]:
            f = np.minimum(f, part.sdf(p))
        for cut in self.cuts:
            f = np.maximum(f, -cut.sdf(p))
        return f

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = zip(*(part.bounds() for part in self.parts))
        return np.min(lo, axis=0), np.max(hi, axis=0)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self._bounds

    @property
    def center(self) -> np.ndarray:
        return 0.5 * (self._bounds[0] + self._bounds[1])

    @property
    def thickness(self) -> float:
        return min(part.thickness for part in self.parts)

    @property
    def tube(self) -> Tube | None:
        """The organ's shape when it is a single tube (its sdf can be evaluated piecewise)."""
        return self.parts[0] if len(self.parts) == 1 and not self.cuts and isinstance(self.parts[0], Tube) else None

    @property
    def mean_radius(self) -> float:
        return float(np.mean([np.mean(part.polyline[1]) for part in self.parts]))
