"""Training-only heads of MONA / ARCO (You et al.; METHODS.md, "Shared pieces").

* :class:`RepresentationHead`: the FPN-style (Lin et al., CVPR 2017)
  representation head ``ψ_r`` of MONA Sec. 3.2 / ARCO App. C: several decoder
  scales of the backbone, each mapped by a 1×1 "lateral" conv to a common
  width, upsampled (nearest, as in FPN) to the finest scale and **summed**;
  then consecutive convolutions (3×3 conv → norm → ReLU → 1×1 conv to ``dim``
  → norm → ReLU → 1×1 conv ``dim → dim``) give a per-voxel embedding of
  ``dim`` channels at the input resolution (not yet L2-normalised: the losses
  normalise).
* :class:`MLPHead` / :class:`GlobalProjector`: the stage-1 projectors and
  predictors (ISD style, Linear → ReLU → Linear; no BatchNorm, so a batch of
  one image works). ``GlobalProjector`` average-pools a feature map first.

Decoder scales (:func:`decoder_stages`) are read with forward hooks that live
only for the duration of one forward pass (:func:`capture_outputs`), so deep
copies such as an EMA teacher never inherit a hook:

* MONAI ``UNet``: the up-sampling layer of every level except the top one,
  i.e. ``model[1].submodule[2]`` (level 1), ``model[1].submodule[1].submodule[2]``
  (level 2), …; level ``i`` outputs ``channels[i-1]`` channels at
  ``1/2^i`` of the input size.
* MONAI ``BasicUNet``: ``upcat_2``, ``upcat_3``, ``upcat_4`` with
  ``features[1]``, ``features[2]``, ``features[3]`` channels at 1/2, 1/4, 1/8.

The finest scale is the backbone's own output after the SegNet's ``post``
norm/activation (``SegNet.decode``), which both segmentation and feature
heads already read; the hooked stages add the coarser scales. None of these
heads is part of ``SegNet``, so ``predictor()`` (the SegNet) never runs them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from vrsearch.models.embedding import SampledEmbedding
from vrsearch.models.nets import _conv, _norm

if TYPE_CHECKING:
    from monai.networks.nets import UNet


def _unet_levels(backbone: UNet) -> list[nn.Sequential]:
    """The ``Sequential(down, SkipConnection(...), up)`` of every UNet level, top first."""
    from monai.networks.layers import SkipConnection

    levels, m = [], backbone.model
    while isinstance(m, nn.Sequential) and len(m) == 3 and isinstance(m[1], SkipConnection):
        levels.append(m)
        m = m[1].submodule
    return levels


def decoder_stages(backbone: nn.Module, channels: Sequence[int]) -> list[tuple[nn.Module, int, int]]:
    """``(module, out_channels, downsampling factor)`` of the decoder stages coarser
    than the backbone output, finest first (see the module docstring)."""
    from monai.networks.nets import BasicUNet, UNet

    if isinstance(backbone, BasicUNet):
        return [
            (backbone.upcat_2, channels[1], 2),
            (backbone.upcat_3, channels[2], 4),
            (backbone.upcat_4, channels[3], 8),
        ]
    if isinstance(backbone, UNet):
        levels = _unet_levels(backbone)
        return [(levels[i][2], channels[i - 1], 2**i) for i in range(1, len(levels))]
    raise ValueError(f"no decoder stages known for a {type(backbone).__name__}")


def encoder_output_block(backbone: nn.Module, channels: Sequence[int]) -> tuple[nn.Module, int]:
    """The deepest encoder block of a MONAI backbone and its output channels (the
    global projectors of SPCL and MONA/ARCO read it)."""
    from monai.networks.nets import BasicUNet, UNet

    if isinstance(backbone, BasicUNet):
        return backbone.down_4, channels[4]
    if isinstance(backbone, UNet):
        return cast(nn.Module, _unet_levels(backbone)[-1][1].submodule), channels[-1]
    raise ValueError(f"cannot find the encoder output of a {type(backbone).__name__}")


@contextmanager
def capture_outputs(modules: Sequence[nn.Module]) -> Iterator[list[Any]]:
    """Yield a list that holds, after a forward pass inside the ``with`` block,
    the output of each of ``modules`` (in the order given)."""
    box: list[Any] = [None] * len(modules)
    handles = [m.register_forward_hook(lambda _m, _i, out, k=k: box.__setitem__(k, out)) for k, m in enumerate(modules)]
    try:
        yield box
    finally:
        for h in handles:
            h.remove()


class RepresentationHead(nn.Module):
    """FPN fusion of decoder scales into a ``dim``-channel per-voxel embedding.

    ``in_channels`` lists the channels of the scales, finest first (the finest
    sets the output size); ``width`` is the common lateral width (default: the
    widest scale)."""

    def __init__(
        self, in_channels: Sequence[int], dim: int, spatial_dims: int, norm: str = "instance", width: int | None = None
    ):
        super().__init__()
        conv = _conv(spatial_dims)
        width = int(width or max(in_channels))
        self.lateral = nn.ModuleList(conv(c, width, kernel_size=1) for c in in_channels)
        self.fuse = nn.Sequential(
            conv(width, width, kernel_size=3, padding=1),
            _norm(spatial_dims, norm, width),
            nn.ReLU(inplace=True),
            conv(width, dim, kernel_size=1),
            _norm(spatial_dims, norm, dim),
            nn.ReLU(inplace=True),
            conv(dim, dim, kernel_size=1),
        )
        self.dim = int(dim)

    def trunk(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The dense part: FPN sum → 3×3 conv → norm → ReLU, ``[B, width, *S]``."""
        if len(feats) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} scales, got {len(feats)}")
        size = feats[0].shape[2:]
        out = self.lateral[0](feats[0])
        for lat, f in zip(self.lateral[1:], feats[1:], strict=True):
            out = out + F.interpolate(lat(f), size=size, mode="nearest")
        return self.fuse[:3](out)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The dense embedding map ``[B, dim, *S]``."""
        return self.fuse[3:](self.trunk(feats))

    def sampled(self, feats: Sequence[torch.Tensor]) -> SampledEmbedding:
        """The same embedding, evaluated only at the voxels read (:mod:`vrsearch.models.embedding`)."""
        return SampledEmbedding(self, self.trunk(feats))


class MLPHead(nn.Module):
    """``Linear(in, hidden) → ReLU → Linear(hidden, out)`` on ``[N, in]`` vectors."""

    def __init__(self, in_features: int, hidden: int, out_features: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_features))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(v)


class GlobalProjector(MLPHead):
    """Average pool ``[N, C, *S]`` over space, then the MLP: ``[N, dim]``."""

    def __init__(self, in_channels: int, dim: int):
        super().__init__(in_channels, dim, dim)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mlp(feat.flatten(2).mean(dim=2))


__all__ = [
    "GlobalProjector",
    "MLPHead",
    "RepresentationHead",
    "capture_outputs",
    "decoder_stages",
    "encoder_output_block",
]
