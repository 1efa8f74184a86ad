"""Reference anatomy of the synthetic abdominal CT phantom, in millimetres.

Coordinates are RAS millimetres of a reference subject: +x is the patient's
left, +y anterior, +z superior; the origin is the centre of the default field
of view (about the level of the pancreas and the renal hila).  Nothing here
knows about voxels: :mod:`vrsearch.data.phantom` samples these shapes on a
grid after a per-subject transform.

Organs are approximate signed distances in mm (negative inside):

* solid organs (liver, spleen, kidneys, gallbladder) are unions of rotated
  ellipsoids, optionally minus "cut" ellipsoids (renal hilum, splenic hilum,
  the liver's renal and adrenal impressions);
* tubular organs (aorta, IVC, esophagus, stomach, duodenal C-loop, pancreas)
  are tubes of varying radius along Catmull-Rom centrelines;
* adrenals are pairs of thin plates (flattened ellipsoids, ~6 mm thick)
  forming the inverted-Y/lambda seen on CT.

Reference volumes sit near the typical adult volumes of the phantom fact
sheet (liver 1500 mL ... adrenals ~4 mL); the generator scales each shape by
the subject's drawn volume and then fine-tunes the threshold on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

Vec = tuple[float, float, float]
#: one subject's draws (size, pose, per-organ volume/shift/rotation, HU jitter, ...), keyed by name
Subject = dict[str, Any]


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


E, T = Ellipsoid, Tube
ORGANS: tuple[OrganSpec, ...] = (
    OrganSpec(
        1,
        "liver",
        1500,
        105,
        15,
        parts=(
            E((-62, 0, 50), (65, 73, 60)),  # right lobe
            E((-88, -8, 6), (38, 50, 38)),  # inferior right lobe
            E((-22, 24, 50), (34, 38, 34)),  # quadrate / medial segment
            E((8, 30, 62), (54, 34, 28), (0, -10, 10)),  # left lobe
        ),
        cuts=(
            E((-70, -52, -22), (34, 30, 62), (12, 15, 0)),  # right kidney impression
            E((-36, -38, 40), (13, 15, 22)),  # fat around right adrenal
        ),
    ),
    OrganSpec(
        2,
        "right_kidney",
        150,
        170,
        30,
        parts=(E((-68, -48, -25), (28, 23, 58), (12, 15, 25)),),
        cuts=(E((-44, -38, -25), (9, 9, 20)),),
    ),
    OrganSpec(
        3,
        "spleen",
        200,
        115,
        15,
        vol_sigma=0.35,
        parts=(E((98, -25, 55), (18, 46, 56), (0, 0, -15)),),
        cuts=(E((80, -18, 52), (10, 22, 26)),),
    ),
    OrganSpec(
        4,
        "pancreas",
        70,
        95,
        15,
        vol_sigma=0.25,
        parts=(
            T(
                ((-30, 6, -26), (-30, 18, -6), (-6, 20, 4), (25, 10, 12), (55, -8, 22), (76, -22, 30)),
                (13, 15.5, 12, 11, 9.5, 8.5),
            ),
        ),
    ),
    OrganSpec(
        5,
        "aorta",
        90,
        160,
        30,
        fit="radius",
        shift_mm=3,
        rot_deg=2,
        parts=(
            T(
                ((18, -24, 170), (14, -20, 100), (10, -14, 30), (8, -12, -40), (6, -12, -108)),
                (12.3, 11.8, 11.2, 10.7, 10.2),
            ),
        ),
    ),
    OrganSpec(
        6,
        "ivc",
        50,
        130,
        30,
        fit="radius",
        shift_mm=3,
        rot_deg=2,
        parts=(
            T(((-20, -6, -130), (-22, -4, -40), (-22, -2, 20), (-18, 4, 70), (-13, 8, 106)), (7.5, 7.5, 8, 8.5, 9.5)),
        ),
    ),
    OrganSpec(
        7,
        "right_adrenal",
        4.3,
        55,
        15,
        vol_sigma=0.22,
        shift_mm=4,
        parts=(
            E((-37, -32, 42), (3.3, 10.5, 15.5), (0, 0, 25)),
            E((-40, -38, 40), (3.3, 10.5, 14.5), (0, 0, -20)),
        ),
    ),
    OrganSpec(
        8,
        "left_adrenal",
        4.5,
        55,
        15,
        vol_sigma=0.22,
        shift_mm=4,
        parts=(
            E((34, -26, 32), (3.3, 10.5, 16.5), (0, 0, -25)),
            E((38, -32, 29), (3.3, 10.5, 14.5), (0, 0, 20)),
        ),
    ),
    OrganSpec(9, "gallbladder", 30, 10, 10, vol_sigma=0.4, parts=(E((-40, 48, 12), (14, 16, 32), (40, 0, 0)),)),
    OrganSpec(
        10,
        "esophagus",
        20,
        50,
        15,
        fit="radius",
        shift_mm=3,
        rot_deg=2,
        parts=(T(((2, -5, 160), (4, -4, 120), (12, -2, 95), (30, -2, 74)), (9.5, 9.5, 9.5, 9)),),
    ),
    OrganSpec(
        11,
        "stomach",
        350,
        40,
        40,
        vol_sigma=0.4,
        parts=(
            T(
                ((45, -12, 80), (60, 6, 54), (62, 26, 24), (45, 42, 0), (15, 45, -10), (-10, 38, -8), (-22, 30, -3)),
                (32, 29, 25, 21, 16, 12, 9),
            ),
        ),
    ),
    OrganSpec(
        12,
        "duodenum",
        75,
        55,
        25,
        vol_sigma=0.2,
        parts=(
            T(
                (
                    (-22, 30, -3),
                    (-42, 22, 0),
                    (-52, 8, -10),
                    (-55, 5, -40),
                    (-50, 8, -65),
                    (-25, 15, -76),
                    (5, 15, -76),
                    (25, 11, -62),
                    (32, 12, -40),
                ),
                (10.5, 11.5, 10.5, 10.5, 10.5, 10.5, 10.5, 9.5, 9.5),
            ),
        ),
    ),
    OrganSpec(
        13,
        "left_kidney",
        155,
        170,
        30,
        parts=(E((66, -46, -12), (28, 23, 59), (12, -15, -25)),),
        cuts=(E((43, -36, -12), (9, 9, 20)),),
    ),
)
LABEL_NAMES: dict[int, str] = {0: "background", **{o.label: o.name for o in ORGANS}}
ORGAN_BY_LABEL: dict[int, OrganSpec] = {o.label: o for o in ORGANS}
# Painted first = never overwritten: the small structures win every overlap.
PAINT_ORDER: tuple[int, ...] = (7, 8, 10, 9, 5, 6, 4, 12, 2, 13, 3, 11, 1)

# Unlabelled veins that move with an organ's frame: (frame label, tube).
VESSELS: tuple[tuple[int, Tube], ...] = (
    (4, T(((80, -24, 32), (55, -14, 22), (25, 2, 12), (-2, 8, 5)), (4.5, 4.5, 5, 5.5))),  # splenic v.
    (4, T(((-2, 8, 5), (2, 22, -30), (6, 30, -78)), (6, 5.5, 5))),  # SMV
    (1, T(((-2, 8, 5), (-25, 10, 30), (-48, 6, 42), (-85, 0, 50)), (7, 7, 5.5, 4))),  # portal v.
    (1, T(((-25, 10, 30), (-8, 22, 50), (15, 32, 60)), (5, 4.5, 3.5))),  # left portal
    (1, T(((-14, 6, 98), (-45, -6, 85), (-80, -12, 70)), (6, 5, 3.5))),  # right HV
    (1, T(((-14, 6, 98), (-30, 22, 80), (-40, 35, 62)), (5, 4.5, 3.5))),  # middle HV
    (1, T(((-14, 6, 98), (5, 22, 90), (25, 32, 78)), (5, 4, 3.5))),  # left HV
)
