"""MONAI transforms built from the study, caching, and seeded patch streams.

Training data is a *pure function of the iteration*: batch ``it`` is drawn
from a generator seeded by ``(seed, stream, rank, it)`` and every random
transform is re-seeded from it. Resuming from a checkpoint at iteration
``k`` therefore replays exactly the batches an uninterrupted run would have
seen, on every DDP rank, with or without loader workers.

Deterministic preprocessing (load, orientation, spacing, intensity, padding,
per-class voxel indices for cropping) is cached once per volume by MONAI's
``CacheDataset``; random cropping and augmentation run per batch. With a
:class:`~vrsearch.data.prepared.PreparedStore` the decoding, reorientation,
resampling and normalisation come from its files instead (:class:`LoadPreparedd`):
done once per node for all trials, with the same arrays as the chain it replaces.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai import transforms as T
from monai.data import CacheDataset, Dataset

from vrsearch.core.config import DatasetConfig
from vrsearch.core.step import Batch
from vrsearch.data.cases import Case
from vrsearch.data.prepared import PreparedStore, entry_key

RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class RecordGeometryd(T.MapTransform):
    """Remember the (padded) volume's shape and affine before random cropping, so a
    patch's position in its volume is known (SPCL's slice-position meta-labels)."""

    def __init__(self) -> None:
        super().__init__(keys="image")

    def __call__(self, data):
        d = dict(data)
        img = d["image"]
        d["volume_shape"] = np.asarray(img.shape[1:], dtype=np.int64)
        d["volume_affine"] = np.asarray(img.affine, dtype=np.float64)
        return d


def patch_position(item: dict, axis: int = 2) -> float:
    """Centre of a cropped patch along ``axis`` as a fraction of the volume in [0, 1)."""
    if "volume_affine" not in item:
        return float("nan")
    start = np.linalg.solve(item["volume_affine"], np.asarray(item["image"].affine, dtype=np.float64)[:, 3])[axis]
    centre = start + (item["image"].shape[1 + axis] - 1) / 2.0
    return float(np.clip((centre + 0.5) / item["volume_shape"][axis], 0.0, 1.0 - 1e-9))


def load_transforms(keys: Sequence[str]) -> list:
    """Load and add a channel axis. Trailing singleton dimensions of a NIfTI file
    (``(X, Y, Z, 1)``, ``(X, Y, Z, 1, 1)``: some tools write time/vector axes of
    length 1) are squeezed by MONAI's NibabelReader, so every accepted volume is
    ``[1, X, Y, Z]`` here; ``validate --check-data`` accepts exactly these shapes."""
    return [
        T.LoadImaged(keys=list(keys), image_only=True, squeeze_non_spatial_dims=True),
        T.EnsureChannelFirstd(keys=list(keys)),
    ]


def geometry_transforms(cfg: DatasetConfig, keys: Sequence[str]) -> list:
    """Reorient to ``cfg.orientation`` and (optionally) resample to ``cfg.spacing``."""
    keys = list(keys)
    out: list = [T.Orientationd(keys=keys, axcodes=cfg.orientation, labels=RAS_LABELS)]
    if cfg.spacing is not None:
        modes = ["bilinear" if k == "image" else "nearest" for k in keys]
        out.append(T.Spacingd(keys=keys, pixdim=tuple(cfg.spacing), mode=modes))
    return out


def intensity_transforms(cfg: DatasetConfig) -> list:
    """Clipping then scaling of ``image`` (see ``IntensityConfig``). ``cfg`` comes resolved
    for its dataset's modality (``PreparedData.dataset``); an unresolved ``auto`` is taken
    as data of unknown modality (percentiles, no clip)."""
    if cfg.intensity.scale == "auto":
        from vrsearch.data.intensity import resolve

        cfg = resolve(cfg, "")
    it = cfg.intensity
    out: list = []
    if it.scale == "window":
        if it.clip is None:
            raise ValueError("dataset.intensity.scale 'window' needs dataset.intensity.clip")
        lo, hi = it.clip
        return [T.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)]
    if it.clip is not None:
        lo, hi = it.clip
        out.append(T.ScaleIntensityRanged(keys="image", a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True))
    if it.scale == "percentile":
        lo, hi = it.percentiles
        out.append(T.ScaleIntensityRangePercentilesd(keys="image", lower=lo, upper=hi, b_min=0.0, b_max=1.0, clip=True))
    elif it.scale == "zscore":
        out.append(T.NormalizeIntensityd(keys="image"))
    return out


class LoadPreparedd(T.MapTransform):
    """``chain`` applied to the files named under ``keys``, read from ``store`` (built and
    stored by the first caller on the node). ``stage`` and ``settings`` name the chain in
    the entry's key (:func:`~vrsearch.data.prepared.entry_key`)."""

    def __init__(self, keys: Sequence[str], chain: list, store: PreparedStore, stage: str, settings: dict):
        super().__init__(keys=list(keys))
        self.chain, self.store, self.stage, self.settings = T.Compose(chain), store, stage, settings

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        d, keys = dict(data), [str(k) for k in self.keys]
        files = {k: d[k] for k in keys}

        def build() -> dict[str, Any]:
            out = self.chain(dict(files))
            return {k: out[k] for k in keys}

        d.update(self.store.get(entry_key(self.stage, files, self.settings), build))
        return d


