"""Figures for runs and diagnostics: MCMC traces, autocorrelation, R-hat histograms, image grids and 2-D
scatter/density plots, written to PNG files.

Figures are built on :class:`matplotlib.figure.Figure` with the Agg canvas and never touch
``matplotlib.pyplot``, so nothing here changes global matplotlib state or needs a display. Every function
takes its output ``path`` (parent folders are created) and returns it as a :class:`~pathlib.Path`.
Matplotlib figures are ``figsize * dpi`` pixels; :func:`save_image_grid` writes pixels with Pillow
directly, so tile ``(r, c)`` holds exactly the input image ``r * nrow + c``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from symgen.diagnostics import autocorrelation

__all__ = [
    "plot_trace",
    "plot_autocorrelation",
    "plot_rhat_histogram",
    "save_image_grid",
    "save_scatter",
    "save_density",
    "images_to_uint8",
]

PathLike = str | os.PathLike[str]
Bounds = Sequence[Sequence[float]]


def _new_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi)
    return path


def _chains_2d(chains: Tensor) -> Tensor:
    """``(n_chains, n_draws, *dims)`` -> ``(n_chains, n_draws, D)`` on the CPU in float64."""
    if not isinstance(chains, Tensor) or chains.dim() < 2:
        raise ValueError("chains must be a tensor of shape (n_chains, n_draws, *dims)")
    c = chains.detach().to("cpu", torch.float64)
    return c.reshape(c.shape[0], c.shape[1], -1)


def _check_bounds(bounds: Bounds) -> tuple[tuple[float, float], tuple[float, float]]:
    b = np.asarray(bounds, dtype=float)
    if b.shape != (2, 2) or not (b[:, 0] < b[:, 1]).all():
        raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max, got {bounds!r}")
    return (float(b[0, 0]), float(b[0, 1])), (float(b[1, 0]), float(b[1, 1]))


def plot_trace(
    chains: Tensor,
    path: PathLike,
    *,
    coords: Sequence[int] | None = None,
    max_chains: int = 8,
    figsize: tuple[float, float] = (8.0, 6.0),
    dpi: int = 100,
) -> Path:
    """Trace plot: one panel per coordinate (flattened ``dims``; the first four unless ``coords``), one
    line per chain (at most ``max_chains``), draws on the horizontal axis.

    Arguments:
        chains: ``(n_chains, n_draws, *dims)``.
        path: output PNG path.
        coords: indices into the flattened ``dims`` to show.
    """
    c = _chains_2d(chains)
    coords = list(range(min(4, c.shape[2]))) if coords is None else list(coords)
    if not coords or max(coords) >= c.shape[2] or min(coords) < 0:
        raise ValueError(f"coords must index the {c.shape[2]} flattened dims, got {coords}")
    fig = _new_figure(figsize, dpi)
    axes = fig.subplots(len(coords), 1, sharex=True, squeeze=False)[:, 0]
    for ax, j in zip(axes, coords):
        for i in range(min(max_chains, c.shape[0])):
            ax.plot(c[i, :, j].numpy(), lw=0.6, alpha=0.8)
        ax.set_ylabel(f"x[{j}]")
    axes[-1].set_xlabel("draw")
    return _save(fig, path)


def plot_autocorrelation(
    chains: Tensor,
    path: PathLike,
    *,
    max_lag: int | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Autocorrelation against lag, averaged over chains: the mean over coordinates as a line and the
    min/max over coordinates as a band, as in Fig. 2(c-d) of the NT-EBM paper.

    Arguments:
        chains: ``(n_chains, n_draws, *dims)``.
        path: output PNG path.
        max_lag: largest lag shown (default ``n_draws // 2``).
    """
    c = _chains_2d(chains)
    rho = autocorrelation(c, dim=1).mean(dim=0)  # (n_draws, D)
    max_lag = c.shape[1] // 2 if max_lag is None else max_lag
    if not 0 < max_lag < c.shape[1]:
        raise ValueError(f"max_lag must be in [1, n_draws - 1] = [1, {c.shape[1] - 1}], got {max_lag}")
    rho = rho[: max_lag + 1]
    lags = np.arange(max_lag + 1)
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.fill_between(lags, rho.min(dim=1).values.numpy(), rho.max(dim=1).values.numpy(), alpha=0.3)
    ax.plot(lags, rho.mean(dim=1).numpy(), lw=1.5)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("lag")
    ax.set_ylabel("autocorrelation")
    return _save(fig, path)


def plot_rhat_histogram(
    rhat: Tensor,
    path: PathLike,
    *,
    threshold: float = 1.2,
    bins: int = 30,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
) -> Path:
    """Histogram of R-hat values over coordinates with a dashed line at ``threshold`` (1.2 in Fig. 2(a-b)
    of the NT-EBM paper; 1.01 for rank-normalised R-hat) and the mean in the title.

    Arguments:
        rhat: R-hat values of any shape (e.g. the output of :func:`symgen.diagnostics.split_rhat`).
        path: output PNG path.
    """
    values = torch.as_tensor(rhat).detach().to("cpu", torch.float64).flatten()
    values = values[torch.isfinite(values)]
    if values.numel() == 0:
        raise ValueError("rhat must contain at least one finite value")
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.hist(values.numpy(), bins=bins)
    ax.axvline(threshold, color="r", ls="--", lw=1)
    ax.set_xlabel("R-hat")
    ax.set_title(f"mean R-hat {values.mean().item():.3f}")
    return _save(fig, path)


