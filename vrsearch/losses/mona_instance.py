"""MONA / ARCO stage 1: ``L_inst``, relational (ISD-style) instance discrimination.

MONA Eq. (1)-(2) = ARCO Eq. (E.1), global and local (papers as in
:mod:`vrsearch.losses.mona`). Every similarity is cosine between L2-normalised
vectors; the bank of mined views is a constant (detached here).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor


def check_2d(name: str, t: Tensor, dim: int | None = None) -> None:
    """``t`` must be ``[N, D]`` (``[*, dim]`` when ``dim`` is given): a one-line ValueError otherwise."""
    if t.dim() != 2 or (dim is not None and t.shape[1] != dim):
        want = f"[*, {dim}]" if dim is not None else "[N, D]"
        raise ValueError(f"{name} must be {want}, got {tuple(t.shape)}")


def relational_kl(student: Tensor, teacher: Tensor, bank: Tensor, tau_s: float = 0.1, tau_t: float = 0.01) -> Tensor:
    """Relational instance discrimination ``L_inst`` (MONA Eq. 1-2, ARCO Eq. E.1).

    ``student [N, D]`` are the student's predictor outputs ``u`` (ARCO ``w¹``),
    ``teacher [N, D]`` the teacher projections ``v'`` (ARCO ``w²``) of the other
    view, ``bank [M, D]`` the mined-view teacher embeddings ``w_j`` (ARCO
    ``v³_n``). Eq. (1): ``s_θ = log_softmax_j(sim(u, w_j)/τ_s)``,
    ``s_ξ = softmax_j(sim(v', w_j)/τ_t)``; the loss is
    ``mean_i Σ_j s_ξ,ij (log s_ξ,ij − s_θ,ij) = mean_i KL(s_ξ,i ‖ s_θ,i)``.

    Decisions: Eq. (2) prints ``KL(s_θ ‖ s_ξ)``; the **Ruling** makes the teacher
    distribution the detached target, i.e. ``KL(teacher ‖ student)`` (as in
    ISD). ``teacher`` and ``bank`` receive no gradient. ``sim`` is cosine.
    Returns 0 with a graph into ``student`` when ``M == 0``.
    """
    check_2d("student", student)
    check_2d("teacher", teacher, student.shape[1])
    check_2d("bank", bank, student.shape[1])
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher {tuple(teacher.shape)} must match student {tuple(student.shape)}")
    if tau_s <= 0 or tau_t <= 0:
        raise ValueError("tau_s and tau_t must be > 0")
    if bank.shape[0] == 0 or student.shape[0] == 0:
        return student.sum() * 0.0
    w = F.normalize(bank.detach().to(student.dtype), dim=1)
    log_s = (F.normalize(student, dim=1) @ w.T / tau_s).log_softmax(dim=1)
    with torch.no_grad():
        log_t = (F.normalize(teacher.detach().to(student.dtype), dim=1) @ w.T / tau_t).log_softmax(dim=1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=1)
    return kl.mean()


class Queue(Protocol):
    """A FIFO bank of mined views (e.g. :class:`vrsearch.components.banks.FIFOQueue`)."""

    def items(self) -> Tensor: ...

    def push(self, x: Tensor) -> None: ...


def relational_over_images(
    u: torch.Tensor, v: torch.Tensor, w: torch.Tensor, bank: Queue, tau_s: float, tau_t: float
) -> torch.Tensor:
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
        others = torch.cat([w[:i], w[i + 1 :]]).reshape(-1, d)
        anchors = torch.cat([old.to(others.dtype), others])
        losses.append(relational_kl(u[i].reshape(-1, d), v[i].reshape(-1, d), anchors, tau_s, tau_t))
    bank.push(w.reshape(-1, d))
    return torch.stack(losses).mean()
