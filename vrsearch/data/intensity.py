"""Intensity settings that fit the data: the modality decides the defaults, and a
clip that saturates much of a volume is flagged before training.

``dataset.intensity.scale: auto`` becomes a CT soft-tissue window for CT data and
per-volume percentile scaling without a clip for everything else (MR windows are
arbitrary units: a fixed HU clip would saturate them). :func:`resolve` makes the
choice from the modality the dataset declares; :func:`saturation_warnings` reads
a few volumes and reports a clip that flattens a large share of their voxels.
"""

from __future__ import annotations

import numpy as np

from vrsearch.core.config import DatasetConfig, IntensityConfig
from vrsearch.data.cases import Case, DatasetIndex
from vrsearch.errors import DataError

#: the abdominal soft-tissue window (HU) used for CT when no clip is given
CT_WINDOW = (-325.0, 325.0)
#: a warning when more than this share of a volume's voxels is clipped at the upper
#: bound (bright tissue flattened: CT bone/contrast is a few per cent, so this flags a
#: window meant for another modality) ...
UPPER_SHARE = 0.10
#: ... or at both bounds together (CT air below the window is often a third or more)
TOTAL_SHARE = 0.90
#: volumes read for the check, spread over the dataset
SAMPLED = 8


def is_ct(modality: str) -> bool:
    return modality.strip().upper() == "CT"


def resolve(cfg: DatasetConfig, modality: str) -> DatasetConfig:
    """``cfg`` with ``intensity`` made explicit for data of ``modality``."""
    it = cfg.intensity
    ct = is_ct(modality)
    scale = ("window" if ct else "percentile") if it.scale == "auto" else it.scale
    clip = it.clip
    if scale == "window" and clip is None:
        if not ct:
            raise DataError(
                f"dataset.intensity.clip: scale 'window' needs a clip range for "
                f"{modality or 'data of unknown modality'} (the CT window applies to CT only)"
            )
        clip = CT_WINDOW
    return cfg.model_copy(update={"intensity": IntensityConfig(scale=scale, clip=clip, percentiles=it.percentiles)})


def describe(it: IntensityConfig) -> str:
    clip = f" clipped to [{it.clip[0]:g}, {it.clip[1]:g}]" if it.clip is not None else ""
    what = {
        "window": "window",
        "percentile": f"percentiles {it.percentiles[0]:g}-{it.percentiles[1]:g} to [0, 1]",
        "zscore": "z-score per volume",
        "none": "unscaled",
    }[it.scale]
    return f"{what}{clip}"


def _sample(index: DatasetIndex) -> list[Case]:
    cases = [*index.labeled, *index.unlabeled, *index.test]
    if len(cases) <= SAMPLED:
        return cases
    return [cases[i] for i in np.linspace(0, len(cases) - 1, SAMPLED).round().astype(int)]


def clipped_shares(values: np.ndarray, clip: tuple[float, float]) -> tuple[float, float]:
    """Shares of ``values`` at or below the low bound and at or above the high bound."""
    n = max(values.size, 1)
    return float(np.count_nonzero(values <= clip[0])) / n, float(np.count_nonzero(values >= clip[1])) / n


def saturation_warnings(index: DatasetIndex, cfg: DatasetConfig) -> list[str]:
    """One line per sampled volume whose voxels the (resolved) clip saturates beyond
    :data:`UPPER_SHARE` at the top or :data:`TOTAL_SHARE` in all (empty: none)."""
    import nibabel as nib

    clip = cfg.intensity.clip
    if clip is None:
        return []
    out = []
    for case in _sample(index):
        img = nib.load(str(case.image))
        if not isinstance(img, nib.spatialimages.SpatialImage):
            raise DataError(f"{case.image}: a {type(img).__name__}, not a volume")
        low, high = clipped_shares(np.asanyarray(img.dataobj), clip)
        if high > UPPER_SHARE or low + high > TOTAL_SHARE:
            out.append(
                f"dataset.intensity.clip [{clip[0]:g}, {clip[1]:g}] saturates {100 * (low + high):.0f}% of "
                f"the voxels of {case.image} ({100 * high:.0f}% at the upper bound); set a clip that fits "
                f"this data ({index.modality or 'modality unknown'}) or leave it out"
            )
    return out
