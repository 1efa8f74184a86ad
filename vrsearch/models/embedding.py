"""Per-voxel embeddings of the representation head, paid for only where they are read.

MONA / ARCO (METHODS.md "MONA", "ARCO") read the ``dim``-channel embedding of
:class:`~vrsearch.models.heads.RepresentationHead` in two ways only: at a few
hundred sampled voxels (queries, keys) and as per-image class sums over all
voxels (the positive keys of Eq. 4, the class means of ``L_nn``). Neither
needs the dense ``[B, dim, *S]`` map:

* The head ends ``1×1 conv W1 → norm → ReLU → 1×1 conv W2`` on the trunk
  output ``a`` (width channels). A 1×1 convolution is a per-voxel linear map,
  so the norm's statistics follow from the per-channel mean ``μ`` and
  covariance ``Σ`` of ``a`` (over the voxels of one image for InstanceNorm,
  over the batch for BatchNorm): mean ``W1 μ + b1``, biased variance
  ``diag(W1 Σ W1ᵀ)`` — exactly what the norm computes, so the embedding of
  voxel ``v`` is ``W2 ReLU(s ⊙ (W1 (a_v − μ)) + β) + b2`` with
  ``s = γ / sqrt(var + eps)`` (:meth:`SampledEmbedding.at`).
* ``W2`` is linear, so the class sums are ``W2 (Σ_v ReLU(·)) + n_c b2``
  (:meth:`SampledEmbedding.class_sums`); the ``dim``-wide hidden layer is
  evaluated chunk by chunk and, when a gradient is needed, recomputed in the
  backward pass instead of being stored (``torch.utils.checkpoint``), so
  memory does not grow with ``dim × voxels``.

BatchNorm in training mode also updates its running statistics (unbiased
variance, as PyTorch does); in eval mode it uses them.
:class:`DenseEmbedding` is the reference: the full map, read the same two
ways. ``tests/methods/test_embedding.py`` proves the two equal (values and
gradients) through whole MONA and ARCO steps.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

#: voxels per chunk of the class sums off the CPU: bounds the [B, chunk, dim] hidden layer
CHUNK = 1024
#: on the CPU, voxels per chunk per thread (at most CHUNK in all): one thread's [chunk, 512] float32
#: tile (512 KB) stays in its core's L2 (a 4×48×48×32 batch, dim 512, forward+backward: one thread
#: 945 ms with chunks of 1024 → 614 ms with 256; two threads 404 ms with 1024, 408 with 512, 419 with
#: 256; 4×32×32×24: one thread 284 → 191 ms, two threads 149 / 135 / 159 ms). The chunks group the
#: float sums, so on the CPU the sums' last bits depend on the thread count (as a GEMM's do).
CPU_CHUNK_PER_THREAD = 256
#: :meth:`DenseEmbedding.at` copies the map channels-last once it reads more than 1/16 of its voxels
GATHER_COPY = 16


class DenseEmbedding:
    """A dense embedding map ``[B, D, *S]`` read at voxels and as class sums."""

    def __init__(self, rep: torch.Tensor):
        self.rep = rep

    def at(self, index: torch.Tensor) -> torch.Tensor:
        """Rows ``[K, D]`` at flat voxel indices over the batch (``b·V + v``).

        Many rows (DVCL's ~10⁵ negatives): one channels-last copy of the map and a
        row gather, whose backward is one ``index_add`` (5× faster than indexing
        the ``[B, D, V]`` map at 1.8·10⁵ rows; on CUDA it accumulates atomically,
        i.e. run-to-run reproducible only under ``train.deterministic``, which
        turns on PyTorch's deterministic algorithms); a few rows: indexing, no
        copy. ``index`` is one-dimensional."""
        flat = self.rep.flatten(2)
        b, d, v = flat.shape
        if index.numel() * GATHER_COPY > b * v:
            return flat.transpose(1, 2).reshape(b * v, d).index_select(0, index)
        return flat.transpose(1, 2)[index // v, index % v]

    def class_sums(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image class sums ``[B, C, D]`` over ``labels [B, *S]`` and voxel counts ``[B, C]``
        (a one-hot matmul: deterministic on every device)."""
        stat = torch.promote_types(self.rep.dtype, torch.float32)  # counts and sums over voxels
        onehot = F.one_hot(labels.reshape(labels.shape[0], -1), num_classes).to(stat)
        with torch.autocast(self.rep.device.type, enabled=False):
            sums = torch.bmm(onehot.transpose(1, 2), self.rep.flatten(2).transpose(1, 2).to(stat))
        return sums, onehot.sum(1)


def _moments(a: torch.Tensor, per_image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``[G, w]`` and biased covariance ``[G, w, w]`` of ``a [B, w, V]`` per image
    (``G = B``) or over the batch (``G = 1``)."""
    if not per_image:
        a = a.transpose(0, 1).reshape(1, a.shape[1], -1)
    mu = a.mean(2)
    ac = a - mu.unsqueeze(2)
    return mu, torch.bmm(ac, ac.transpose(1, 2)) / a.shape[2]


def _update_running(norm: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """What ``F.batch_norm`` does to the running statistics in training mode."""
    assert norm.num_batches_tracked is not None and norm.running_mean is not None and norm.running_var is not None
    with torch.no_grad():
        norm.num_batches_tracked += 1
        f = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        norm.running_mean.mul_(1 - f).add_(f * mean)
        norm.running_var.mul_(1 - f).add_(f * var * n / max(n - 1, 1))


def _hidden_sums(a_t: torch.Tensor, weight: torch.Tensor, shift: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """``Σ_v onehot_v ⊗ ReLU(a_v A_b + t_b)`` for one chunk: ``[B, C, D]``."""
    return torch.bmm(onehot.transpose(1, 2), torch.baddbmm(shift.unsqueeze(1), a_t, weight).relu_())


class SampledEmbedding:
    """The last three stages of a representation head on its trunk output ``a [B, w, *S]``,
    evaluated only at the voxels read (see the module docstring)."""

    def __init__(self, head: nn.Module, a: torch.Tensor):
        fuse = cast(nn.Sequential, head.fuse)
        conv1, norm, conv2 = cast(Any, fuse[3]), cast(Any, fuse[4]), cast(Any, fuse[6])  # conv, norm, conv
        self.a = a.flatten(2)  # [B, w, V]
        self.w2, self.b2 = conv2.weight.flatten(1), conv2.bias
        # the statistics in float32 at least, autocast off: a norm layer computes them so, and a
        # sum over every voxel in fp16/bf16 overflows or keeps ~3 digits
        self.stat = torch.promote_types(self.a.dtype, torch.float32)
        with torch.autocast(self.a.device.type, enabled=False):
            self._fold_norm(conv1, norm)

    def _fold_norm(self, conv1: Any, norm: Any) -> None:
        """``A_b``, ``t_b``: the 1×1 conv and the norm folded into one affine map per image."""
        a, b = self.a.to(self.stat), self.a.shape[0]
        w1 = conv1.weight.flatten(1).to(self.stat)  # [D, w]
        bias1 = conv1.bias.to(self.stat)
        batch_norm = isinstance(norm, nn.modules.batchnorm._BatchNorm)
        if batch_norm and not (norm.training or norm.running_mean is None):
            mean = norm.running_mean.unsqueeze(0).to(self.stat) - bias1  # of W1 a; W1 a + b1 − running mean
            var = norm.running_var.unsqueeze(0).to(self.stat)
        else:
            mu, cov = _moments(a, per_image=not batch_norm)
            mean = mu @ w1.T  # the norm subtracts W1 μ + b1 from W1 a + b1
            var = ((w1 @ cov) * w1).sum(-1)  # diag(W1 Σ W1ᵀ)
            if batch_norm and norm.training and norm.track_running_stats:
                _update_running(norm, (mean + bias1)[0], var[0], a.shape[0] * a.shape[2])
        scale = torch.rsqrt(var + norm.eps)
        if norm.affine:
            scale = scale * norm.weight
        shift = -mean * scale + (norm.bias if norm.affine else 0.0)
        self.weight = (w1.T.unsqueeze(0) * scale.unsqueeze(1)).expand(b, -1, -1)  # A_b [B, w, D]
        self.shift = shift.expand(b, -1)  # t_b [B, D]

    def at(self, index: torch.Tensor) -> torch.Tensor:
        """Embeddings ``[K, D]`` at flat voxel indices over the batch (``b·V + v``)."""
        v = self.a.shape[2]
        img, vox = index // v, index % v
        # image by image: one [k_b, w] @ [w, D] product each, never a [K, w, D] copy of A_b per row
        order = torch.argsort(img, stable=True)
        rows = self.a[img[order], :, vox[order]]  # [K, w], grouped by image
        sizes = torch.bincount(img, minlength=self.a.shape[0]).tolist()
        parts = [
            torch.addmm(self.shift[b], part, self.weight[b])
            for b, part in enumerate(torch.split(rows, sizes))
            if sizes[b]
        ]
        pre = torch.cat(parts) if parts else self.shift.new_zeros(0, self.shift.shape[1])
        hidden = torch.relu(pre)[torch.argsort(order)]
        return F.linear(hidden, self.w2, self.b2)

    def class_sums(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image class sums ``[B, C, D]`` over ``labels [B, *S]`` and voxel counts ``[B, C]``."""
        b, _, v = self.a.shape
        with torch.autocast(self.a.device.type, enabled=False):  # sums over every voxel: float32 at least
            onehot = F.one_hot(labels.reshape(b, -1), num_classes).to(self.stat)
            a_t = self.a.transpose(1, 2).to(self.stat).contiguous()
            grad = torch.is_grad_enabled() and (a_t.requires_grad or self.weight.requires_grad)
            hidden: Any = 0
            # split, not slices: one backward node gathers the chunks' gradients (a slice's backward
            # writes each chunk into its own full-size zero tensor)
            chunk = min(CPU_CHUNK_PER_THREAD * torch.get_num_threads(), CHUNK) if a_t.device.type == "cpu" else CHUNK
            for part, hot in zip(a_t.split(chunk, 1), onehot.split(chunk, 1), strict=True):
                args = (part, self.weight, self.shift, hot)
                hidden = hidden + (
                    checkpoint(_hidden_sums, *args, use_reentrant=False) if grad else _hidden_sums(*args)
                )
            counts = onehot.sum(1)
            return hidden @ self.w2.to(self.stat).T + counts.unsqueeze(2) * self.b2.to(self.stat), counts


class OnceSums:
    """An embedding whose class sums are computed once per labels tensor (MONA's
    teacher sums feed both the positive keys and the kNN bank)."""

    def __init__(self, emb):
        self.emb, self._key, self._sums = emb, None, None

    def at(self, index: torch.Tensor) -> torch.Tensor:
        return self.emb.at(index)

    def class_sums(self, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._key is None or self._key[0] is not labels or self._key[1] != num_classes:
            self._key, self._sums = (labels, num_classes), self.emb.class_sums(labels, num_classes)
        assert self._sums is not None
        return self._sums


__all__ = ["CHUNK", "CPU_CHUNK_PER_THREAD", "GATHER_COPY", "DenseEmbedding", "OnceSums", "SampledEmbedding"]
