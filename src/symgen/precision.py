"""Opt-in mixed precision for training (``train.precision: fp32 | bf16 | fp16``).

``bf16`` and ``fp16`` run the model's ``training_step`` under ``torch.autocast`` (CPU or CUDA);
``fp16`` also scales losses with ``torch.amp.GradScaler`` so that small gradients do not underflow (an
overflowing step is skipped and the scale lowered, as torch's recipe does). Parameters, optimizer state
and checkpoints stay fp32. Samplers run their chains with autocast turned off
(:func:`full_precision`), so MCMC gradients stay fp32 unless a model asks otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["Precision", "PRECISIONS", "full_precision"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def full_precision(device_type: str = "cpu", enabled: bool = True) -> Iterator[None]:
    """Turn autocast off inside (no-op when ``enabled`` is false or autocast is not active)."""
    if not enabled or not torch.is_autocast_enabled(device_type):
        yield
        return
    with torch.autocast(device_type=device_type, enabled=False):
        yield


class Precision:
    """The autocast context and (fp16) gradient scaler of a training run."""

    def __init__(self, name: str, device: torch.device) -> None:
        if name not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
        self.name, self.device_type = name, torch.device(device).type
        self.dtype = PRECISIONS[name]
        self.scaler = torch.amp.GradScaler(self.device_type) if name == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def update(self) -> None:
        """End of a training step: let the scaler adapt its scale (once per step, after every optimizer)."""
        if self.scaler is not None:
            self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
