"""Resumable minibatch streams over the datasets of :mod:`symgen.data`.

A stream owns its own ``torch.Generator``; its ``state_dict`` goes into every checkpoint so that a
resumed run sees exactly the batches it would have seen. Under data parallelism every rank draws the
same permutation and takes its own slice, so ranks see disjoint batches.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["BatchStream", "ToyStream", "TensorStream", "make_stream"]


class BatchStream:
    """Infinite iterator of batches with ``state_dict``/``load_state_dict``."""

    def __init__(self, batch_size: int, seed: int) -> None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Tensor:
        raise NotImplementedError

    @property
    def steps_per_epoch(self) -> int | None:
        """Batches in one pass over the data (``None``: an infinite stream of fresh samples)."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


class ToyStream(BatchStream):
    """Fresh exact samples of a toy 2-D distribution at every step (rank-specific seed)."""

    def __init__(self, dist: Any, batch_size: int, seed: int, rank: int = 0) -> None:
        super().__init__(batch_size, seed * 1009 + rank)
        self.dist = dist

    def __next__(self) -> Tensor:
        return self.dist.sample(self.batch_size, generator=self.generator)


class TensorStream(BatchStream):
    """Epochs of random permutations over a tensor; rank ``r`` of ``w`` takes every ``w``-th index."""

    def __init__(self, x: Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(batch_size, seed)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"data must be a non-empty batch tensor (N, ...), got shape {tuple(x.shape)}")
        self.x, self.rank, self.world = x, rank, world_size
        self.perm = self._new_perm()
        self.pos = 0

    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.perm) // self.batch_size)

    def _new_perm(self) -> Tensor:
        perm = torch.randperm(len(self.x), generator=self.generator)
        return perm[self.rank :: self.world]

    def __next__(self) -> Tensor:
        if self.pos + self.batch_size > len(self.perm):
            self.perm, self.pos = self._new_perm(), 0
        idx = self.perm[self.pos : self.pos + min(self.batch_size, len(self.perm))]
        self.pos += len(idx)
        return self.x[idx]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.perm, self.pos = state["perm"], int(state["pos"])


def make_stream(data: Any, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> BatchStream:
    """Stream for a :class:`symgen.data.Toy2D` (fresh samples) or :class:`symgen.data.ImageData`."""
    if getattr(data, "kind", None) == "toy2d":
        return ToyStream(data, batch_size, seed, rank)
    return TensorStream(data.x, batch_size, seed, rank, world_size)
