"""Reference anatomy of the synthetic abdominal CT phantom, in millimetres.

Coordinates are RAS millimetres of a reference subject: +x is the patient's
left, +y anterior, +z superior; the origin is the centre of the default field
of view (about the level of the pancreas and the renal hila).  Nothing here
knows about voxels: :mod:`vrsearch.data.phantom` samples these shapes on a
grid after a per-subject transform.

Organs are approximate signed distances in mm (negative inside; the shapes are
:mod:`vrsearch.data.phantom_shapes`):

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

from typing import Any

from vrsearch.data.phantom_shapes import Ellipsoid, OrganSpec, Tube, Vec, rotation

# the shapes are re-exported: ``anat.Tube`` etc. read as the anatomy's vocabulary
__all__ = ["ORGANS", "LABEL_NAMES", "ORGAN_BY_LABEL", "PAINT_ORDER", "VESSELS", "Subject"]
__all__ += ["Ellipsoid", "OrganSpec", "Tube", "Vec", "rotation"]

#: one subject's draws (size, pose, per-organ volume/shift/rotation, HU jitter, ...), keyed by name
Subject = dict[str, Any]

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
