"""The network MONA and ARCO train (You et al.; METHODS.md "MONA", "ARCO").

:class:`ContrastNet` is what the student is and the EMA teacher copies: a
:class:`~vrsearch.models.nets.SegNet`, the FPN representation head and the
stage-1 global and local projectors (heads in :mod:`vrsearch.models.heads`).
``run`` reads the decoder stages and the encoder output with hooks that live
for one forward pass only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vrsearch.core.config import ModelConfig
from vrsearch.models.heads import (
    GlobalProjector,
    MLPHead,
    RepresentationHead,
    capture_outputs,
    decoder_stages,
    encoder_output_block,
)
from vrsearch.models.nets import build_segnet


class ContrastNet(nn.Module):
    """SegNet + representation head + stage-1 projectors (global: pooled encoder
    output; local: crop-pooled last decoder features). ``run`` reads the decoder
    stages and the encoder output with temporary hooks."""

    def __init__(self, cfg: ModelConfig, num_classes: int, dim: int):
        super().__init__()
        self.segnet = build_segnet(cfg, num_classes)
        backbone, chans = self.segnet.backbone, tuple(cfg.channels)
        stages = decoder_stages(backbone, chans)
        width = chans[5] if cfg.arch == "basic_unet" else chans[0]
        self._stages = [m for m, _, _ in stages]  # plain list: not registered twice
        enc, enc_width = encoder_output_block(backbone, chans)
        self._encoder = [enc]
        self.rep_head = RepresentationHead([width] + [c for _, c, _ in stages], dim, cfg.spatial_dims, cfg.norm)
        self.global_proj = GlobalProjector(enc_width, dim)
        self.local_proj = MLPHead(width, dim, dim)
        self.width = width

    def run(self, x: torch.Tensor, rep: bool | str = False, enc: bool = False) -> dict[str, Any]:
        """``logits`` and ``h`` (last decoder features) as ``[B, C, X, Y, Z]``; with
        ``rep`` the representation map (``"sampled"``: a
        :class:`~vrsearch.models.embedding.SampledEmbedding` of it, evaluated only
        where read), with ``enc`` the encoder output (net dims)."""
        seg = self.segnet
        mods = (self._stages if rep else []) + (self._encoder if enc else [])
        with capture_outputs(mods) as box:
            h = seg.decode(x)
        out: dict[str, Any] = {"logits": seg._from_net(seg.seg_head(h)), "h": seg._from_net(h)}
        if rep == "sampled":
            out["rep"] = self.rep_head.sampled([h] + box[: len(self._stages)])
        elif rep:
            out["rep"] = seg._from_net(self.rep_head([h] + box[: len(self._stages)]))
        if enc:
            out["enc"] = box[-1]
        return out


__all__ = ["ContrastNet"]
