"""Seeded synthetic abdominal CT phantom with the 13 FLARE22 organs.

Stands in for FLARE22 where real data cannot be had.  The point is the
long-tailed class distribution (liver ~1500 mL against ~4 mL adrenals) with
small low-contrast organs.  Anatomy lives in millimetres
(:mod:`vrsearch.data.phantom_anatomy`); a subject is drawn from
``(seed, index)`` alone and then sampled on the requested grid, so ``size``
and ``spacing`` change the resolution and field of view, never the anatomy.

Two populations (``PhantomConfig.population``). ``cohort``, the default,
varies subjects and scans like a multi-centre cohort -- habitus, organ
shape/position, lesions, absent organs, scanner calibration, contrast phase,
slice thickness, noise texture, bias field -- see
:mod:`vrsearch.data.phantom_cohort`. ``classic`` is the population of
vrsearch <= 0.1, byte for byte, described next.

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

The dataset is written by :func:`write_phantom` in the nnU-Net / MSD layout,
with ``phantom.json`` recording every setting and the population's generator
version (:data:`PHANTOM_VERSION`): a folder is reused only when both match.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
from scipy import ndimage

from vrsearch.data import phantom_anatomy as anat
from vrsearch.data import phantom_cohort as cohort
from vrsearch.data.phantom_anatomy import LABEL_NAMES, ORGANS, OrganSpec

__all__ = ["ORGANS", "LABEL_NAMES", "OrganSpec", "PhantomConfig", "generate_case", "write_phantom",
           "gallbladder_absent", "phantom_affine"]

#: generator version per population: bump it whenever the bytes a population generates change,
#: so that data written by an older generator is never taken for the current one
#: (``tests/data/test_phantom.py::test_generator_output_is_pinned`` fails until you do)
PHANTOM_VERSION = {"classic": 1, "cohort": 2}
POPULATIONS = tuple(PHANTOM_VERSION)
GALLBLADDER_ABSENT_P = 0.08
ABSENCE_BLOCK = 24
_FAR = 1e6  # sdf value (mm) standing for "farther than any threshold"


@dataclass(frozen=True)
class PhantomConfig:
    """What to build; subjects are numbered labeled, then unlabeled, then test."""

    cases: int = 24
    unlabeled: int = 24
    test: int = 0
    seed: int = 0
    size: tuple[int, int, int] = (96, 96, 64)
    spacing: tuple[float, float, float] = (3.5, 3.5, 4.0)
    #: ``cohort``: subjects and scans vary like a multi-centre cohort (:mod:`~vrsearch.data.phantom_cohort`);
    #: ``classic``: the population of vrsearch <= 0.1 (one reference body, one scanner, portal-venous)
    population: str = "cohort"

    def __post_init__(self):
        if self.population not in POPULATIONS:
            raise ValueError(f"population must be one of {', '.join(POPULATIONS)}, got {self.population!r}")
        object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        if len(self.size) != 3 or min(self.size) < 8:
            raise ValueError(f"size must be three ints >= 8, got {self.size}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be three positive floats, got {self.spacing}")
        if min(self.cases, self.unlabeled, self.test, self.seed) < 0:
            raise ValueError("cases, unlabeled, test and seed must be >= 0")
        if self.cases + self.unlabeled + self.test > 1000:
            raise ValueError("at most 1000 subjects (three-digit case ids)")


def phantom_affine(config: PhantomConfig) -> np.ndarray:
    """RAS affine: diag(spacing), field of view centred on the world origin."""
    aff = np.diag([*config.spacing, 1.0])
    aff[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(config.size, config.spacing)]
    return aff


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


def _smooth_field(rng, axes, step: float, sigma: float, reach=(200.0, 200.0, 400.0)) -> np.ndarray:
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


def _draw_subject(rng, seed: int, index: int) -> dict:
    """All anatomy draws, in a fixed order (independent of the grid)."""
    s = {"scale": float(np.exp(rng.normal(0, 0.05))), "fat": float(rng.uniform(10, 30)),
         "rot": _random_rotation(rng, (3, 3, 5)), "shift": rng.uniform(-10, 10, 3)}
    body = rng.normal()
    organs = {}
    for o in ORGANS:
        z = 0.3 * body + np.sqrt(1 - 0.09) * rng.normal()
        organs[o.label] = {"volume": o.volume_ml * float(np.exp(o.vol_sigma * z)),
                           "shift": rng.uniform(-1, 1, 3) * o.shift_mm,
                           "rot": _random_rotation(rng, (o.rot_deg,) * 3)}
    if gallbladder_absent(seed, index):
        organs[9]["volume"] = 0.0
    s["organs"] = organs
    s["hu"] = rng.normal(size=anat.ORGAN_TISSUE + 14)
    s["gas"] = float(rng.uniform(0, 0.3)) * float(rng.random() < 0.7)
    s["noise"] = float(rng.uniform(10, 25))
    return s


def _random_rotation(rng, limits) -> np.ndarray:
    return anat.rotation(rng.uniform(-1, 1, 3) * np.asarray(limits, dtype=float))


class _Frames:
    """Maps an organ's reference shape into the (warped) grid of one subject."""

    def __init__(self, q, subject, axes, spacing, warp_max):
        self.q, self.s, self.axes, self.spacing = q, subject, axes, np.asarray(spacing)
        self.pad = warp_max + 3 * self.spacing.max() + 10.0  # > threshold limits

    def organ(self, o: OrganSpec):
        """(centre, R, shift, grow) of organ ``o``; ``grow`` is a scalar or, for a stretched
        cohort organ, three factors along the organ's reference axes."""
        d = self.s["organs"][o.label]
        grow = 1.0 if o.fit == "radius" else (d["volume"] / o.volume_ml) ** (1 / 3)
        if d.get("stretch") is not None:
            grow = grow * d["stretch"]
        return o.center, d["rot"], d["shift"], grow

    def evaluate(self, shape, frame, piecewise: bool = True):
        """(slices, sdf in mm) of ``shape`` posed by ``frame`` = (centre, R, shift, grow).

        Under a stretch the sdf is scaled by the smallest factor (a bound, not an exact
        distance; the organ's threshold is fitted to its volume anyway). ``piecewise``:
        a tube's segments are evaluated in their own boxes (:meth:`_tube_sdf`)."""
        c, rot, shift, grow = frame
        g = [float(v) for v in np.broadcast_to(grow, 3)]
        sl = self._box(*shape.bounds(), frame)
        if sl is None:
            return None, None
        r, c0, off = rot.tolist(), c.tolist(), (c + shift).tolist()  # python floats keep float32
        d = [self.q[i][sl] - off[i] for i in range(3)]
        local = [(d[0] * r[0][i] + d[1] * r[1][i] + d[2] * r[2][i]) * (1 / g[i]) + c0[i] for i in range(3)]
        tube = shape if isinstance(shape, anat.Tube) else getattr(shape, "tube", None)
        if tube is None or not piecewise:
            return sl, shape.sdf(local) * min(g)
        return sl, self._tube_sdf(tube, local, sl, frame) * min(g)

    def _box(self, lo, hi, frame) -> tuple[slice, ...] | None:
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

    def _tube_sdf(self, tube, local, sl, frame) -> np.ndarray:
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


