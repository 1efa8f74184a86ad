"""The two-stage contract of MONA / ARCO (METHODS.md "MONA"): a stage-2 trial starts
from the weights a stage-1 trial wrote (``checkpoints/<config_hash>/last.pt``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from vrsearch.errors import VrsearchError


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
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, or not a weights-only payload
        raise VrsearchError(f"{where}: cannot be read as a weights-only torch file ({type(exc).__name__})") from None
    sd = state.get("method", state) if isinstance(state, dict) else None
    if not isinstance(sd, dict):
        raise VrsearchError(f"{where}: holds no state dict")
    prefixes = tuple(prefixes)
    mine = {k: v for k, v in target.state_dict().items() if k.startswith(prefixes)}
    missing = [k for k in mine if k not in sd]
    shape = [k for k in mine if k in sd and (not torch.is_tensor(sd[k]) or sd[k].shape != mine[k].shape)]
    if missing or shape:
        detail = "; ".join(
            part
            for part in (
                f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                f"{len(shape)} with another shape (e.g. {shape[0]})" if shape else "",
            )
            if part
        )
        raise VrsearchError(
            f"{where}: incompatible with this method/model ({detail}); was it written by a "
            "mona/arco stage-1 trial with the same model and embedding_dim?"
        )
    done = sd.get(counter)
    if not torch.is_tensor(done) or int(done) < 1:
        raise VrsearchError(f"{where}: the checkpoint has run no stage-1 iteration")
    target.load_state_dict({k: sd[k] for k in mine}, strict=False)
