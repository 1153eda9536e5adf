"""Plots decode as PNGs of the expected size; the image grid holds the input pixels tile by tile."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from symgen import plots


def _size(path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.load()  # full decode, not just the header
        assert im.format == "PNG"
        return im.size


def test_diagnostic_plots_have_figsize_times_dpi(tmp_path):
    torch.manual_seed(0)
    chains = torch.randn(3, 200, 2, 2)
    assert _size(plots.plot_trace(chains, tmp_path / "a" / "trace.png", figsize=(6, 4), dpi=50)) == (300, 200)
    assert _size(plots.plot_autocorrelation(chains, tmp_path / "acf.png", max_lag=50, dpi=80)) == (480, 320)
    rhat = 1 + torch.rand(100) * 0.1
    assert _size(plots.plot_rhat_histogram(rhat, tmp_path / "rhat.png", figsize=(4, 3), dpi=50)) == (200, 150)


def test_2d_plots_have_figsize_times_dpi(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(500, 2)
    assert _size(plots.save_scatter(x, tmp_path / "s.png", bounds=((-4, 4), (-4, 4)), dpi=40)) == (200, 200)

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        assert z.shape[1] == 2
        return -0.5 * z.square().sum(dim=1)

    path = plots.save_density(log_prob, ((-3, 3), (-3, 3)), tmp_path / "d.png", resolution=50, dpi=40)
    assert _size(path) == (200, 200)


@pytest.mark.parametrize("channels", [1, 3])
def test_image_grid_layout_and_pixels(tmp_path, channels):
    torch.manual_seed(0)
    n, h, w, nrow, pad = 7, 5, 6, 3, 2
    x = torch.rand(n, channels, h, w) * 2 - 1
    path = plots.save_image_grid(x, tmp_path / "grid.png", nrow=nrow, padding=pad)
    rows = math.ceil(n / nrow)
    assert _size(path) == (nrow * (w + pad) + pad, rows * (h + pad) + pad)
    with Image.open(path) as im:
        assert im.mode == ("L" if channels == 1 else "RGB")
        grid = np.asarray(im)
    expected = np.round((x.double().numpy() + 1) * 127.5).astype(np.uint8)
    for k in range(n):
        top, left = pad + (k // nrow) * (h + pad), pad + (k % nrow) * (w + pad)
        tile = grid[top : top + h, left : left + w]
        ref = expected[k, 0] if channels == 1 else expected[k].transpose(1, 2, 0)
        np.testing.assert_array_equal(tile, ref)
    assert (grid[:pad] == 255).all()  # padding


def test_image_grid_scale_and_clamp(tmp_path):
    x = torch.tensor([[[[-5.0, 5.0]]]])  # out of range values are clamped
    path = plots.save_image_grid(x, tmp_path / "g.png", nrow=1, padding=0, scale=3)
    assert _size(path) == (6, 3)
    with Image.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im), [[0, 0, 0, 255, 255, 255]] * 3)


def test_bad_inputs_raise_value_error(tmp_path):
    with pytest.raises(ValueError, match="N, C, H, W"):
        plots.save_image_grid(torch.zeros(2, 2, 4, 4), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        plots.save_scatter(torch.zeros(5, 3), tmp_path / "x.png")
    with pytest.raises(ValueError, match="bounds"):
        plots.save_density(lambda z: z[:, 0], ((1, 0), (0, 1)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="n_chains, n_draws"):
        plots.plot_trace(torch.zeros(5), tmp_path / "x.png")
