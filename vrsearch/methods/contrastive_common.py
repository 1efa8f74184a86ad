"""Machinery shared by MONA and ARCO (You et al.; METHODS.md "MONA", "ARCO").

* :class:`ContrastiveParams`: the knobs both papers share, with MONA's
  defaults (``vrsearch.methods.mona`` / ``.arco`` subclass it).
* :class:`ContrastNet`: what the student is and the EMA teacher copies:
  a :class:`~vrsearch.models.SegNet`, the FPN representation head and the
  stage-1 global and local projectors (heads in ``vrsearch.models.heads``).
* Views: :func:`draw_view` (``weak`` = random in-plane flips and 90°
  rotations; ``strong`` = weak + contrast/brightness jitter and Gaussian
  noise), :func:`geo_apply` / :func:`geo_undo` (the geometric part, applied to
  or undone on dense outputs so that every map is compared in the frame of
  the original patch).
* Pooling: :func:`crop_boxes` / :func:`crop_means` (stage-1 local instances),
  :func:`class_sums` (class-mean positive keys and pooled kNN entries).
* :func:`relational_over_images`: ``L_inst`` of each image against the bank
  and the mined views of the *other* images of the step.
* :func:`load_stage1`: the two-stage contract (weights-only load of a
  stage-1 checkpoint, with a clear error naming the file).

Every random draw comes from a generator seeded by (trial seed, iteration,
stream) (:func:`step_generator`), on the data's device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from vrsearch.components.banks import FIFOQueue
from vrsearch.errors import VrsearchError
from vrsearch.losses.mona import relational_kl
from vrsearch.losses.supervised import SupervisedKind
from vrsearch.methods.spcl import encoder_output_block
from vrsearch.models import build_segnet
from vrsearch.models.embedding import DenseEmbedding
from vrsearch.models.heads import GlobalProjector, MLPHead, RepresentationHead, capture_outputs, decoder_stages
from vrsearch.registry import MethodParams
from vrsearch.core.config import ModelConfig

PosInt = Annotated[int, Field(ge=1)]
NonNeg = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
Augmentation = Literal["weak", "strong"]

#: strong view: contrast factor 1 ± CONTRAST, brightness shift ± SHIFT·std, noise NOISE·std
CONTRAST, SHIFT, NOISE = 0.2, 0.1, 0.05
IN_PLANE = (2, 3)  # X, Y of [B, C, X, Y, Z]


class ContrastiveParams(MethodParams):
    """Knobs shared by MONA and ARCO (paper defaults: MONA App. A, ARCO App. C)."""

    loss: SupervisedKind = "dice_ce"
    #: 1 = relational pre-training only, 2 = anatomical contrastive fine-tuning only,
    #: both = the first ``stage1_fraction`` of the iterations stage 1, the rest stage 2
    stage: Literal[1, 2, "both"] = "both"
    stage1_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    #: a stage-1 trial's checkpoint (``.../checkpoints/<config_hash>/last.pt``); the trial then runs no stage 1
    stage1_checkpoint: str | None = None
    # stage 1: relational instance discrimination (global + local)
    tau_s: PosFloat = 0.1
    tau_t: PosFloat = 0.01
    bank_size: PosInt = 36
    local_crops: PosInt = 36
    local_crop_size: PosInt = 64
    inst_global: bool = True
    inst_local: bool = True
    # stage 2: anatomical contrastive reconstruction
    lambda_contrast: NonNeg = 0.01
    lambda_unsup: NonNeg = 1.0
    lambda_nn: NonNeg = 1.0
    delta: Annotated[float, Field(ge=0, le=1)] = 0.97
    queries: PosInt = 256
    keys: PosInt = 512
    negative_bank_size: PosInt = 512
    tau: PosFloat = 0.5
    embedding_dim: PosInt = 512
    nn_k: PosInt = 5
    nn_bank_size: PosInt = 36
    tailness: bool = True
    diversity: bool = True
    unsup: bool = True
    #: in-plane flips / 90° rotations in the views (and in L_eqv's T); turn off for lateralised anatomy
    geometric: bool = True
    ema_decay: Annotated[float, Field(ge=0, le=1)] = 0.99
    sampler: Literal["ns", "sg", "sag"] = "ns"
    grid: Literal[9, 16, 25] = 16
    rounding: Literal["auto", "largest", "random"] = "auto"
    evaluate: Literal["student", "teacher"] = "student"

    @model_validator(mode="after")
    def _checkpoint_needs_stage_two(self):
        if self.stage1_checkpoint is not None and self.stage == 1:
            raise ValueError("stage1_checkpoint names the checkpoint a stage-2 trial starts from; "
                             "it cannot be combined with stage: 1")
        return self


def step_generator(seed: int, iteration: int, stream: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + iteration * 64 + stream) % (2**63 - 1))
    return g


# -- networks -----------------------------------------------------------------------


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

    def run(self, x: torch.Tensor, rep: bool | str = False, enc: bool = False) -> dict:
        """``logits`` and ``h`` (last decoder features) as ``[B, C, X, Y, Z]``; with
        ``rep`` the representation map (``"sampled"``: a
        :class:`~vrsearch.models.embedding.SampledEmbedding` of it, evaluated only
        where read), with ``enc`` the encoder output (net dims)."""
        seg = self.segnet
        mods = (self._stages if rep else []) + (self._encoder if enc else [])
        with capture_outputs(mods) as box:
            h = seg.decode(x)
        out = {"logits": seg._from_net(seg.seg_head(h)), "h": seg._from_net(h)}
        if rep == "sampled":
            out["rep"] = self.rep_head.sampled([h] + box[: len(self._stages)])
        elif rep:
            out["rep"] = seg._from_net(self.rep_head([h] + box[: len(self._stages)]))
        if enc:
            out["enc"] = box[-1]
        return out


# -- views ----------------------------------------------------------------------------

Geo = tuple[list[list[bool]], list[int]]  # per sample: (flip X, flip Y), quarter turns in-plane


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
    """The inverse of :func:`geo_apply` (maps a view's dense output back to the patch frame)."""
    out = []
    for v, (fx, fy), k in zip(t, *geo, strict=True):
        v = torch.rot90(v, -k, dims=(1, 2)) if k else v
        v = v.flip(2) if fy else v
        out.append(v.flip(1) if fx else v)
    return torch.stack(out)


def jitter(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-sample contrast, brightness and Gaussian noise, relative to the sample's std."""
    n, dev = x.shape[0], x.device
    shape = (n,) + (1,) * (x.dim() - 1)
    flat = x.reshape(n, -1)
    mean = flat.mean(1).reshape(shape)
    std = flat.std(1).reshape(shape).clamp_min(1e-6) if flat.shape[1] > 1 else torch.ones(shape, device=dev)
    u = torch.rand(2, n, generator=g, device=dev, dtype=x.dtype)
    contrast = (1 + CONTRAST * (2 * u[0] - 1)).reshape(shape)
    shift = (SHIFT * (2 * u[1] - 1)).reshape(shape) * std
    noise = NOISE * std * torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
    return (x - mean) * contrast + mean + shift + noise


def draw_view(x: torch.Tensor, strength: str, geometric: bool, g: torch.Generator) -> tuple[torch.Tensor, Geo]:
    """A random view of ``x`` and its geometric part (undo with :func:`geo_undo`)."""
    geo = draw_geo(x, geometric, g)
    y = geo_apply(x, geo)
    return (jitter(y, g) if strength == "strong" else y), geo


# -- pooling ---------------------------------------------------------------------------


def crop_boxes(spatial: Sequence[int], count: int, size: int, g: torch.Generator,
               device: torch.device) -> list[list[slice]]:
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


def class_sums(rep: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image class sums ``[B, C, D]`` of ``rep [B, D, *S]`` over ``labels [B, *S]``
    and the voxel counts ``[B, C]``."""
    return DenseEmbedding(rep).class_sums(labels, num_classes)


def gather_voxels(rep: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, D]`` of ``rep [B, D, *S]`` at flat voxel indices (``VoxelSample.index``)."""
    return DenseEmbedding(rep).at(index)


class PatchFrame:
    """An embedding computed on a view, read in the patch frame: voxel indices are
    mapped through the view's geometric transform (coordinates, not maps) and
    labels are carried into the view for class sums (a sum does not care where
    its voxels lie)."""

    def __init__(self, emb, geo: Geo, spatial: Sequence[int], device: torch.device):
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


def patch_frame(rep, geo: Geo, spatial: Sequence[int]):
    """A view's embedding (dense map or sampled) readable in the patch frame."""
    if torch.is_tensor(rep):
        return DenseEmbedding(geo_undo(rep, geo))
    return PatchFrame(rep, geo, spatial, rep.a.device)


# -- stage-1 relational loss --------------------------------------------------------------


def relational_over_images(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor, bank: FIFOQueue,
                           tau_s: float, tau_t: float) -> torch.Tensor:
    """Mean over images ``i`` of ``relational_kl(u_i, v_i, bank ∪ {w_j : j ≠ i})``.

    ``u`` (student predictions), ``v`` (teacher projections) and ``w`` (teacher
    embeddings of the mined views) are ``[N, D]`` (global) or ``[N, K, D]``
    (local: K crops per image). Mined views are other images of the step
    (MONA: "randomly selecting from the unlabeled dataset"), plus the FIFO bank
    of mined views of earlier steps; ``w`` is pushed into the bank afterwards."""
    n, d = u.shape[0], u.shape[-1]
    old = bank.items()
    losses = []
    for i in range(n):
        others = torch.cat([w[:i], w[i + 1:]]).reshape(-1, d)
        anchors = torch.cat([old.to(others.dtype), others])
        losses.append(relational_kl(u[i].reshape(-1, d), v[i].reshape(-1, d), anchors, tau_s, tau_t))
    bank.push(w.reshape(-1, d))
    return torch.stack(losses).mean()


# -- two-stage contract --------------------------------------------------------------------


def load_stage1(path: str | Path, target: nn.Module, prefixes: Iterable[str], counter: str = "stage1_done") -> None:
    """Load the ``prefixes`` entries of a stage-1 checkpoint into ``target``.

    ``path`` is a file written by the engine (``last.pt`` / ``best.pt``: a
    dict whose ``method`` is the state dict) or a bare state dict, read with
    ``torch.load(weights_only=True)``. Every target key under ``prefixes`` must
    be present with the same shape, and the checkpoint must have run at least
    one stage-1 iteration (its ``counter`` buffer); otherwise a
    :class:`VrsearchError` names the file."""
    p = Path(path)
    where = f"stage-1 checkpoint {str(p)!r} (method.params.stage1_checkpoint)"
    if not p.is_file():
        raise VrsearchError(f"{where}: file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or not a weights-only payload
        raise VrsearchError(f"{where}: cannot be read as a weights-only torch file ({type(exc).__name__})") from None
    sd = state.get("method", state) if isinstance(state, dict) else None
    if not isinstance(sd, dict):
        raise VrsearchError(f"{where}: holds no state dict")
    prefixes = tuple(prefixes)
    mine = {k: v for k, v in target.state_dict().items() if k.startswith(prefixes)}
    missing = [k for k in mine if k not in sd]
    shape = [k for k in mine if k in sd and (not torch.is_tensor(sd[k]) or sd[k].shape != mine[k].shape)]
    if missing or shape:
        detail = "; ".join(part for part in (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(shape)} with another shape (e.g. {shape[0]})" if shape else "") if part)
        raise VrsearchError(f"{where}: incompatible with this method/model ({detail}); was it written by a "
                            "mona/arco stage-1 trial with the same model and embedding_dim?")
    done = sd.get(counter)
    if not torch.is_tensor(done) or int(done) < 1:
        raise VrsearchError(f"{where}: the checkpoint has run no stage-1 iteration")
    target.load_state_dict({k: sd[k] for k in mine}, strict=False)