def _subject(index: int, config: PhantomConfig, rng) -> dict:
    if config.population == "classic":
        return _draw_subject(rng, config.seed, index)
    gone = cohort.absent_organs(config.seed, index, gallbladder_absent(config.seed, index))
    return cohort.draw_subject(rng, gone)


def _pose(index: int, config: PhantomConfig):
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


def _paint_organs(frames: _Frames, subj: dict, allowed: np.ndarray, config: PhantomConfig):
    """(label map, (slices, stomach lumen) or None): organs in PAINT_ORDER, each fitted to its volume."""
    label = np.zeros(config.size, np.uint8)
    voxel_ml = float(np.prod(config.spacing)) / 1000.0
    stomach = None
    for lab in anat.PAINT_ORDER:
        o = anat.ORGAN_BY_LABEL[lab]
        vol = subj["organs"][lab]["volume"]
        if vol <= 0:
            continue
        sl, f = frames.evaluate(o, frames.organ(o))
        if sl is None:
            continue
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


def _render(index: int, config: PhantomConfig, acq: cohort.Acquisition | None = None):
    """(image, label, tissue) of subject ``index``; ``acq`` overrides a cohort subject's scan."""
    subj, rng, axes, q, frames = _pose(index, config)
    tex, bowel_a, bowel_b = (_smooth_field(rng, axes, 10.0, 10.0) for _ in range(3))
    tissue, inside, cavity, bone = anat.background(q, subj["fat"], subj["scale"], subj.get("aspect", 1.0))
    label, stomach = _paint_organs(frames, subj, inside & ~bone, config)
    # background tissue, then organs, veins, bowel and gas on top
    tissue[label > 0] = anat.ORGAN_TISSUE + label[label > 0]
    for frame_label, tube in anat.VESSELS:
        sl, f = frames.evaluate(tube, frames.organ(anat.ORGAN_BY_LABEL[frame_label]))
        if sl is not None:
            tissue[sl][(f < 0) & (label[sl] <= 1) & ~bone[sl]] = anat.VESSEL
    bowel = cavity & (tissue == anat.FAT) & (q[2] < 20) & (q[1] > -30) & (bowel_a > 0.3)
    tissue[bowel] = anat.BOWEL
    tissue[bowel & (bowel_b > 1.5)] = anat.GAS
    if stomach is not None and subj["gas"] > 0 and stomach[1].any():
        sl, inner = stomach
        y = np.broadcast_to(axes[1][sl[1]][None, :, None], inner.shape)
        level = np.quantile(y[inner], 1.0 - subj["gas"])
        tissue[sl][inner & (y > level)] = anat.GAS
    noise_rng = np.random.default_rng([config.seed, index, 1])
    if config.population == "classic":
        return _image(tissue, tex, subj, noise_rng), label, tissue
    for organ, cls, shape in subj["lesions"]:
        if subj["organs"][organ]["volume"] > 0:
            sl, f = frames.evaluate(shape, frames.organ(anat.ORGAN_BY_LABEL[organ]))
            if sl is not None:
                tissue[sl][(f < 0) & (label[sl] == organ)] = cls
    bias = _smooth_field(np.random.default_rng([config.seed, index, 5]), axes, 40.0, 60.0)
    semi = [a * subj["scale"] * k for a, k in zip(anat.TORSO_SEMI, (subj["aspect"], 1 / subj["aspect"]))]
    radius2 = (q[0] / semi[0]) ** 2 + (q[1] / semi[1]) ** 2
    acq = acq if acq is not None else cohort.acquisition(config.seed, index)
    return cohort.acquire(tissue, tex, bias, radius2, config.spacing, subj, acq, noise_rng), label, tissue


