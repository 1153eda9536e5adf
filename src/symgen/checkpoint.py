"""Atomic, safe checkpoints.

Checkpoints are written to a temporary file in the same folder and renamed into place, so a crash or
Ctrl-C never leaves a half-written file under the final name. They are read with
``torch.load(weights_only=True)``, which executes no pickled code; anything that is not a symgen
checkpoint (corrupted, truncated, foreign) raises :class:`CheckpointError` saying so.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CheckpointError", "FORMAT", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

FORMAT = "symgen-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or is not a symgen checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain Python data) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({"format": FORMAT, **state}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` without executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupted zip, foreign pickle, truncated file, device not available...
        if _needs_missing_device(exc):
            raise CheckpointError(
                f"{path} holds tensors saved on a device this machine does not have; load it with "
                "--device cpu (map_location='cpu')"
            ) from None
        raise CheckpointError(
            f"{path} is not a readable symgen checkpoint (corrupted, foreign or unsafe file): {_reason(exc)}"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a symgen checkpoint (missing format tag '{FORMAT}')")
    return state


def _reason(exc: Exception) -> str:
    """The cause of a failed safe load, without torch's advice to retry with ``weights_only=False``
    (which would execute the file's code: a symgen checkpoint never needs it)."""
    noise = ("weights_only", "trust", "arbitrary code", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not any(n in ln for n in noise)]
    text = keep[0] if keep else type(exc).__name__
    return text if len(text) < 300 else text[:300] + "..."


def _needs_missing_device(exc: Exception) -> bool:
    text = str(exc)
    return "torch.cuda.is_available() is False" in text or "on a CUDA device" in text


def rng_state() -> dict[str, Any]:
    """Snapshot of the Python, NumPy and torch (CPU and CUDA) random generators."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot made by :func:`rng_state`."""
    random.setstate(_to_tuple(state["python"]))
    npst = state["numpy"]
    np.random.set_state(
        ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(obj: Any) -> Any:
    return [_to_plain(o) for o in obj] if isinstance(obj, tuple | list) else obj


def _to_tuple(obj: Any) -> Any:
    return tuple(_to_tuple(o) for o in obj) if isinstance(obj, list) else obj