def preprocess_settings(cfg: DatasetConfig) -> dict:
    """Every setting :func:`preprocess` reads (part of a prepared entry's key)."""
    return {"orientation": cfg.orientation, "spacing": cfg.spacing, "intensity": cfg.intensity.model_dump(mode="json")}


def preprocess(cfg: DatasetConfig, keys: Sequence[str], store: PreparedStore | None = None) -> list:
    """Load → channel first → orientation → spacing → intensity (deterministic); with
    ``store``, read from the prepared-data cache."""
    chain = load_transforms(keys) + geometry_transforms(cfg, keys) + intensity_transforms(cfg)
    if store is None:
        return chain
    return [LoadPreparedd(keys, chain, store, "preprocess", preprocess_settings(cfg))]


def decode(keys: Sequence[str], store: PreparedStore | None = None) -> list:
    """Load → channel first, nothing else (labels scored in their own grid); with ``store``
    from the prepared-data cache."""
    chain = load_transforms(keys)
    return chain if store is None else [LoadPreparedd(keys, chain, store, "decode", {})]


def augment_transforms(cfg: DatasetConfig, keys: Sequence[str]) -> list:
    aug = cfg.augment
    keys = list(keys)
    out: list = [T.RandFlipd(keys=keys, prob=aug.flip_prob, spatial_axis=a) for a in aug.flip_axes]
    if aug.intensity_scale > 0:
        out.append(T.RandScaleIntensityd(keys="image", factors=aug.intensity_scale, prob=1.0))
    if aug.intensity_shift > 0:
        out.append(T.RandShiftIntensityd(keys="image", offsets=aug.intensity_shift, prob=1.0))
    return out


def labeled_train_transform(cfg: DatasetConfig, num_classes: int, store: PreparedStore | None = None) -> T.Compose:
    """Class-balanced crops (every present class equally likely as centre) so
    the long tail of small organs is seen; indices are precomputed and cached."""
    keys = ["image", "label"]
    det = preprocess(cfg, keys, store) + [
        T.SpatialPadd(keys=keys, spatial_size=cfg.patch_size),
        T.ClassesToIndicesd(keys="label", num_classes=num_classes),
        RecordGeometryd(),
    ]
    rand = [
        T.RandCropByLabelClassesd(
            keys=keys,
            label_key="label",
            spatial_size=cfg.patch_size,
            num_classes=num_classes,
            num_samples=1,
            indices_key="label_cls_indices",
            warn=False,
        )
    ]
    return T.Compose(det + rand + augment_transforms(cfg, keys))


