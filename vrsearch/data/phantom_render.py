"""From a subject's draws to voxels: the rendering half of the synthetic CT phantom.

A subject is drawn from ``(seed, index)`` alone (:func:`_subject`: the classic
draws here, the cohort's in :mod:`vrsearch.data.phantom_cohort`), posed and
warped (:func:`_pose`), its organs fitted to their drawn volumes on the grid
(:func:`_paint_organs`), the body, vessels, bowel and gas painted around them,
and the tissue map turned into HU (:func:`_image` for classic,
:func:`vrsearch.data.phantom_cohort.acquire` for cohort). Public entry points
live in :mod:`vrsearch.data.phantom`.

Classic, per subject: a log-normal volume factor per organ (sigma 0.15; 0.2-0.4 for
pancreas, duodenum, spleen, stomach, gallbladder, adrenals), mildly correlated
through a shared body-size factor; each organ moves (up to +-8 mm, tubes +-3 mm)
and rotates (+-10 deg) about its centre; the whole body shifts +-10 mm and
rotates (yaw +-5, tilt +-3 deg); a smooth elastic warp (Gaussian-filtered
noise, ~3 mm sd, ~30 mm correlation length) deforms everything.  The
gallbladder is absent in ~8 % of subjects (see :func:`gallbladder_absent`).

Image: portal-venous HU per tissue with per-subject jitter, low-frequency
texture, vessels in the liver, bowel loops with gas, stomach gas with a
horizontal air-fluid level, partial-volume blur (sigma 0.6 voxel) and
spatially correlated noise (sd 10-25 HU), clipped to int16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from vrsearch.data import phantom_anatomy as anat
from vrsearch.data import phantom_body as pb
from vrsearch.data import phantom_cohort as cohort
from vrsearch.data.phantom_anatomy import ORGANS, OrganSpec, Subject

if TYPE_CHECKING:
    from vrsearch.data.phantom_config import PhantomConfig

GALLBLADDER_ABSENT_P = 0.08
ABSENCE_BLOCK = 24
_FAR = 1e6  # sdf value (mm) standing for "farther than any threshold"
#: an organ's pose: (centre, rotation, shift, growth: a scalar or one factor per reference axis)
Frame = tuple[np.ndarray, np.ndarray, np.ndarray, Any]
#: what can be posed and evaluated as a signed distance
Shape = anat.Ellipsoid | anat.Tube | OrganSpec
#: grid slices of a box and the signed distance (mm) inside it (None: off the grid)
Evaluated = tuple[tuple[slice, ...], np.ndarray] | None


def _uniform_draw(seed: int, index: int) -> float:
    return float(np.random.default_rng([seed, index, 2]).random())


def gallbladder_absent(seed: int, index: int) -> bool:
    """Whether subject ``index`` has no gallbladder (deterministic per seed).

    Absent with probability 0.08 from the subject's own stream; and in every
    block of 24 consecutive subjects (0-23, 24-47, ...) where that draw gives
    no absence, the subject with the smallest draw loses it anyway, so the
    default 24 labeled cases always contain an empty class.
    """
    if _uniform_draw(seed, index) < GALLBLADDER_ABSENT_P:
        return True
    start = index - index % ABSENCE_BLOCK
    draws = [_uniform_draw(seed, j) for j in range(start, start + ABSENCE_BLOCK)]
    return min(draws) >= GALLBLADDER_ABSENT_P and index == start + int(np.argmin(draws))


def _smooth_field(
    rng: np.random.Generator,
    axes: Sequence[np.ndarray],
    step: float,
    sigma: float,
    reach: tuple[float, float, float] = (200.0, 200.0, 400.0),
) -> np.ndarray:
    """Unit-sd Gaussian-filtered noise on the grid ``axes`` (mm), separable.

    Coefficients live on a fixed mm lattice (so the field does not depend on
    the grid) and are smoothed by a Gaussian kernel of ``sigma`` mm.
    """
    centres = [np.arange(-r, r + step / 2, step) for r in reach]
    coef = rng.standard_normal(tuple(len(c) for c in centres), dtype=np.float32)
    mats = []
    for ax, c, dim in zip(axes, centres, range(3)):
        w = np.exp(-0.5 * ((ax[:, None] - c[None, :]) / sigma) ** 2).astype(np.float32)
        w[w < 1e-5] = 0.0  # no denormals: they make BLAS crawl
        keep = w.max(0) > 0
        mats.append(w[:, keep])
        coef = np.compress(keep, coef, axis=dim)
    # einsum without BLAS: multi-threaded BLAS on busy small machines is slower
    out = np.einsum("ia,abc->ibc", mats[0], coef)
    out = np.einsum("ibc,jb->ijc", out, mats[1])
    out = np.einsum("ijc,kc->ijk", out, mats[2])
    return out * np.float32((step / (sigma * np.sqrt(np.pi))) ** 1.5)


def _draw_subject(rng: np.random.Generator, seed: int, index: int) -> Subject:
    """All anatomy draws, in a fixed order (independent of the grid)."""
    s: Subject = {
        "scale": float(np.exp(rng.normal(0, 0.05))),
        "fat": float(rng.uniform(10, 30)),
        "rot": _random_rotation(rng, (3, 3, 5)),
        "shift": rng.uniform(-10, 10, 3),
    }
    body = rng.normal()
    organs: dict[int, dict[str, Any]] = {}
    for o in ORGANS:
        z = 0.3 * body + np.sqrt(1 - 0.09) * rng.normal()
        organs[o.label] = {
            "volume": o.volume_ml * float(np.exp(o.vol_sigma * z)),
            "shift": rng.uniform(-1, 1, 3) * o.shift_mm,
            "rot": _random_rotation(rng, (o.rot_deg,) * 3),
        }
    if gallbladder_absent(seed, index):
        organs[9]["volume"] = 0.0
    s["organs"] = organs
    s["hu"] = rng.normal(size=pb.ORGAN_TISSUE + 14)
    s["gas"] = float(rng.uniform(0, 0.3)) * float(rng.random() < 0.7)
    s["noise"] = float(rng.uniform(10, 25))
    return s


def _random_rotation(rng: np.random.Generator, limits: Sequence[float]) -> np.ndarray:
    return anat.rotation(rng.uniform(-1, 1, 3) * np.asarray(limits, dtype=float))


class _Frames:
    """Maps an organ's reference shape into the (warped) grid of one subject."""

    def __init__(
        self, q: list[np.ndarray], subject: Subject, axes: list[np.ndarray], spacing: Sequence[float], warp_max: float
    ):
        self.q, self.s, self.axes, self.spacing = q, subject, axes, np.asarray(spacing)
        self.pad = warp_max + 3 * self.spacing.max() + 10.0  # > threshold limits

    def organ(self, o: OrganSpec) -> Frame:
        """(centre, R, shift, grow) of organ ``o``; ``grow`` is a scalar or, for a stretched
        cohort organ, three factors along the organ's reference axes."""
        d = self.s["organs"][o.label]
        grow = 1.0 if o.fit == "radius" else (d["volume"] / o.volume_ml) ** (1 / 3)
        if d.get("stretch") is not None:
            grow = grow * d["stretch"]
        return o.center, d["rot"], d["shift"], grow

    def evaluate(self, shape: Shape, frame: Frame, piecewise: bool = True) -> Evaluated:
        """(slices, sdf in mm) of ``shape`` posed by ``frame`` = (centre, R, shift, grow); None off the grid.

        Under a stretch the sdf is scaled by the smallest factor (a bound, not an exact
        distance; the organ's threshold is fitted to its volume anyway). ``piecewise``:
        a tube's segments are evaluated in their own boxes (:meth:`_tube_sdf`)."""
        c, rot, shift, grow = frame
        g = [float(v) for v in np.broadcast_to(grow, 3)]
        sl = self._box(*shape.bounds(), frame)
        if sl is None:
            return None
        r, c0, off = rot.tolist(), c.tolist(), (c + shift).tolist()  # python floats keep float32
        d = [self.q[i][sl] - off[i] for i in range(3)]
        local = [(d[0] * r[0][i] + d[1] * r[1][i] + d[2] * r[2][i]) * (1 / g[i]) + c0[i] for i in range(3)]
        tube = shape if isinstance(shape, anat.Tube) else getattr(shape, "tube", None)
        if tube is None or not piecewise:
            return sl, shape.sdf(local) * min(g)
        return sl, self._tube_sdf(tube, local, sl, frame) * min(g)

    def _box(self, lo: np.ndarray, hi: np.ndarray, frame: Frame) -> tuple[slice, ...] | None:
        """Grid slices holding every voxel within ``pad`` of the local box [lo, hi] posed by ``frame``."""
        c, rot, shift, grow = frame
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        pts = ((corners - c) * grow) @ rot.T + c + shift
        pts = pts @ self.s["rot"].T + self.s["shift"]
        sl = []
        for i, ax in enumerate(self.axes):
            a = np.searchsorted(ax, pts[:, i].min() - self.pad)
            b = np.searchsorted(ax, pts[:, i].max() + self.pad)
            if b <= a:
                return None
            sl.append(slice(int(a), int(b)))
        return tuple(sl)

    def _tube_sdf(self, tube: anat.Tube, local: list[np.ndarray], sl: tuple[slice, ...], frame: Frame) -> np.ndarray:
        """``tube.sdf(local)``, each segment evaluated only in its own box (:meth:`_box`).

        Equal to the full evaluation wherever a segment can decide the value (within ``pad``
        of it); elsewhere the result is only known to exceed every threshold used (there it
        is ``_FAR``); never below it (a minimum over fewer segments)."""
        out = np.full(local[0].shape, _FAR, np.float32)
        for seg in tube.segments:
            sub = self._box(*tube.segment_bounds(*seg), frame)
            if sub is None:
                continue
            rel = tuple(slice(max(s.start, r.start) - r.start, min(s.stop, r.stop) - r.start) for s, r in zip(sub, sl))
            if all(r.stop > r.start for r in rel):
                np.minimum(out[rel], tube.segment_sdf([v[rel] for v in local], *seg), out=out[rel])
        return out