def images_to_uint8(x: Tensor) -> np.ndarray:
    """Map images ``(N, C, H, W)`` with values in ``[-1, 1]`` to ``uint8`` ``(N, H, W, C)`` by
    ``round((x + 1) * 127.5)`` after clamping."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"x must be images of shape (N, C, H, W) with C in (1, 3), got {shape}")
    u8 = ((x.detach().to("cpu", torch.float64).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u8.permute(0, 2, 3, 1).numpy()


def save_image_grid(
    x: Tensor, path: PathLike, nrow: int = 8, *, padding: int = 2, pad_value: int = 255, scale: int = 1
) -> Path:
    """Tile images into one PNG: ``nrow`` images per row (as in ``torchvision.utils.make_grid``),
    ``padding`` pixels of ``pad_value`` around tiles, each pixel repeated ``scale`` times per axis.

    The file is ``(ceil(N / nrow) * (H + p) + p) * scale`` by ``(min(N, nrow) * (W + p) + p) * scale``
    pixels (height by width, ``p = padding``), greyscale for ``C = 1`` and RGB for ``C = 3``.

    Arguments:
        x: images ``(N, C, H, W)`` with values in ``[-1, 1]`` (clamped).
        path: output PNG path.
        nrow: images per row.
    """
    if nrow < 1 or padding < 0 or scale < 1:
        raise ValueError(f"need nrow >= 1, padding >= 0, scale >= 1; got {nrow}, {padding}, {scale}")
    imgs = images_to_uint8(x)
    n, h, w, c = imgs.shape
    if n == 0:
        raise ValueError("x must contain at least one image")
    cols, rows = min(n, nrow), math.ceil(n / nrow)
    grid = np.full((rows * (h + padding) + padding, cols * (w + padding) + padding, c), pad_value, np.uint8)
    for k in range(n):
        top, left = padding + (k // nrow) * (h + padding), padding + (k % nrow) * (w + padding)
        grid[top : top + h, left : left + w] = imgs[k]
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    image = Image.fromarray(grid[..., 0] if c == 1 else grid)  # uint8: "L" for (H, W), "RGB" for (H, W, 3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_scatter(
    x: Tensor,
    path: PathLike,
    bounds: Bounds | None = None,
    *,
    s: float = 1.0,
    figsize: tuple[float, float] = (5.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Scatter plot of 2-D points ``x`` ``(N, 2)``, limited to ``bounds = ((x_min, x_max), (y_min, y_max))``
    when given (equal aspect)."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        raise ValueError("x must be a tensor of 2-D points with shape (N, 2)")
    pts = x.detach().to("cpu", torch.float64).numpy()
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.scatter(pts[:, 0], pts[:, 1], s=s, alpha=0.6, linewidths=0)
    if bounds is not None:
        (x0, x1), (y0, y1) = _check_bounds(bounds)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
    ax.set_aspect("equal")
    return _save(fig, path)


def save_density(
    log_prob_fn: Callable[[Tensor], Tensor],
    bounds: Bounds,
    path: PathLike,
    *,
    resolution: int = 200,
    device: torch.device | str | None = None,
    figsize: tuple[float, float] = (5.0, 5.0),
    dpi: int = 100,
) -> Path:
    """Heat map of the density ``exp(log_prob_fn(x))`` normalised on a ``resolution`` x ``resolution``
    midpoint grid over ``bounds = ((x_min, x_max), (y_min, y_max))``; ``log_prob_fn`` maps ``(B, 2)`` to
    ``(B,)`` and may be unnormalised; grid points are made on ``device`` (default CPU), default dtype."""
    (x0, x1), (y0, y1) = _check_bounds(bounds)
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    gx = x0 + (torch.arange(resolution, dtype=torch.float64) + 0.5) * (x1 - x0) / resolution
    gy = y0 + (torch.arange(resolution, dtype=torch.float64) + 0.5) * (y1 - y0) / resolution
    yy, xx = torch.meshgrid(gy, gx, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], dim=1).to(device=device, dtype=torch.get_default_dtype())
    with torch.no_grad():
        logp = log_prob_fn(pts).detach().to("cpu", torch.float64).reshape(resolution, resolution)
    density = torch.softmax(logp.flatten(), dim=0).reshape(resolution, resolution)
    fig = _new_figure(figsize, dpi)
    ax = fig.add_subplot()
    ax.imshow(density.numpy(), origin="lower", extent=(x0, x1, y0, y1), cmap="viridis", aspect="equal")
    return _save(fig, path)
