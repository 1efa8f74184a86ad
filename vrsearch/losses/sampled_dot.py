"""A sampled dense-dense product: the dot products of chosen (query, key) pairs only.

MONA/ARCO's L_contrast (MONA Eq. 4) scores each query against ``n`` drawn negatives
out of a bank of ``M`` keys; the full ``[Q, M]`` similarity it used to build is, at the
paper's defaults, 14× the pairs it reads. :func:`sampled_dot` computes only the drawn
pairs through PyTorch's CSR ``sampled_addmm``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor


class SampledDot(torch.autograd.Function):
    """``out[q, j] = queries[q] · keys[idx[q, j]]`` for the drawn pairs only (a sampled
    dense-dense product on the CSR pattern ``idx``, repeats allowed): the same values as
    ``(queries @ keys.T).gather(1, idx)`` without the ``[Q, M]`` product, which at paper
    defaults is 14× the pairs used.  Gradient to ``queries`` only (``keys`` is a bank)."""

    @staticmethod
    def forward(ctx: Any, queries: Tensor, keys: Tensor, idx: Tensor) -> Tensor:
        (Q, n), M = idx.shape, keys.shape[0]
        dtype = torch.promote_types(queries.dtype, torch.float32)  # the sparse kernels take no bf16/fp16
        crow = torch.arange(Q + 1, device=idx.device) * n
        ctx.pattern = (crow, idx.reshape(-1), (Q, M), queries.dtype)
        keys = keys.to(dtype)
        ctx.save_for_backward(keys)
        with warnings.catch_warnings():  # "sparse CSR support is in beta", once per process anyway
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(crow, idx.reshape(-1), keys.new_zeros(Q * n), (Q, M))
        out = torch.sparse.sampled_addmm(pattern, queries.to(dtype), keys.T, beta=0.0).values()
        return out.view(Q, n).to(queries.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        (keys,), (crow, col, size, dtype) = ctx.saved_tensors, ctx.pattern
        with torch.autocast(keys.device.type, enabled=False):  # a backward under autocast: no bf16 kernel
            grad = torch.sparse_csr_tensor(crow, col, grad.reshape(-1).to(keys.dtype), size) @ keys
        return grad.to(dtype), None, None


def sampled_dot(queries: Tensor, keys: Tensor, idx: Tensor) -> Tensor:
    """``out[q, j] = queries[q] · keys[idx[q, j]]`` (``idx``: ``[Q, n]`` key indices, repeats
    allowed); gradient to ``queries`` only."""
    out: Tensor = SampledDot.apply(queries, keys, idx)
    return out
