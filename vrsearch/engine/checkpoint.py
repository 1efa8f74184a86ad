"""Checkpoints: everything needed to resume a trial bit-for-bit.

Saved atomically (temporary file + rename) and loaded with
``torch.load(..., weights_only=True)``: only tensors, numbers, strings and
containers are stored, never pickled objects. Data batches are a pure
function of the iteration (``vrsearch.data.pipeline``), so model, optimiser,
torch RNG and the iteration counter are the whole state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vrsearch.errors import VrsearchError
from vrsearch.results.atomic import write_atomic

FORMAT = 1


def save_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp), "checkpoint")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_atomic` (weights only)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise VrsearchError(f"{path}: checkpoint not found") from None
    except Exception as exc:  # noqa: BLE001 - corrupt/truncated/unsafe payloads all land here
        raise VrsearchError(f"{path}: cannot load checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise VrsearchError(f"{path}: not a vrsearch checkpoint (format {FORMAT} expected)")
    return state
