"""The body around the phantom's organs: tissue classes and their CT numbers, and the
torso painted on warped anatomical coordinates (RAS millimetres of the reference
subject, as in :mod:`vrsearch.data.phantom_anatomy`).

A superellipse torso (~320 x 220 mm) with a subcutaneous fat layer (thicker
anteriorly), a muscle wall (thicker where the recti are), ribs inside the wall
(descending anteriorly, stopping at the costal margin), a lumbar spine (vertebral
body with a cortical ring, discs, arch, spinous and transverse processes),
paraspinal and psoas muscles, lung bases above the hemidiaphragm domes and the base
of the heart.
"""

from __future__ import annotations

import numpy as np

# Background tissue classes; organ tissue class = ORGAN_TISSUE + label.
AIR, FAT, MUSCLE, CORTEX, MARROW, DISC, CSF, LUNG, RIB, VESSEL, BOWEL, GAS, HEART = range(13)
ORGAN_TISSUE = 16
# (mean HU, texture/between-subject sd) for the background classes.
TISSUE_HU: dict[int, tuple[float, float]] = {
    AIR: (-1000, 0),
    FAT: (-100, 12),
    MUSCLE: (50, 8),
    CORTEX: (800, 60),
    MARROW: (250, 40),
    DISC: (90, 10),
    CSF: (20, 5),
    LUNG: (-850, 30),
    RIB: (500, 60),
    VESSEL: (150, 12),
    BOWEL: (35, 20),
    GAS: (-1000, 0),
    HEART: (130, 15),
}
BONE_CLASSES = (CORTEX, MARROW, DISC, RIB)

TORSO_SEMI = (160.0, 110.0)  # skin ellipse semi-axes (x, y), mm
TORSO_POWER = 2.3  # superellipse exponent: a flatter back than an ellipse
SPINE_Y = -42.0  # vertebral body centre (y), mm
DOMES = ((-55.0, 118.0), (55.0, 108.0))  # (x, apex z) of the right/left hemidiaphragm


def background(
    q: list[np.ndarray], fat_mm: float, scale: float, aspect: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paint the body (module doc) around the organs on warped anatomical coordinates ``q``.

    Returns ``(tissue uint8, inside_fat bool, cavity bool, bone bool)``;
    ``inside_fat`` (deeper than the subcutaneous fat) is where organs may lie.
    ``scale`` sizes the body in-plane; ``aspect`` > 1 makes it wider and flatter.
    """
    x, y, z = q[0] / (scale * aspect), q[1] / (scale / aspect), q[2]
    depth, sin_t = _skin_depth(x, y, scale)
    fat = fat_mm * (1.0 + 0.3 * sin_t)
    wall = 9.0 + 5.0 * np.maximum(sin_t, 0.0)
    tissue = np.where(depth > 0, FAT, AIR).astype(np.uint8)
    inside = depth > fat
    cavity = depth > fat + wall
    tissue[inside & ~cavity] = MUSCLE
    tissue[_ribs(x, y, z, depth, sin_t, fat, wall, inside)] = RIB
    _muscles_and_spine(tissue, x, y - SPINE_Y, z, depth, cavity)
    _thorax(tissue, x, y, z, cavity)
    bone = np.isin(tissue, BONE_CLASSES)
    return tissue, inside, cavity, bone


def _skin_depth(x: np.ndarray, y: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(mm below the superellipse skin, sin of the angle: +1 anterior, -1 posterior)."""
    a, b = TORSO_SEMI
    ux, uy = np.abs(x) / a + 1e-6, np.abs(y) / b + 1e-6
    r = (ux**TORSO_POWER + uy**TORSO_POWER) ** (1 / TORSO_POWER)
    grad = r ** (1 - TORSO_POWER) * np.sqrt((ux ** (TORSO_POWER - 1) / a) ** 2 + (uy ** (TORSO_POWER - 1) / b) ** 2)
    return -(r - 1.0) / grad * scale, y / (np.sqrt(x * x + y * y) + 1.0)


def _ribs(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    sin_t: np.ndarray,
    fat: np.ndarray,
    wall: np.ndarray,
    inside: np.ndarray,
) -> np.ndarray:
    """Bands in the wall, sloping down anteriorly, above the costal margin."""
    band = inside & (depth < fat + wall - 1.0) & (depth > fat + 1.0)
    rib = band & (np.cos(2 * np.pi * (z + 40 * sin_t) / 28.0) > 0.6)
    rib &= z > -25.0 + 75.0 * np.maximum(sin_t, 0.0)
    rib &= ~((np.abs(x) < 22) & (y < 0))
    return rib


def _muscles_and_spine(
    tissue: np.ndarray, x: np.ndarray, ys: np.ndarray, z: np.ndarray, depth: np.ndarray, cavity: np.ndarray
) -> None:
    """Paraspinal and psoas muscles, then the spine: body with cortical ring and discs,
    canal, arch, processes (``ys``: y relative to the vertebral body centre)."""
    para = ((np.abs(x) - 35) / 22) ** 2 + ((ys + 44) / 16) ** 2 < 1
    grow = np.clip(40.0 - z, 0.0, None)
    psoas = (z < 40) & (
        ((np.abs(x) - 26 - 0.1 * grow) / (6 + 0.12 * grow)) ** 2 + ((ys + 2) / (6 + 0.08 * grow)) ** 2 < 1
    )
    tissue[(para & (depth > 0)) | (psoas & cavity)] = MUSCLE
    u = np.sqrt((x / 22) ** 2 + (ys / 17) ** 2)
    phase = np.mod(z + 10.0, 34.0)
    canal = np.sqrt(x * x + (ys + 29) ** 2)
    vert = u < 1
    tissue[vert] = MARROW
    tissue[vert & (u > 1 - 2.5 / 17)] = CORTEX
    tissue[vert & (phase < 8)] = DISC
    arch = (canal >= 9) & (canal < 14.5)
    spinous = (np.abs(x) < 3.5) & (ys < -36) & (ys > -58) & (phase > 9)
    transverse = (np.abs(x) > 12) & (np.abs(x) < 40) & (np.abs(ys + 26) < 4) & (phase > 12) & (phase < 24)
    tissue[arch | spinous | transverse] = CORTEX
    tissue[canal < 9] = CSF


def _thorax(tissue: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray, cavity: np.ndarray) -> None:
    """Lung bases above the diaphragm domes, the heart anteriorly on top."""
    dome = np.maximum.reduce([h - ((x - cx) ** 2 + (y + 5) ** 2) / 250.0 for cx, h in DOMES])
    above = cavity & (z > dome) & (tissue == FAT)
    heart = above & (((x - 15) / 75) ** 2 + ((y - 35) / 55) ** 2 + ((z - 175) / 70) ** 2 < 1)
    tissue[above & (z <= dome + 5)] = MUSCLE
    tissue[above & (z > dome + 5)] = LUNG
    tissue[heart] = HEART