def _subject(index: int, config: PhantomConfig, rng: np.random.Generator) -> Subject:
    if config.population == "classic":
        return _draw_subject(rng, config.seed, index)
    gone = cohort.absent_organs(config.seed, index, gallbladder_absent(config.seed, index))
    return cohort.draw_subject(rng, gone)


def _pose(
    index: int, config: PhantomConfig
) -> tuple[Subject, np.random.Generator, list[np.ndarray], list[np.ndarray], _Frames]:
    """(subject, its generator after the warp, grid axes, warped coordinates q, frames)."""
    rng = np.random.default_rng([config.seed, index, 0])
    subj = _subject(index, config, rng)
    axes = [((np.arange(n) - (n - 1) / 2) * s).astype(np.float32) for n, s in zip(config.size, config.spacing)]
    warp = [subj.get("warp_mm", 3.0) * _smooth_field(rng, axes, 25.0, 30.0) for _ in range(3)]
    # warped anatomical coordinates q = R^T (p - t) + w(p)
    p = np.meshgrid(*axes, indexing="ij", sparse=True)
    r, t = subj["rot"].tolist(), subj["shift"].tolist()
    q = [sum((p[j] - t[j]) * r[j][i] for j in range(3)) + warp[i] for i in range(3)]
    return subj, rng, axes, q, _Frames(q, subj, axes, config.spacing, float(np.sqrt(sum(w * w for w in warp)).max()))


