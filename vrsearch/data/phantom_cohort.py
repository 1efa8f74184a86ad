"""The ``cohort`` population of the synthetic CT phantom: subjects and scans that vary.

One labelled case of the ``classic`` population (:mod:`vrsearch.data.phantom`,
``population="classic"``) generalises to the others almost as well as
fourteen do: every subject is a mild variation of one reference body scanned
on one scanner in one contrast phase. Real cohorts (FLARE22 pools scans from
many centres) vary far more, and that variation is why labels are scarce and
unlabeled images useful. The ``cohort`` population draws, per subject:

Anatomy (:func:`draw_subject`, stream ``[seed, index, 0]``)
    body habitus: torso scale (log-normal, sd 0.08) and width/depth aspect
    (sd 0.06), subcutaneous fat 4-60 mm (log-normal around 18 mm); organ
    volumes log-normal with 1.3x the classic sigma; each volume-fitted organ
    stretched anisotropically along its own axes (log-normal per axis, sd
    0.12, volume kept) -- a deformation beyond scaling; organ shifts and
    rotations 1.5x the classic ranges; a shared craniocaudal shift of the
    upper-abdominal organs (breathing/diaphragm, sd 10 mm); organs pushed
    apart by visceral fat; an elastic warp of 3-7 mm (classic: 3 mm); the
    field of view moves +-10 mm left-right, +-15 mm (table height) and +-25 mm
    craniocaudally (scan range), so organs are sometimes cut by the edge;
    hypodense liver lesions (40 % of subjects, 1-3, radius 4-18 mm) and renal
    cysts (30 %), labelled as their organ.
Absent organs (:func:`absent_organs`, stream ``[seed, index, 4]``)
    the gallbladder as in the classic population (~8 %, at least one per
    block of 24), plus right or left nephrectomy (3 % each) and splenectomy
    (3 %).
Scan (:func:`acquisition`, stream ``[seed, index, 3]``)
    one of five scanners (:data:`SCANNERS`: its HU calibration ``slope * HU +
    offset``, iodine contrast factor of its tube voltage, noise factor and
    reconstruction-kernel blur); a contrast phase (non-contrast 15 %,
    arterial 20 %, portal-venous 50 %, delayed 15 %; :data:`PHASE_HU`) with a
    per-subject enhancement factor (0.75-1.25); positive oral contrast in 20 %
    of subjects; slice thickness 1, 2.5, 5 or 7.5 mm (a Gaussian slice
    profile of that FWHM along z: partial volume at boundaries); noise sd
    8-30 HU (log-uniform) times the scanner's factor and the body size,
    correlated over 0.5-1.2 voxels (noise texture); a smooth additive bias
    field (sd 0-20 HU over ~60 mm) and cupping (up to 25 HU darker at the
    body centre, more in larger bodies).

Every draw depends on ``(seed, index)`` only, never on the grid, so ``size``
and ``spacing`` change resolution and field of view, not the subject.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from vrsearch.data import phantom_anatomy as anat
from vrsearch.data import phantom_body as pb
from vrsearch.data.phantom_anatomy import ORGANS, Subject

__all__ = [
    "Scanner",
    "SCANNERS",
    "PHASES",
    "PHASE_HU",
    "Acquisition",
    "acquisition",
    "absent_organs",
    "draw_subject",
    "tissue_hu",
    "acquire",
    "CYST",
    "TUMOR",
]

CYST, TUMOR = 13, 14  # extra tissue classes (between the background ones and ORGAN_TISSUE)


@dataclass(frozen=True)
class Scanner:
    """HU calibration and image character of one "scanner" (site + protocol)."""

    name: str
    offset: float  # HU added after scaling (water no longer at 0)
    slope: float  # HU scale of the calibration
    iodine: float  # contrast enhancement relative to 120 kVp
    noise: float  # noise sd factor (dose, detector)
    kernel: float  # in-plane blur sigma, voxels (sharp to smooth reconstruction kernel)


SCANNERS: tuple[Scanner, ...] = (
    Scanner("A-120kV", 0.0, 1.00, 1.00, 1.00, 0.70),
    Scanner("B-100kV", 8.0, 1.00, 1.20, 1.25, 0.60),
    Scanner("C-80kV-lowdose", -12.0, 1.02, 1.45, 1.70, 0.55),
    Scanner("D-140kV-smooth", 15.0, 0.97, 0.80, 0.75, 1.00),
    Scanner("E-drifted", -30.0, 1.06, 1.00, 1.30, 0.85),
)

PHASES = ("non_contrast", "arterial", "portal_venous", "delayed")
PHASE_P = (0.15, 0.20, 0.50, 0.15)
SLICE_MM = (1.0, 2.5, 5.0, 7.5)
SLICE_P = (0.25, 0.35, 0.30, 0.10)

#: mean HU per phase (non-contrast, arterial, portal-venous, delayed) of every organ label and of
#: the enhancing background classes; the portal-venous column is the classic table's
PHASE_HU: dict[str, tuple[float, float, float, float]] = {
    "liver": (55, 70, 105, 85),
    "right_kidney": (30, 190, 170, 130),
    "spleen": (45, 120, 115, 95),
    "pancreas": (40, 110, 95, 70),
    "aorta": (40, 300, 160, 120),
    "ivc": (40, 90, 130, 115),
    "right_adrenal": (25, 60, 55, 50),
    "left_adrenal": (25, 60, 55, 50),
    "gallbladder": (10, 10, 10, 10),
    "esophagus": (40, 55, 50, 45),
    "stomach": (30, 45, 40, 38),
    "duodenum": (35, 60, 55, 48),
    "left_kidney": (30, 190, 170, 130),
    "vessel": (40, 100, 150, 120),
    "heart": (40, 280, 130, 110),
    "muscle": (45, 55, 50, 50),
    "bowel": (30, 45, 35, 35),
    "tumor": (40, 55, 60, 60),
    "cyst": (8, 8, 8, 8),
}
_BACKGROUND = {
    "vessel": pb.VESSEL,
    "heart": pb.HEART,
    "muscle": pb.MUSCLE,
    "bowel": pb.BOWEL,
    "tumor": TUMOR,
    "cyst": CYST,
}
#: organs that move with the diaphragm (shared craniocaudal shift)
_UPPER = (1, 2, 3, 4, 7, 8, 9, 11, 12, 13)
_ABSENT_P = {2: 0.03, 13: 0.03, 3: 0.03}  # right/left nephrectomy, splenectomy


@dataclass(frozen=True)
class Acquisition:
    """How one subject was scanned (see the module doc for the distributions)."""

    scanner: int
    phase: str
    enhancement: float
    oral_contrast: float
    slice_mm: float
    noise_hu: float
    noise_corr: float
    bias_hu: float
    cupping_hu: float

    @property
    def calibration(self) -> Scanner:
        return SCANNERS[self.scanner]


def acquisition(seed: int, index: int) -> Acquisition:
    """The scan of subject ``index`` (independent of its anatomy and of the grid)."""
    rng = np.random.default_rng([seed, index, 3])
    return Acquisition(
        scanner=int(rng.integers(len(SCANNERS))),
        phase=PHASES[int(rng.choice(len(PHASES), p=PHASE_P))],
        enhancement=float(rng.uniform(0.75, 1.25)),
        oral_contrast=float(rng.uniform(150, 300)) * float(rng.random() < 0.2),
        slice_mm=float(SLICE_MM[int(rng.choice(len(SLICE_MM), p=SLICE_P))]),
        noise_hu=float(np.exp(rng.uniform(np.log(8.0), np.log(30.0)))),
        noise_corr=float(rng.uniform(0.5, 1.2)),
        bias_hu=float(rng.uniform(0, 20)),
        cupping_hu=float(rng.uniform(0, 25)),
    )


def absent_organs(seed: int, index: int, gallbladder: bool) -> frozenset[int]:
    """Labels missing from subject ``index``: ``gallbladder`` (the classic rule, passed in) and
    nephrectomies / splenectomy drawn from their own stream."""
    rng = np.random.default_rng([seed, index, 4])
    gone = {lab for lab, p in _ABSENT_P.items() if rng.random() < p}
    return frozenset(gone | ({9} if gallbladder else set()))


def _stretch(rng: np.random.Generator, sd: float) -> np.ndarray:
    """Per-axis log-normal factors with product 1 (volume kept; the grid fit restores it anyway)."""
    f = rng.normal(0, sd, 3)
    return np.exp(f - f.mean())


def draw_subject(rng: np.random.Generator, absent: frozenset[int]) -> Subject:
    """All anatomy draws of one cohort subject, in a fixed order (grid-independent)."""
    scale = float(np.exp(rng.normal(0, 0.08)))
    s: Subject = {
        "scale": scale,
        "aspect": float(np.exp(rng.normal(0, 0.06))),
        "fat": float(np.clip(18.0 * np.exp(rng.normal(0, 0.5)) * scale, 4, 60)),
        "rot": anat.rotation(rng.uniform(-1, 1, 3) * np.array([5.0, 5.0, 8.0])),
        "shift": rng.uniform(-1, 1, 3) * np.array([10.0, 15.0, 25.0]),
        "warp_mm": float(rng.uniform(3, 7)),
    }
    body, diaphragm, visceral = rng.normal(), rng.normal(0, 10.0), float(rng.uniform(-0.05, 0.15))
    organs: dict[int, dict[str, Any]] = {}
    for o in ORGANS:
        z = 0.3 * body + np.sqrt(1 - 0.09) * rng.normal()
        shift = rng.uniform(-1, 1, 3) * 1.5 * o.shift_mm
        stretch = _stretch(rng, 0.12)
        if o.label in _UPPER:
            shift = shift + np.array([0.0, 0.0, diaphragm]) + visceral * np.append(o.center[:2], 0.0)
        organs[o.label] = {
            "volume": 0.0 if o.label in absent else o.volume_ml * float(np.exp(1.3 * o.vol_sigma * z)),
            "shift": shift,
            "rot": anat.rotation(rng.uniform(-1, 1, 3) * 1.5 * o.rot_deg),
            "stretch": None if o.fit == "radius" else stretch,
        }
    s["organs"] = organs
    s["hu"] = rng.normal(size=pb.ORGAN_TISSUE + 14)
    s["gas"] = float(rng.uniform(0, 0.3)) * float(rng.random() < 0.7)
    s["lesions"] = _lesions(rng)
    return s


def _lesions(rng: np.random.Generator) -> list[tuple[int, int, anat.Ellipsoid]]:
    """(organ label, tissue class, shape in the organ's reference frame) of each lesion."""
    out = []
    n_liver = int(rng.integers(1, 4)) if rng.random() < 0.4 else 0
    n_cyst = 1 if rng.random() < 0.3 else 0
    for organ, cls, count, radius in ((1, TUMOR, n_liver, (4, 18)), (int(rng.choice([2, 13])), CYST, n_cyst, (4, 12))):
        spec = anat.ORGAN_BY_LABEL[organ]
        for _ in range(count):
            part = spec.parts[int(rng.integers(len(spec.parts)))]
            centre = np.asarray(part.center) + rng.uniform(-0.5, 0.5, 3) * np.asarray(part.semi)
            r = float(rng.uniform(*radius))
            out.append((organ, cls, anat.Ellipsoid(tuple(centre.tolist()), (r, r, r))))
    return out


def tissue_hu(subj: Subject, acq: Acquisition) -> tuple[np.ndarray, np.ndarray]:
    """(mean HU, texture amplitude) per tissue class for this subject and scan, before calibration.

    Enhancing classes: ``nc + (phase - nc) * scanner.iodine * acq.enhancement`` (:data:`PHASE_HU`),
    plus the subject's jitter (0.35 sd per organ, 0.3 per background class, as classic).
    """
    ph, gain = PHASES.index(acq.phase), acq.calibration.iodine * acq.enhancement
    mean = np.zeros(pb.ORGAN_TISSUE + 14, np.float32)
    amp = np.zeros_like(mean)
    for cls, (hu, sd) in pb.TISSUE_HU.items():
        mean[cls], amp[cls] = hu + 0.3 * sd * subj["hu"][cls], 0.7 * sd
    for name, cls in _BACKGROUND.items():
        nc, hu = PHASE_HU[name][0], PHASE_HU[name][ph]
        mean[cls], amp[cls] = nc + (hu - nc) * gain + 0.3 * 10.0 * subj["hu"][cls], 7.0
    for o in ORGANS:
        cls, nc, hu = pb.ORGAN_TISSUE + o.label, PHASE_HU[o.name][0], PHASE_HU[o.name][ph]
        mean[cls], amp[cls] = nc + (hu - nc) * gain + 0.35 * o.hu_sd * subj["hu"][cls], 0.5 * o.hu_sd
    if acq.phase == "arterial":  # arterial-phase splenic heterogeneity, corticomedullary kidneys
        for lab in (2, 3, 13):
            amp[pb.ORGAN_TISSUE + lab] *= 2.5
    for cls in (pb.BOWEL, pb.ORGAN_TISSUE + 11, pb.ORGAN_TISSUE + 12):
        mean[cls] += acq.oral_contrast
    return mean, amp


def acquire(
    tissue: np.ndarray,
    tex: np.ndarray,
    bias: np.ndarray,
    radius2: np.ndarray,
    spacing: Sequence[float],
    subj: Subject,
    acq: Acquisition,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """The scan of a tissue map: intensities, blur, bias, noise, calibration -> int16 HU.

    ``tex``/``bias`` are unit-sd smooth fields on the grid; ``radius2`` is the squared normalised
    distance from the body axis (1 at the skin). Blur: the scanner's kernel in-plane and the slice
    profile (FWHM ``acq.slice_mm``) combined with it along z.
    """
    mean, amp = tissue_hu(subj, acq)
    cal = acq.calibration
    img = mean[tissue] + amp[tissue] * tex
    body = tissue != pb.AIR
    img += body * (acq.bias_hu * bias - acq.cupping_hu * subj["scale"] ** 2 * np.clip(1.0 - radius2, 0.0, 1.0))
    sz = np.hypot(cal.kernel, acq.slice_mm / 2.355 / float(spacing[2]))
    img = ndimage.gaussian_filter(img, (cal.kernel, cal.kernel, sz), truncate=3.0)
    noise = noise_rng.standard_normal(tissue.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, acq.noise_corr, truncate=3.0)
    sd = acq.noise_hu * cal.noise * subj["scale"] ** 2
    img += noise * np.float32(sd / max(float(noise.std()), 1e-6))
    img = img * np.float32(cal.slope) + np.float32(cal.offset)
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)