def _image(tissue, tex, subj, noise_rng) -> np.ndarray:
    mean = np.zeros(anat.ORGAN_TISSUE + 14, np.float32)
    amp = np.zeros_like(mean)
    for cls, (hu, sd) in anat.TISSUE_HU.items():
        mean[cls], amp[cls] = hu + 0.3 * sd * subj["hu"][cls], 0.7 * sd
    for o in ORGANS:
        cls = anat.ORGAN_TISSUE + o.label
        mean[cls], amp[cls] = o.hu_mean + 0.35 * o.hu_sd * subj["hu"][cls], 0.5 * o.hu_sd
    img = mean[tissue] + amp[tissue] * tex
    img = ndimage.gaussian_filter(img, 0.6, truncate=3.0)
    noise = noise_rng.standard_normal(tissue.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, 0.8, truncate=3.0)
    img += noise * np.float32(subj["noise"] / max(float(noise.std()), 1e-6))
    return np.clip(np.rint(img), -1024, 3071).astype(np.int16)


def generate_case(index: int, config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image int16, label uint8, affine 4x4 float64) for subject ``index``.

    Arrays are indexed (x, y, z) = (right-to-left, posterior-to-anterior,
    inferior-to-superior) with a RAS affine; the result depends only on
    ``(config.seed, index, config.size, config.spacing)``.
    """
    image, label, _ = _render(int(index), config)
    return image, label, phantom_affine(config)


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def _stamp(config: PhantomConfig) -> dict:
    """What ``phantom.json`` records: generator, its version for the population, every setting.
    A classic phantom's stamp is the one vrsearch <= 0.1 wrote, so its data stay valid."""
    cfg = json.loads(json.dumps(asdict(config)))
    if config.population == "classic":
        del cfg["population"]
    return {"generator": "vrsearch.data.phantom", "version": PHANTOM_VERSION[config.population], "config": cfg}


_DESCRIPTION = {
    "classic": "Synthetic portal-venous abdominal CT with the 13 FLARE22 organs (vrsearch phantom, seed {seed}). "
               "'unlabeled' is a vrsearch extension listing images without labels.",
    "cohort": "Synthetic multi-phase, multi-scanner abdominal CT with the 13 FLARE22 organs (vrsearch phantom, "
              "cohort population, seed {seed}). 'unlabeled' is a vrsearch extension listing images without labels.",
}


