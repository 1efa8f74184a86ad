"""SAG's antithetic partners (ARCO Sec. 3.3, Lemma 3.1, App. A.1; the Ruling and
the pair weights are in ``samplers.py``'s module docstring)."""

from __future__ import annotations

import torch


def antithetic(flat, weight, pp, h, sgrp, centre, key_at, n_voxels):
    """SAG partners (ARCO Sec. 3.3 / App. A.1) with the Ruling's replacement and the
    pair weights of the module docstring.  Returns (flat, weight, n_outside).

    The reflection is done on flat indices, ``p' = 2·(b·V + ravel(c_m)) − p``.  An
    axis that leaves the image wraps there; that is harmless: c_m and p lie in
    the same cell (the rounded centroid stays in the group's bounding box), so a
    wrapped coordinate lands in the opposite end cell of that axis (cell widths
    differ by ≤ 1 and g ≥ 2), or in another image, or outside the batch, hence
    never in the same group; the key test below is then the exact group test.
    ``centre``: flat index of each group's rounded centroid; ``key_at``: the group
    of given voxels; ``n_voxels``: B·V."""
    twice = 2 * centre

    def reflect(f: torch.Tensor, grp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rf = twice.gather(0, grp) - f
        ok = (rf >= 0) & (rf < n_voxels)
        rf.clamp_(0, n_voxels - 1)
        return rf, ok & (key_at(rf) == grp)

    prim = pp - h[pp]
    grp = sgrp[pp]
    rf, rok = reflect(flat[prim], grp)
    flat = flat.clone()
    flat[pp] = torch.where(rok, rf, flat[pp])  # failed reflection: the slot's own uniform draw
    # failed pair whose replacement lies in S: weights (2, 0) instead of (1, 1)
    failed = torch.nonzero(~rok).squeeze(1)  # only these can be twins: reflect their replacements only
    twin = failed[reflect(flat[pp[failed]], grp[failed])[1]]
    weight = weight.clone()
    weight[prim[twin]] *= 2
    weight[pp[twin]] = 0
    return flat, weight, int(failed.numel())
