"""Shared helpers of the benchmark scripts: interleaved timing and the commit to record beside results."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["measure", "git_head", "bare_context"]

ROOT = Path(__file__).resolve().parents[1]


def measure(
    tasks: dict[str, Callable[[], object]], repeats: int, warmup: bool = True
) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds per call of each task; calls interleave across tasks to share noise."""
    wall: dict[str, list[float]] = {k: [] for k in tasks}
    cpu: dict[str, list[float]] = {k: [] for k in tasks}
    if warmup:
        for fn in tasks.values():
            fn()
    for _ in range(repeats):
        for k, fn in tasks.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.process_time() - c0)
    return {k: (min(wall[k]), min(cpu[k])) for k in tasks}


def git_head() -> str:
    """``git rev-parse HEAD``, marked when symgen or the benchmarks have uncommitted changes."""
    try:
        run = dict(cwd=ROOT, capture_output=True, text=True, check=True)
        head = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src/symgen", "benchmarks", "configs"], **run
        ).stdout
        return head + (" + uncommitted changes" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "uncommitted"


def bare_context(model: Any, rng: torch.Generator) -> Any:
    """A :class:`symgen.models.base.StepContext` whose ``optimize`` is a plain zero-grad / backward / step of
    the model's own optimizers: the model's training step without the Trainer's checks and logging."""
    from symgen.models.base import StepContext

    opts = model.configure_optimizers()

    def optimize(name: str, loss: torch.Tensor) -> float:
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()
        return 0.0

    return StepContext(step=0, device=torch.device("cpu"), generator=rng, _optimize=optimize)
