r"""Encoder / decoder pairs of the autoencoder family (GLF, RAE, VAE variants; dissertation Ch. 3).

* ``infogan``: the auto-encoder of the dissertation's Table 3.6 (InfoGAN generator as the decoder, a
  symmetric encoder), for square images whose side is a multiple of 4 (MNIST / Fashion 28, CIFAR-10 32,
  CelebA 64; ``M = H / 4``). Decoder: FC ``d -> 1024``, BN, ReLU; FC ``1024 -> 128 M M``, BN, ReLU; 4x4
  deconv 64, BN, ReLU; 4x4 deconv ``C``. Encoder: 4x4 conv 64, ReLU; 4x4 conv 128, BN, ReLU; FC ``-> 1024``,
  BN, ReLU; FC ``-> d`` (``2 d`` for a VAE). All (de)convolutions stride 2, padding 1.
* every other name: the existing encoders of :mod:`symgen.nets.encoders` (``mlp8`` for 8x8 digits...) and
  generators of :mod:`symgen.nets.generators` (``digits8``...), reused as they are.

The decoder's last activation is ``tanh`` (symgen's images live in ``[-1, 1]``; the table's sigmoid maps to
``[0, 1]``). Hand-written: the dissertation specifies the layers.
"""

from __future__ import annotations

from torch import Tensor, nn

from symgen.nets.encoders import ENCODERS, GaussianEncoder
from symgen.nets.generators import build_generator

__all__ = ["InfoGANEncoder", "InfoGANDecoder", "FlatEncoder", "build_ae_encoder", "build_ae_decoder"]


def _side(event_shape: tuple[int, ...], what: str) -> tuple[int, int]:
    if len(event_shape) != 3 or event_shape[1] != event_shape[2]:
        raise ValueError(f"{what} needs square images (C, H, H), got {tuple(event_shape)}")
    return int(event_shape[0]), int(event_shape[1])


def _m(size: int, key: str) -> int:
    if size % 4:
        raise ValueError(
            f"{key}: the infogan auto-encoder (Table 3.6) needs a side divisible by 4, got {size}"
        )
    return size // 4


class InfoGANEncoder(nn.Module):
    """Table 3.6 encoder: ``(B, C, H, H) -> (B, out)``."""

    def __init__(self, channels: int, size: int, out: int, width: int = 64) -> None:
        super().__init__()
        m = _m(size, "model.encoder.arch")
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * m * m, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, out),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class InfoGANDecoder(nn.Module):
    """Table 3.6 decoder (InfoGAN generator): ``(B, d) -> (B, C, H, H)`` in ``[-1, 1]``."""

    def __init__(self, latent_dim: int, channels: int, size: int, width: int = 64) -> None:
        super().__init__()
        self.m, self.width = _m(size, "model.decoder.arch"), width
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(),
            nn.Linear(1024, 2 * width * self.m**2), nn.BatchNorm1d(2 * width * self.m**2), nn.ReLU(),
        )  # fmt: skip
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z.reshape(z.shape[0], -1))
        return self.deconv(h.view(z.shape[0], 2 * self.width, self.m, self.m))


class FlatEncoder(nn.Module):
    """A deterministic encoder :math:`E_\\phi`: any network, output flattened to ``(B, d)``."""

    def __init__(self, net: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.net, self.latent_dim = net, latent_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).reshape(x.shape[0], self.latent_dim)


def _encoder_net(arch: str, out: int, event_shape: tuple[int, ...], width: int | None) -> nn.Module:
    channels, size = _side(event_shape, "model.encoder")
    if arch == "auto":
        arch = "mlp8" if size == 8 else "infogan"
    if arch == "infogan":
        return InfoGANEncoder(channels, size, out, int(width or 64))
    if arch not in ENCODERS:
        raise ValueError(
            f"model.encoder.arch must be auto, infogan or one of {sorted(ENCODERS)}, got {arch!r}"
        )
    builder, native, default_width = ENCODERS[arch]
    if native != size:
        raise ValueError(
            f"model.encoder.arch '{arch}' reads {native}x{native} images, the data are {size}x{size}"
        )
    return builder(channels, int(width or default_width), out)


def build_ae_encoder(
    arch: str, latent_dim: int, event_shape: tuple[int, ...], width: int | None, gaussian: bool
) -> nn.Module:
    """Encoder ``arch`` (``auto``: ``mlp8`` at 8x8, else ``infogan``): a :class:`FlatEncoder` giving codes
    ``(B, d)``, or with ``gaussian`` a :class:`~symgen.nets.encoders.GaussianEncoder` giving
    ``(mu, log_sigma)`` (Table 3.6: the last FC layer doubled for VAEs)."""
    if gaussian:
        return GaussianEncoder(_encoder_net(arch, 2 * latent_dim, event_shape, width), latent_dim)
    return FlatEncoder(_encoder_net(arch, latent_dim, event_shape, width), latent_dim)


def build_ae_decoder(
    arch: str, latent_dim: int, event_shape: tuple[int, ...], width: int | None
) -> nn.Module:
    """Decoder ``arch`` (``auto``: ``digits8`` at 8x8, else ``infogan``; other names: symgen's generators)."""
    channels, size = _side(event_shape, "model.decoder")
    if arch == "auto":
        arch = "digits8" if size == 8 else "infogan"
    if arch == "infogan":
        return InfoGANDecoder(latent_dim, channels, size, int(width or 64))
    return build_generator(arch, latent_dim, event_shape, width)
