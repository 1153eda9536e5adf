"""Data-parallel training through ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m symgen train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; we
initialise the process group (gloo on CPU, NCCL on CUDA), broadcast rank 0's parameters, and average
gradients after every backward pass (:func:`allreduce_gradients`). Averaging gradients explicitly,
instead of wrapping the model in ``DistributedDataParallel``, keeps it correct for models with several
optimizers and inner MCMC loops that call ``autograd.grad`` on inputs (short-run Langevin), which DDP's
forward hooks do not expect. The result is the same synchronous data-parallel SGD.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "resolve_device",
    "DistInfo",
    "init_distributed",
    "broadcast_module",
    "allreduce_gradients",
    "gather_objects",
    "barrier",
    "cleanup",
]


@dataclass(frozen=True)
class DistInfo:
    """Rank layout of the current process (``world_size == 1`` when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` ("cpu", "cuda", "cuda:N", "mps") as a ``torch.device``, checked to exist on this machine.

    Raises ``ValueError`` naming ``--device`` and the accepted forms for anything else."""
    if isinstance(device, torch.device):
        device = str(device)
    text = str(device).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or mps; got {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = (
                "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            )
            raise ValueError(
                f"--device {device}: this machine has no usable CUDA device (torch {torch.__version__}, "
                f"{build}); use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if kind == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return torch.device(text)


def init_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's environment; return rank info and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistInfo(), dev
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local), dev


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not info.enabled:
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_gradients(params: Iterable[torch.Tensor], info: DistInfo) -> None:
    """Average ``.grad`` of ``params`` over ranks in one flattened all-reduce."""
    if not info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world_size
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def gather_objects(obj: Any, info: DistInfo) -> list[Any] | None:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``None`` when not distributed."""
    if not info.enabled:
        return None
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    """Wait until every rank gets here (no-op when not distributed).

    Called at the end of a successful run before :func:`cleanup`: a rank that tears its gloo pairs
    down while a peer is still writing its report can make the peer's transport threads abort."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op when not distributed)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