def _paint_organs(
    frames: _Frames, subj: Subject, allowed: np.ndarray, config: PhantomConfig
) -> tuple[np.ndarray, tuple[tuple[slice, ...], np.ndarray] | None]:
    """(label map, (slices, stomach lumen) or None): organs in PAINT_ORDER, each fitted to its volume."""
    label = np.zeros(config.size, np.uint8)
    voxel_ml = float(np.prod(config.spacing)) / 1000.0
    stomach = None
    for lab in anat.PAINT_ORDER:
        o = anat.ORGAN_BY_LABEL[lab]
        vol = subj["organs"][lab]["volume"]
        if vol <= 0:
            continue
        got = frames.evaluate(o, frames.organ(o))
        if got is None:
            continue
        sl, f = got
        free = allowed[sl] & (label[sl] == 0)
        if o.fit == "radius":
            thr = (np.sqrt(vol / o.volume_ml) - 1.0) * o.mean_radius
        else:
            vals = f[free]
            k = max(1, int(round(vol / voxel_ml)))
            thr = np.partition(vals, k - 1)[k - 1] if k <= vals.size else np.inf
            lim = 0.3 * o.thickness + 0.75 * max(config.spacing)
            thr = float(np.clip(thr, -lim, lim))
        mask = free & (f <= thr)
        label[sl][mask] = lab
        if lab == 11:
            stomach = (sl, mask & (f <= thr - 3.0))
    return label, stomach


