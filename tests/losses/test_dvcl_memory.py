"""Memory of the DVCL term stays flat as the number of unreliable voxels grows
(peak allocation for 10⁴ vs 10⁶ unreliable voxels among 10⁶).

The measured function is what a DVCL step runs for the term
(:meth:`vrsearch.methods.dvcl.DVCL._dvcl`: ``select_queries`` on the
unreliable mask of A ∪ B, ``_twin_gather`` of the query rows,
``dvcl_terms`` against the FIFO queue, the queue push) plus the backward of
its loss. Dense maps, queue length, query cap, K and K' are fixed; only the
mask changes. Everything it allocates must be O(voxels) (the random keys of
``select_queries``, the dense gradients of the gathered maps) or
O(Q·L) — never O(|U_R|) beyond the mask, let alone |U_R|².
"""

from __future__ import annotations

import pytest
import torch

from vrsearch.engine.memory import peak_allocation
from vrsearch.methods import get_method
from vrsearch.methods.base import BuildContext
from vrsearch.study.schema import ModelConfig

MB = 1_000_000
C, D = 4, 16
SHAPE = (100, 100, 50)  # per network; A ∪ B = 10⁶ voxels
QUEUE, QUERIES, K, K_OUT = 2048, 512, 10, 15


def _method(form: str):
    spec = get_method("dvcl")
    params = spec.validate({"queries": QUERIES, "queue_size": QUEUE, "k": K, "k_prime": K_OUT, "form": form})
    method = spec.build(params, BuildContext(ModelConfig(channels=(4, 8), feature_dim=D, num_res_units=0), C, 10))
    g = torch.Generator().manual_seed(1)
    entries = torch.cat(
        [
            torch.nn.functional.normalize(torch.randn(QUEUE, D, generator=g), dim=1),
            torch.softmax(torch.randn(QUEUE, C, generator=g), 1),
        ],
        1,
    )
    method.queue.push(entries)
    return method.train()


def _maps(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = [torch.randn(1, D, *SHAPE, generator=g).requires_grad_() for _ in range(2)]
    p = [torch.randn(1, C, *SHAPE, generator=g).requires_grad_() for _ in range(2)]  # logits
    return r, p


def _reliable(n_unreliable: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reliable masks of A and B ``[1, *SHAPE]`` with ``n_unreliable`` False voxels in all."""
    g = torch.Generator().manual_seed(seed)
    total = 2 * SHAPE[0] * SHAPE[1] * SHAPE[2]
    rel = torch.ones(total, dtype=torch.bool)
    rel[torch.randperm(total, generator=g)[:n_unreliable]] = False
    rel = rel.reshape(2, 1, *SHAPE)
    return rel[0], rel[1]


def _clear_grads(*tensors):
    for t in tensors:
        t.grad = None


def _dvcl_step(method, rel, r, p):
    g = torch.Generator().manual_seed(0)
    out = method._dvcl(rel[0], rel[1], r[0], r[1], p[0], p[1], g)
    out["dvcl"].backward()
    return out


@pytest.mark.parametrize("form", ["loglik", "infonce"])
def test_dvcl_term_memory_is_flat_in_unreliable_count(form):
    method, (r, p) = _method(form), _maps()
    few, many = _reliable(10_000), _reliable(1_000_000)
    assert int((~torch.stack(few)).sum()) == 10_000 and int((~torch.stack(many)).sum()) == 1_000_000
    _dvcl_step(method, few, r, p)  # warm-up: lazy one-off allocations are not the term's
    _clear_grads(*r, *p)
    out_few, peak_few = peak_allocation(_dvcl_step, method, few, r, p)
    _clear_grads(*r, *p)
    out_many, peak_many = peak_allocation(_dvcl_step, method, many, r, p)
    for out in (out_few, out_many):
        assert int(out["queries"]) == QUERIES and torch.isfinite(out["dvcl"]) and out["dvcl"].requires_grad
    assert (p[0].grad if form == "loglik" else r[0].grad) is not None  # the backward did run
    # the dense gradient of the gathered maps (logits [2, C, *S] for loglik, features
    # [2, D, *S] for infonce) is allocated inside the step: the measurement must see it
    dense = 2 * (C if form == "loglik" else D) * SHAPE[0] * SHAPE[1] * SHAPE[2] * 4
    assert peak_few >= dense, (peak_few, dense)
    assert peak_many <= 1.2 * peak_few + 1 * MB, (peak_few, peak_many)
    # a |U_R|² cosine matrix at 10⁴ unreliable voxels alone would be 400 MB
    assert peak_few < 100 * MB, peak_few
