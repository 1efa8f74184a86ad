"""Random views of a batch and the per-step randomness behind them (METHODS.md, "Shared pieces").

* :func:`step_generator`: the one per-step generator of every method, seeded
  by (trial seed, iteration, stream), on the data's device, so training is a
  pure function of the iteration (a resumed or replayed step draws the same).
* :func:`intensity_jitter`: per-sample contrast ``1 ± contrast``, brightness
  ``± shift·std`` and Gaussian noise ``noise·std``, relative to the sample's
  own mean and std (MONA/ARCO's strong views, SPCL's ``x^T``).
* Geometric views (MONA/ARCO): :func:`draw_geo` draws per-sample in-plane
  flips and quarter turns (half turns when X ≠ Y), :func:`geo_apply` applies
  them and :func:`geo_undo` inverts them; :func:`draw_view` = geometry, then
  the jitter for ``strong`` views. :class:`PatchFrame` reads an embedding
  computed on a view in the frame of the original patch by mapping voxel
  *coordinates* (never whole feature maps) through the view.
* :func:`flip_samples`: SPCL's per-sample flips along the in-plane axes.
* :func:`crop_boxes` / :func:`crop_means`: MONA's stage-1 local instances.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch

IN_PLANE = (2, 3)  # X, Y of [B, C, X, Y, Z] (Z is the axial axis)
#: MONA/ARCO strong view: contrast factor 1 ± 0.2, brightness ± 0.1·std, noise 0.05·std
STRONG = {"contrast": 0.2, "shift": 0.1, "noise": 0.05}

Geo = tuple[list[list[bool]], list[int]]  # per sample: (flip X, flip Y), quarter turns in-plane


def step_generator(seed: int, iteration: int, stream: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded by (trial seed, iteration, stream); streams 0–63 are distinct."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + iteration * 64 + stream) % (2**63 - 1))
    return g


def _per_sample(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return v.reshape((x.shape[0],) + (1,) * (x.dim() - 1))


def intensity_jitter(x: torch.Tensor, g: torch.Generator, contrast: float, shift: float, noise: float) -> torch.Tensor:
    """``(x − m)·c + m + s·σ + ε`` per sample (mean m, std σ), ``c ~ U(1 ± contrast)``,
    ``s ~ U(± shift)``, ``ε ~ N(0, (noise·σ)²)`` per voxel."""
    n, dev = x.shape[0], x.device
    flat = x.reshape(n, -1)
    mean = _per_sample(x, flat.mean(1))
    std = _per_sample(x, flat.std(1).clamp_min(1e-6) if flat.shape[1] > 1 else torch.ones(n, device=dev, dtype=x.dtype))
    u = torch.rand(2, n, generator=g, device=dev, dtype=x.dtype)
    c = _per_sample(x, 1 + contrast * (2 * u[0] - 1))
    s = _per_sample(x, shift * (2 * u[1] - 1))
    eps = noise * torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
    return (x - mean) * c + mean + (s + eps) * std


def draw_geo(x: torch.Tensor, geometric: bool, g: torch.Generator) -> Geo:
    n = x.shape[0]
    if not geometric:
        return [[False, False]] * n, [0] * n
    flips = (torch.rand(n, 2, generator=g, device=x.device) < 0.5).tolist()
    rot = torch.randint(0, 4, (n,), generator=g, device=x.device)
    if x.shape[IN_PLANE[0]] != x.shape[IN_PLANE[1]]:
        rot = rot // 2 * 2  # non-square in-plane: half turns only
    return flips, rot.tolist()


def geo_apply(t: torch.Tensor, geo: Geo) -> torch.Tensor:
    """Flip then rotate each sample of ``t [B, C, X, Y, Z]`` in-plane."""
    out = []
    for v, (fx, fy), k in zip(t, *geo, strict=True):
        v = v.flip(1) if fx else v
        v = v.flip(2) if fy else v
        out.append(torch.rot90(v, k, dims=(1, 2)) if k else v)
    return torch.stack(out)


def geo_undo(t: torch.Tensor, geo: Geo) -> torch.Tensor:
    """The inverse of :func:`geo_apply` (maps a view back to the patch frame)."""
    out = []
    for v, (fx, fy), k in zip(t, *geo, strict=True):
        v = torch.rot90(v, -k, dims=(1, 2)) if k else v
        v = v.flip(2) if fy else v
        out.append(v.flip(1) if fx else v)
    return torch.stack(out)


def draw_view(x: torch.Tensor, strength: str, geometric: bool, g: torch.Generator) -> tuple[torch.Tensor, Geo]:
    """A random view of ``x`` (``weak``: geometry; ``strong``: + :data:`STRONG` jitter)
    and its geometric part (undo with :func:`geo_undo`)."""
    geo = draw_geo(x, geometric, g)
    y = geo_apply(x, geo)
    return (intensity_jitter(y, g, **STRONG) if strength == "strong" else y), geo


class VoxelEmbedding(Protocol):
    """An embedding read voxel by voxel (e.g. :class:`vrsearch.models.embedding.SampledEmbedding`)."""

    def at(self, index: torch.Tensor) -> torch.Tensor: ...

    def class_sums(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]: ...


class PatchFrame:
    """An embedding computed on a view (anything with ``at(index)`` and
    ``class_sums(labels, C)``), read in the patch frame: voxel indices are mapped
    through the view's geometric transform, and labels are carried into the view
    for class sums (a sum does not care where its voxels lie)."""

    def __init__(self, emb: VoxelEmbedding, geo: Geo, spatial: Sequence[int], device: torch.device):
        self.emb, self.geo = emb, geo
        n, v = len(geo[1]), math.prod(spatial)
        index = torch.arange(v, device=device).reshape(1, 1, *spatial).expand(n, 1, *spatial)
        self.where = geo_undo(index, geo).reshape(n, v)  # view-frame index of every patch voxel

    def at(self, index: torch.Tensor) -> torch.Tensor:
        v = self.where.shape[1]
        img = index // v
        return self.emb.at(img * v + self.where[img, index % v])

    def class_sums(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.emb.class_sums(geo_apply(labels.unsqueeze(1), self.geo)[:, 0], num_classes)


def flip_samples(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Flip sample ``b`` of ``x`` along ``IN_PLANE[k]`` where ``flips[b, k]``; an involution."""
    for k, axis in enumerate(IN_PLANE):
        x = torch.where(_per_sample(x, flips[:, k]), x.flip(axis), x)
    return x