def _render(
    index: int, config: PhantomConfig, acq: cohort.Acquisition | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, label, tissue) of subject ``index``; ``acq`` overrides a cohort subject's scan."""
    subj, rng, axes, q, frames = _pose(index, config)
    tex, bowel_a, bowel_b = (_smooth_field(rng, axes, 10.0, 10.0) for _ in range(3))
    tissue, inside, cavity, bone = pb.background(q, subj["fat"], subj["scale"], subj.get("aspect", 1.0))
    label, stomach = _paint_organs(frames, subj, inside & ~bone, config)
    # background tissue, then organs, veins, bowel and gas on top
    tissue[label > 0] = pb.ORGAN_TISSUE + label[label > 0]
    for frame_label, tube in anat.VESSELS:
        got = frames.evaluate(tube, frames.organ(anat.ORGAN_BY_LABEL[frame_label]))
        if got is not None:
            sl, f = got
            tissue[sl][(f < 0) & (label[sl] <= 1) & ~bone[sl]] = pb.VESSEL
    bowel = cavity & (tissue == pb.FAT) & (q[2] < 20) & (q[1] > -30) & (bowel_a > 0.3)
    tissue[bowel] = pb.BOWEL
    tissue[bowel & (bowel_b > 1.5)] = pb.GAS
    if stomach is not None and subj["gas"] > 0 and stomach[1].any():
        sl, inner = stomach
        y = np.broadcast_to(axes[1][sl[1]][None, :, None], inner.shape)
        level = np.quantile(y[inner], 1.0 - subj["gas"])
        tissue[sl][inner & (y > level)] = pb.GAS
    noise_rng = np.random.default_rng([config.seed, index, 1])
    if config.population == "classic":
        return _image(tissue, tex, subj, noise_rng), label, tissue
    for organ, cls, shape in subj["lesions"]:
        if subj["organs"][organ]["volume"] > 0:
            got = frames.evaluate(shape, frames.organ(anat.ORGAN_BY_LABEL[organ]))
            if got is not None:
                sl, f = got
                tissue[sl][(f < 0) & (label[sl] == organ)] = cls
    bias = _smooth_field(np.random.default_rng([config.seed, index, 5]), axes, 40.0, 60.0)
    semi = [a * subj["scale"] * k for a, k in zip(pb.TORSO_SEMI, (subj["aspect"], 1 / subj["aspect"]))]
    radius2 = (q[0] / semi[0]) ** 2 + (q[1] / semi[1]) ** 2
    acq = acq if acq is not None else cohort.acquisition(config.seed, index)
    return cohort.acquire(tissue, tex, bias, radius2, config.spacing, subj, acq, noise_rng), label, tissue


def _image(tissue: np.ndarray, tex: np.ndarray, subj: Subject, noise_rng: np.random.Generator) -> np.ndarray:
    mean = np.zeros(pb.ORGAN_TISSUE + 14, np.float32)
    amp = np.zeros_like(mean)
    for cls, (hu, sd) in pb.TISSUE_HU.items():
        mean[cls], amp[cls] = hu + 0.3 * sd * subj["hu"][cls], 0.7 * sd
    for o in ORGANS:
        cls = pb.ORGAN_TISSUE + o.label
        mean[cls], amp[cls] = o.hu_mean + 0.35 * o.hu_sd * subj["hu"][cls], 0.5 * o.hu_sd
    img = mean[tissue] + amp[tissue] * tex
    img = ndimage.gaussian_filter(img, 0.6, truncate=3.0)
    noise = noise_rng.standard_normal(tissue.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, 0.8, truncate=3.0)
    img += noise * np.float32(subj["noise"] / max(float(noise.std()), 1e-6))
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)