def _dataset_json(config: PhantomConfig, entries: dict[str, list[dict]]) -> dict:
    return {
        "name": "vrsearch-phantom",
        "description": _DESCRIPTION[config.population].format(seed=config.seed),
        "reference": "vrsearch.data.phantom",
        "licence": "CC0",
        "release": str(PHANTOM_VERSION[config.population]),
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "channel_names": {"0": "CT"},
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "numTraining": config.cases,
        "numTest": config.test,
        "numUnlabeled": config.unlabeled,
        "file_ending": ".nii.gz",
        **entries,
    }


def _finished(out: Path, stamp: dict) -> bool:
    """True if ``out`` holds this phantom; False if absent or empty; else raise."""
    if not out.exists():
        return False
    marker = out / "phantom.json"
    if out.is_dir() and marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except (OSError, ValueError):
            found = None
        if found == stamp:
            return True
        raise FileExistsError(f"{out} holds a phantom made with other settings ({_difference(found, stamp)}); "
                              "remove it or pick another path")
    if not out.is_dir() or any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a phantom dataset; refusing to overwrite it")
    return False


def _difference(found, wanted: dict) -> str:
    """What differs between two stamps, e.g. ``population classic, wanted cohort``."""
    if not isinstance(found, dict):
        return "unreadable phantom.json"
    flat = lambda st: {**{k: v for k, v in st.items() if k != "config"},  # noqa: E731
                       "population": "classic", **(st.get("config") or {})}
    a, b = flat(found), flat(wanted)
    diff = [f"{k} {a.get(k)}, wanted {b[k]}" for k in b if a.get(k) != b[k]]
    return "; ".join(diff) or "unknown fields " + ", ".join(sorted(set(a) - set(b)))


def begin(out: Path, stamp: dict) -> Path | None:
    """None when ``out`` already holds the phantom of ``stamp``; else a fresh temporary
    sibling folder to write into (see :func:`publish`). Other content raises."""
    if _finished(out, stamp):
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))


def publish(tmp: Path, out: Path, stamp: dict) -> None:
    """Stamp the finished dataset in ``tmp`` and rename it onto ``out`` (atomic; it
    replaces a missing or empty directory). If a twin writer got there first with
    the same stamp, ``tmp`` is dropped; any other existing content is an error."""
    (tmp / "phantom.json").write_text(json.dumps(stamp, indent=2) + "\n")
    try:
        os.rename(tmp, out)
    except OSError:
        if not _finished(out, stamp):  # raises unless a twin writer just finished
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def write_phantom(out: Path | str, config: PhantomConfig = PhantomConfig(), *,
                  progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the dataset under ``out`` and return it.

    Layout: ``imagesTr/phantom_XXX_0000.nii.gz`` + ``labelsTr/phantom_XXX.nii.gz``
    (labeled), ``imagesUnlabeled/`` (the next numbers), ``imagesTs/`` +
    ``labelsTs/`` (the numbers after that), ``dataset.json`` (MSD/nnU-Net
    style plus an ``unlabeled`` list) and ``phantom.json`` (the config,
    written last).  Idempotent: an existing phantom with the same config is
    returned as is; anything else non-empty raises FileExistsError.  Files go
    to a temporary sibling directory renamed into place at the end, so an
    interrupted run leaves nothing behind at ``out``.
    """
    out = Path(out)
    stamp = _stamp(config)
    tmp = begin(out, stamp)
    if tmp is None:
        return out
    try:
        groups = [("training", "imagesTr", "labelsTr", config.cases),
                  ("unlabeled", "imagesUnlabeled", None, config.unlabeled),
                  ("test", "imagesTs", "labelsTs", config.test)]
        entries: dict[str, list[dict]] = {}
        total, index = config.cases + config.unlabeled + config.test, 0
        affine = phantom_affine(config)
        for key, img_dir, lab_dir, count in groups:
            entries[key] = []
            for _ in range(count):
                case = f"phantom_{index:03d}"
                image, label, _aff = generate_case(index, config)
                (tmp / img_dir).mkdir(exist_ok=True)
                _save(image, affine, tmp / img_dir / f"{case}_0000.nii.gz")
                entry = {"image": f"./{img_dir}/{case}_0000.nii.gz"}
                if lab_dir is not None:
                    (tmp / lab_dir).mkdir(exist_ok=True)
                    _save(label, affine, tmp / lab_dir / f"{case}.nii.gz")
                    entry["label"] = f"./{lab_dir}/{case}.nii.gz"
                entries[key].append(entry)
                index += 1
                if progress is not None:
                    progress(index, total)
        (tmp / "dataset.json").write_text(json.dumps(_dataset_json(config, entries), indent=2) + "\n")
        publish(tmp, out, stamp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
