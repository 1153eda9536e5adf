"""Reconstruction errors: mean squared error over all pixels, and separately over the hidden and the
observed pixels of a mask (convention of :mod:`symgen.data.masks`: 1 = observed), as reported for
inpainting, recovery and reconstruction experiments.

Hand-written: two lines of torch; a dependency would add nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor

from symgen.registry import METRICS

__all__ = ["mse", "masked_mse"]


def _check_pair(x: Tensor, x_hat: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(x, Tensor) or not isinstance(x_hat, Tensor) or x.shape != x_hat.shape:
        raise ValueError(
            "x and x_hat must be tensors of the same shape (N, ...), got "
            f"{getattr(x, 'shape', type(x).__name__)} and {getattr(x_hat, 'shape', type(x_hat).__name__)}"
        )
    return x.detach().to(torch.float64), x_hat.detach().to(device=x.device, dtype=torch.float64)


def mse(x: Tensor, x_hat: Tensor) -> float:
    r"""Mean squared error :math:`\frac{1}{|x|}\sum(x-\hat x)^2` over all entries."""
    x, x_hat = _check_pair(x, x_hat)
    return float((x - x_hat).square().mean())


def masked_mse(x: Tensor, x_hat: Tensor, mask: Tensor) -> tuple[float, float]:
    r"""Mean squared errors on the hidden and on the observed entries of ``mask``.

    :math:`\sum (1-m)(x-\hat x)^2/\sum (1-m)` and :math:`\sum m(x-\hat x)^2/\sum m`: every hidden pixel of
    the whole batch weighs the same (not a mean of per-image means); NaN where a part is empty.

    Arguments:
        x: ground truth ``(N, C, H, W)`` (any shape).
        x_hat: reconstruction, same shape.
        mask: boolean or 0/1, broadcastable to ``x``; 1 = observed, 0 = hidden (to be inpainted), as
            everywhere in symgen (:mod:`symgen.data.masks`), e.g. ``(N, 1, H, W)`` shared over channels.

    Returns:
        ``(mse_hidden, mse_observed)``.
    """
    x, x_hat = _check_pair(x, x_hat)
    if not isinstance(mask, Tensor):
        raise ValueError(f"mask must be a boolean or 0/1 tensor broadcastable to {tuple(x.shape)}")
    try:
        m = torch.broadcast_to(mask.to(device=x.device), x.shape)
    except RuntimeError:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(x.shape)}"
        ) from None
    if m.dtype != torch.bool:
        if not ((m == 0) | (m == 1)).all():
            raise ValueError("mask must be boolean or contain only 0 and 1")
        m = m.bool()
    m = ~m  # True on the hidden entries
    err = (x - x_hat).square()
    hidden, seen = m.sum(), (~m).sum()
    masked = err[m].sum() / hidden if hidden > 0 else torch.tensor(float("nan"))
    unmasked = err[~m].sum() / seen if seen > 0 else torch.tensor(float("nan"))
    return float(masked), float(unmasked)


@METRICS.register("mse", "mean squared error between data and reconstructions")
def _mse_metric(x: Tensor, x_hat: Tensor) -> dict[str, float]:
    return {"mse": mse(x, x_hat)}


@METRICS.register("mse_masked", "MSE on the hidden (mask 0, inpainted) and on the observed (mask 1) pixels")
def _masked_mse_metric(x: Tensor, x_hat: Tensor, mask: Tensor) -> dict[str, float]:
    masked, unmasked = masked_mse(x, x_hat, mask)
    return {"mse_masked": masked, "mse_unmasked": unmasked}
