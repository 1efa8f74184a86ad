"""Backbones and heads shared by every method (METHODS.md, "Shared pieces").

A :class:`SegNet` is a MONAI encoder/decoder (``UNet`` or ``BasicUNet``)
whose last decoder features feed two heads: a segmentation head (C logits)
and a feature head (1×1 conv MLP to ``V`` channels, used by the contrastive
losses). Heads used only for training are skipped at inference.

2D models run on 3D tensors whose last axis has size 1 (an axial slice), so
data, sliding-window inference and metrics are the same code in 2D and 3D.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vrsearch.core.config import ModelConfig


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv3d if dims == 3 else nn.Conv2d


def _norm(dims: int, kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d)(channels)
    return (nn.InstanceNorm3d if dims == 3 else nn.InstanceNorm2d)(channels, affine=True)


def build_backbone(cfg: ModelConfig, in_channels: int = 1) -> tuple[nn.Module, int]:
    """A MONAI encoder/decoder and the number of channels it outputs."""
    # MONAI here, not at the top: a study's driver imports the methods (their knobs), not MONAI
    from monai.networks.layers import Norm
    from monai.networks.nets import BasicUNet, UNet

    dims = cfg.spatial_dims
    norm = Norm.BATCH if cfg.norm == "batch" else ("instance", {"affine": True})
    net: nn.Module
    if cfg.arch == "basic_unet":
        out = cfg.channels[5]
        net = BasicUNet(
            spatial_dims=dims,
            in_channels=in_channels,
            out_channels=out,
            features=tuple(cfg.channels),
            norm=norm,
            dropout=cfg.dropout,
        )
        return net, out
    out = cfg.channels[0]
    net = UNet(
        spatial_dims=dims,
        in_channels=in_channels,
        out_channels=out,
        channels=tuple(cfg.channels),
        strides=(2,) * (len(cfg.channels) - 1),
        num_res_units=cfg.num_res_units,
        norm=norm,
        dropout=cfg.dropout,
    )
    return net, out


class SegNet(nn.Module):
    """Backbone + segmentation head + feature (projection) head.

    ``forward(x)`` returns logits; ``forward(x, features=True)`` returns
    ``(logits, embeddings)`` where embeddings are the feature head's output
    (not yet L2-normalised: the losses normalise); ``features="hidden"`` returns
    the input ``u`` of the head's last 1×1 convolution instead, whose
    :meth:`projection` ``(W, b)`` gives the embeddings ``W u + b`` voxel by voxel
    (for losses that need them only at a few voxels and in class means), and
    ``features="decoder"`` the head's input ``h``, which :meth:`head_rows` turns
    into the embeddings of any voxels read from it (every stage of the head acts
    voxel by voxel, so the rows equal the dense map's)."""

    def __init__(self, cfg: ModelConfig, num_classes: int, in_channels: int = 1):
        super().__init__()
        self.spatial_dims = cfg.spatial_dims
        dims = cfg.spatial_dims
        conv = _conv(dims)
        self.backbone, width = build_backbone(cfg, in_channels)
        self.post = nn.Sequential(_norm(dims, cfg.norm, width), nn.LeakyReLU(0.01, inplace=True))
        self.seg_head = conv(width, num_classes, kernel_size=1)
        self.feature_head = nn.Sequential(
            conv(width, width, kernel_size=1),
            nn.ReLU(inplace=True),
            conv(width, cfg.feature_dim, kernel_size=1),
        )
        self.num_classes = num_classes

    def _to_net(self, x: torch.Tensor) -> torch.Tensor:
        if self.spatial_dims == 2:
            if x.shape[-1] != 1:
                raise ValueError(f"a 2D model takes [B, C, X, Y, 1] slices, got {tuple(x.shape)}")
            return x[..., 0]
        return x

    def _from_net(self, y: torch.Tensor) -> torch.Tensor:
        return y.unsqueeze(-1) if self.spatial_dims == 2 else y

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Last decoder features, in the network's own dimensionality."""
        return self.post(self.backbone(self._to_net(x)))

    def forward(
        self, x: torch.Tensor, features: bool | Literal["hidden", "decoder"] = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if features not in (False, True, "hidden", "decoder"):
            raise ValueError(f"features must be a bool, 'hidden' or 'decoder', got {features!r}")
        h = self.decode(x)
        logits = self._from_net(self.seg_head(h))
        if not features:
            return logits
        if features == "decoder":
            return logits, self._from_net(h)
        head = self.feature_head[:-1] if features == "hidden" else self.feature_head
        return logits, self._from_net(head(h))

    def head_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """The feature head on rows ``[K, width]`` of its input (voxels read from the
        ``features="decoder"`` map): its 1×1 convolutions as linear maps, ``[K, feature_dim]``."""
        for layer in self.feature_head:
            if isinstance(layer, nn.modules.conv._ConvNd) and all(k == 1 for k in layer.kernel_size):
                rows = F.linear(rows, layer.weight.flatten(1), layer.bias)
            elif isinstance(layer, nn.ReLU):
                rows = torch.relu(rows)
            else:  # a layer that is not voxel by voxel (a norm, a wider kernel) needs the dense map
                raise TypeError(f"head_rows: {type(layer).__name__} does not act voxel by voxel")
        return rows

    def projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W [feature_dim, width], b [feature_dim])`` of the feature head's last 1×1 convolution."""
        last = self.feature_head[-1]
        assert isinstance(last, nn.modules.conv._ConvNd) and last.bias is not None
        return last.weight.flatten(1), last.bias


def build_segnet(cfg: ModelConfig, num_classes: int) -> SegNet:
    return SegNet(cfg, num_classes)