def unlabeled_train_transform(cfg: DatasetConfig, store: PreparedStore | None = None) -> T.Compose:
    det = preprocess(cfg, ["image"], store) + [
        T.SpatialPadd(keys="image", spatial_size=cfg.patch_size),
        RecordGeometryd(),
    ]
    rand = [T.RandSpatialCropd(keys="image", roi_size=cfg.patch_size, random_size=False)]
    return T.Compose(det + rand + augment_transforms(cfg, ["image"]))


def cached(data: list[dict], transform: T.Compose, cfg: DatasetConfig) -> Dataset:
    """A MONAI ``CacheDataset`` (deterministic prefix decoded once) or a plain one."""
    if cfg.cache == "memory":
        return CacheDataset(data, transform=transform, cache_rate=1.0, num_workers=None, progress=False)
    return Dataset(data, transform=transform)


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


class PatchStream:
    """Seeded, stateless draws of ``batch_size`` random patches from a dataset."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, stream: int, rank: int = 0):
        self.dataset, self.batch_size = dataset, batch_size
        self.seed, self.stream, self.rank = seed, stream, rank

    def draw(self, it: int) -> list[dict]:
        rng = np.random.default_rng([self.seed, self.stream, self.rank, it])
        idx = rng.integers(0, len(self.dataset), size=self.batch_size)
        out = []
        for i in idx:
            self.dataset.transform.set_random_state(seed=int(rng.integers(0, 2**31 - 1)))
            item = self.dataset[int(i)]
            out.append(item[0] if isinstance(item, list) else item)
        return out


def _stack(items: list[dict], key: str, dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([_plain(d[key]) for d in items]).to(dtype)


class BatchSource(torch.utils.data.IterableDataset):
    """Yields :class:`Batch` for iterations ``start, start+1, …``.

    With DataLoader workers, worker ``w`` of ``W`` produces the iterations
    ``it ≡ w (mod W)``; DataLoader returns them in order, so the sequence is
    the same as without workers."""

    def __init__(self, labeled: PatchStream, unlabeled: PatchStream | None, start: int, stop: int):
        super().__init__()
        self.labeled, self.unlabeled, self.start, self.stop = labeled, unlabeled, start, stop

    def batch(self, it: int) -> Batch:
        lab = self.labeled.draw(it)
        unl = self.unlabeled.draw(it) if self.unlabeled is not None else None
        return Batch(
            image=_stack(lab, "image", torch.float32),
            label=_stack(lab, "label", torch.int64),
            unlabeled=None if unl is None else _stack(unl, "image", torch.float32),
            cases=[str(d.get("case", "")) for d in lab],
            unlabeled_cases=[str(d.get("case", "")) for d in unl or []],
            case_meta=[dict(d.get("meta", {})) for d in lab],
            unlabeled_meta=[dict(d.get("meta", {})) for d in unl or []],
            positions=torch.tensor([patch_position(d) for d in lab], dtype=torch.float32),
            unlabeled_positions=None
            if unl is None
            else torch.tensor([patch_position(d) for d in unl], dtype=torch.float32),
        )

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for it in range(self.start + wid, self.stop, nw):
            yield self.batch(it)


def batches(source: BatchSource, num_workers: int, pin_memory: bool = False) -> Iterator[Batch]:
    """Iterate a :class:`BatchSource`, with background workers if asked.

    ``pin_memory`` (for a CUDA device) yields batches in page-locked memory, so
    the trainer's ``non_blocking`` copies overlap with compute; workers are
    persistent (kept alive, not restarted, if the loader is iterated again)."""
    if num_workers <= 0:
        return (b.pin_memory() for b in source) if pin_memory else iter(source)
    loader = torch.utils.data.DataLoader(
        source,
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=True,
        prefetch_factor=2,
        pin_memory=pin_memory,
    )
    return iter(loader)


def case_dicts(cases: Sequence[Case], with_label: bool) -> list[dict]:
    out = []
    for c in cases:
        d = {"image": str(c.image), "case": c.id, "meta": dict(c.meta)}
        if with_label:
            d["label"] = str(c.label)
        out.append(d)
    return out