def crop_boxes(
    spatial: Sequence[int], count: int, size: int, g: torch.Generator, device: torch.device
) -> list[list[slice]]:
    """``count`` random boxes of edge ``min(size, axis)`` inside ``spatial``."""
    edges = [min(size, s) for s in spatial]
    u = torch.rand(count, len(spatial), generator=g, device=device, dtype=torch.float64)
    span = torch.tensor([s - e + 1 for s, e in zip(spatial, edges, strict=True)], device=device)
    starts = torch.minimum((u * span).long(), span - 1).tolist()
    return [[slice(a, a + e) for a, e in zip(row, edges, strict=True)] for row in starts]


def crop_means(h: torch.Tensor, boxes: list[list[slice]]) -> torch.Tensor:
    """Mean of ``h [B, C, *S]`` inside each box: ``[B, K, C]``."""
    dims = tuple(range(2, h.dim()))
    return torch.stack([h[(slice(None), slice(None), *box)].mean(dim=dims) for box in boxes], dim=1)


__all__ = [
    "IN_PLANE",
    "STRONG",
    "Geo",
    "PatchFrame",
    "crop_boxes",
    "crop_means",
    "draw_geo",
    "draw_view",
    "flip_samples",
    "geo_apply",
    "geo_undo",
    "intensity_jitter",
    "step_generator",
]
