r"""Bottom-up Gaussian encoders :math:`x \mapsto (\mu_{\phi_0}(x), \log\sigma_{\phi_0}(x))` for LFBM-VAE.

The convolutional encoders of the LFBM paper's Table 8 (SVHN / CIFAR-10 at 32x32, CelebA at 64x64), a
small convolutional encoder for 28x28 MNIST and an MLP for 8x8 digits. They give the initial Gaussian
:math:`q_{\phi_0}(z_0|x)` of Eq. (22); the flow :math:`f_{\phi_1}` of Eq. (23) lives in
:mod:`symgen.models.latent`. Hand-written: the paper specifies them layer by layer.

Every encoder maps ``(B, C, H, W)`` to ``(mu, log_sigma)``, each ``(B, d)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = ["GaussianEncoder", "ENCODERS", "build_encoder"]


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2)


def _conv32(channels: int, width: int, out: int) -> nn.Module:
    """Table 8, SVHN / CIFAR-10: 3x3 s1, then 4x4 s2 to 16, 8, 4, then a 4x4 valid conv to 1x1."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, 1, 1), _act(),
        nn.Conv2d(width, width * 2, 4, 2, 1), _act(),
        nn.Conv2d(width * 2, width * 4, 4, 2, 1), _act(),
        nn.Conv2d(width * 4, width * 8, 4, 2, 1), _act(),
        nn.Conv2d(width * 8, out, 4, 1, 0),
    )  # fmt: skip


def _conv64(channels: int, width: int, out: int) -> nn.Module:
    """Table 8, CelebA: 4x4 s2 to 32, 16, 8, 4, then a 4x4 valid conv to 1x1."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), _act(),
        nn.Conv2d(width, width * 2, 4, 2, 1), _act(),
        nn.Conv2d(width * 2, width * 4, 4, 2, 1), _act(),
        nn.Conv2d(width * 4, width * 4, 4, 2, 1), _act(),
        nn.Conv2d(width * 4, out, 4, 1, 0),
    )  # fmt: skip


def _conv28(channels: int, width: int, out: int) -> nn.Module:
    """MNIST: 4x4 s2 to 14 and 7, then a linear layer."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1), _act(),
        nn.Conv2d(width, width * 2, 4, 2, 1), _act(),
        nn.Flatten(), nn.Linear(width * 2 * 49, out),
    )  # fmt: skip


def _mlp8(channels: int, width: int, out: int) -> nn.Module:
    """8x8 digits: ``C*64 -> width -> width -> out``."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(channels * 64, width), _act(),
        nn.Linear(width, width), _act(), nn.Linear(width, out),
    )  # fmt: skip


# name -> (builder(channels, width, out), native image size, default width)
ENCODERS: dict[str, tuple[Callable[[int, int, int], nn.Module], int, int]] = {
    "conv32": (_conv32, 32, 64),
    "conv64": (_conv64, 64, 64),
    "conv28": (_conv28, 28, 32),
    "mlp8": (_mlp8, 8, 128),
}


class GaussianEncoder(nn.Module):
    r"""Wrap a network with ``2 d`` outputs as a diagonal-Gaussian encoder (Eq. (22) of the LFBM paper).

    ``forward(x)`` returns ``(mu, log_sigma)``; ``log_sigma`` is soft-clamped to ``[-7, 2]`` by a scaled
    ``tanh`` so the reparameterised samples stay finite.
    """

    def __init__(self, net: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.net, self.latent_dim = net, latent_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(x).reshape(x.shape[0], 2 * self.latent_dim)
        mu, raw = h.chunk(2, dim=-1)
        log_sigma = -2.5 + 4.5 * raw.div(4.5).tanh()  # in (-7, 2), identity-like near -2.5
        return mu, log_sigma


def build_encoder(
    arch: str, latent_dim: int, event_shape: tuple[int, ...], width: int | None = None, **kwargs: Any
) -> GaussianEncoder:
    """Gaussian encoder ``arch`` (``"auto"`` picks by image size) for images of shape ``(C, H, H)``."""
    if len(event_shape) != 3 or event_shape[1] != event_shape[2]:
        raise ValueError(f"event_shape must be square images (C, H, H), got {tuple(event_shape)}")
    channels, size = int(event_shape[0]), int(event_shape[1])
    if arch == "auto":
        matches = [name for name, (_, native, _) in ENCODERS.items() if native == size]
        if not matches:
            raise ValueError(f"no encoder architecture for image_size={size}; supported: 8, 28, 32, 64")
        arch = matches[0]
    if arch not in ENCODERS:
        raise ValueError(f"encoder arch must be 'auto' or one of {sorted(ENCODERS)}, got {arch!r}")
    builder, native, default_width = ENCODERS[arch]
    if native != size:
        raise ValueError(f"encoder '{arch}' reads {native}x{native} images, but the data are {size}x{size}")
    net = builder(channels, int(width or default_width), 2 * latent_dim, **kwargs)
    return GaussianEncoder(net, latent_dim)
