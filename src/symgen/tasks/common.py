"""Helpers shared by the latent-variable task evaluations: model check, options, batching, pictures.

Task options live in the ``model.tasks`` config section of the latent-variable models (see
:meth:`symgen.models.latent.LatentModel.default_config`), so a run's evaluations are reproducible from its
stored config alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from symgen.evaluation import EvalContext

__all__ = [
    "latent_model",
    "reconstructing_model",
    "task_options",
    "eval_images",
    "batched",
    "interleave_rows",
]

_DEFAULTS = {
    "max_images": 1000,
    "batch_size": 500,
    "inpaint_size": 0.625,
    "inpaint_completions": 4,
    "recovery_chain": "train",
}


def latent_model(ctx: EvalContext, evaluation: str) -> Any:
    """The context's model if it is a latent-variable model (has ``infer``), else a ``ValueError``."""
    model = ctx.model
    if not all(hasattr(model, a) for a in ("infer", "generator", "prior", "log_joint")):
        raise ValueError(
            f"evaluation '{evaluation}' needs a latent-variable model (lfbm, abp, lebm, lfbm_vae); "
            f"got {type(model).__name__}"
        )
    return model


def reconstructing_model(ctx: EvalContext, evaluation: str) -> Any:
    """The context's model if it reconstructs images (``reconstruct(x, mask=None, generator=None)``): the
    latent-variable models, and the Langevin-flow models (short-run EBM, CoopFlow) that invert their chain."""
    model = ctx.model
    if not callable(getattr(model, "reconstruct", None)):
        raise ValueError(
            f"evaluation '{evaluation}' needs a model with reconstruct(x, mask) (lfbm, abp, lebm, lfbm_vae, "
            f"short_run_ebm, coopflow); got {type(model).__name__}"
        )
    return model


def task_options(ctx: EvalContext) -> dict[str, Any]:
    """``model.tasks`` of the run's config over the defaults."""
    return {**_DEFAULTS, **dict(ctx.cfg.get("model", {}).get("tasks") or {})}


def eval_images(data: Any, n: int, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """The first ``n`` images (and labels) of a split on ``device``."""
    if data is None or not hasattr(data, "x"):
        raise ValueError("this evaluation needs an image split (ImageData with .x); got none")
    x = data.x[:n].to(device)
    y = data.y[:n] if getattr(data, "y", None) is not None else None
    return x, y


def batched(fn: Callable[..., Tensor], *tensors: Tensor | None, batch_size: int) -> Tensor:
    """Apply ``fn`` to aligned chunks of ``tensors`` (``None`` passes through) and concatenate."""
    n = len(next(t for t in tensors if t is not None))
    outs = []
    for start in range(0, n, batch_size):
        chunk = [None if t is None else t[start : start + batch_size] for t in tensors]
        outs.append(fn(*chunk))
    return torch.cat(outs)


def interleave_rows(*rows: Tensor) -> Tensor:
    """Stack image batches as grid rows: row ``k`` of the result is ``rows[k]`` (all ``(n, C, H, W)``)."""
    return torch.cat([r.detach().cpu() for r in rows])
