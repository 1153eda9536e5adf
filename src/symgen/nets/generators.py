r"""Top-down generator networks :math:`g_\beta: \mathbb{R}^d \to \mathbb{R}^{C\times H\times W}`.

The architectures of the LFBM paper's Table 7 (DCGAN-style transposed convolutions for SVHN, CIFAR-10 and
CelebA 64), the fully-connected + deconvolution MNIST generator of the paper's official MNIST code, and a
small multilayer perceptron for the 8x8 embedded digits. Every generator takes flat latents ``(B, d)`` and
returns images ``(B, C, H, W)`` in ``[-1, 1]`` (``tanh`` output).

These are hand-written: the papers specify them layer by layer and no maintained library ships them as
reusable modules. No batch normalisation by default: with batch statistics the Langevin posterior of one
image would depend on the other images of its batch (the official MNIST generator uses it; opt in with
``batchnorm=True``).

References:
    Xie et al., "A Tale of Two Latent Flows: Learning Latent Space Normalizing Flow with Short-run
    Langevin Flow for Approximate Inference", AAAI 2023 (Table 7).
    Radford et al., "Unsupervised Representation Learning with Deep Convolutional GANs", ICLR 2016.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

__all__ = [
    "DCGAN32",
    "DCGAN32Cifar",
    "DCGAN64",
    "MNIST28",
    "Digits8",
    "GENERATORS",
    "build_generator",
    "default_generator_arch",
    "init_generator",
    "GENERATOR_INITS",
]

GENERATOR_INITS = ("default", "xavier_normal")


def _act(leak: float = 0.2) -> nn.Module:
    return nn.LeakyReLU(leak)


def _check_latent(latent_dim: int) -> None:
    if not isinstance(latent_dim, int) or latent_dim <= 0:
        raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")


class _ConvGenerator(nn.Module):
    """Reshape ``(B, d)`` to ``(B, d, 1, 1)`` and apply a stack of transposed convolutions."""

    def __init__(self, latent_dim: int, layers: list[nn.Module]) -> None:
        super().__init__()
        _check_latent(latent_dim)
        self.latent_dim = latent_dim
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim, 1, 1))


def _up(cin: int, cout: int, k: int = 4, s: int = 2, p: int = 1, bn: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.ConvTranspose2d(cin, cout, k, s, p, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    return [*layers, _act()]


class DCGAN32(_ConvGenerator):
    """32x32 generator of Table 7 (SVHN): 1 -> 4 -> 8 -> 16 -> 32 with widths ``8, 4, 2`` x ``ngf``."""

    def __init__(self, latent_dim: int, channels: int = 3, ngf: int = 64, batchnorm: bool = False) -> None:
        layers = [
            *_up(latent_dim, ngf * 8, 4, 1, 0, batchnorm),
            *_up(ngf * 8, ngf * 4, bn=batchnorm),
            *_up(ngf * 4, ngf * 2, bn=batchnorm),
            nn.ConvTranspose2d(ngf * 2, channels, 4, 2, 1),
            nn.Tanh(),
        ]
        super().__init__(latent_dim, layers)


class DCGAN32Cifar(_ConvGenerator):
    """32x32 generator of Table 7 (CIFAR-10): 1 -> 8 -> 16 -> 32 and a 3x3 stride-1 output layer."""

    def __init__(self, latent_dim: int, channels: int = 3, ngf: int = 128, batchnorm: bool = False) -> None:
        layers = [
            *_up(latent_dim, ngf * 8, 8, 1, 0, batchnorm),
            *_up(ngf * 8, ngf * 4, bn=batchnorm),
            *_up(ngf * 4, ngf * 2, bn=batchnorm),
            nn.ConvTranspose2d(ngf * 2, channels, 3, 1, 1),
            nn.Tanh(),
        ]
        super().__init__(latent_dim, layers)


class DCGAN64(_ConvGenerator):
    """64x64 generator of Table 7 (CelebA): 1 -> 4 -> 8 -> 16 -> 32 -> 64, widths ``8, 4, 2, 1`` x ``ngf``."""

    def __init__(self, latent_dim: int, channels: int = 3, ngf: int = 128, batchnorm: bool = False) -> None:
        layers = [
            *_up(latent_dim, ngf * 8, 4, 1, 0, batchnorm),
            *_up(ngf * 8, ngf * 4, bn=batchnorm),
            *_up(ngf * 4, ngf * 2, bn=batchnorm),
            *_up(ngf * 2, ngf, bn=batchnorm),
            nn.ConvTranspose2d(ngf, channels, 4, 2, 1),
            nn.Tanh(),
        ]
        super().__init__(latent_dim, layers)


class MNIST28(nn.Module):
    """28x28 generator of the official LFBM MNIST code: FC(1024) -> FC(128*7*7) -> deconv 14 -> deconv 28."""

    def __init__(self, latent_dim: int, channels: int = 1, ngf: int = 64, batchnorm: bool = False) -> None:
        super().__init__()
        _check_latent(latent_dim)
        self.latent_dim = latent_dim

        def norm1d(n: int) -> nn.Module:
            return nn.BatchNorm1d(n) if batchnorm else nn.Identity()

        def norm2d(n: int) -> nn.Module:
            return nn.BatchNorm2d(n) if batchnorm else nn.Identity()

        self.fc = nn.Sequential(
            nn.Linear(latent_dim, 1024),
            norm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 2 * ngf * 7 * 7),
            norm1d(2 * ngf * 7 * 7),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * ngf, ngf, 2, stride=2),
            norm2d(ngf),
            nn.ReLU(),
            nn.ConvTranspose2d(ngf, channels, 2, stride=2),
            nn.Tanh(),
        )
        self.ngf = ngf

    def forward(self, z: Tensor) -> Tensor:
        h = self.fc(z.reshape(z.shape[0], self.latent_dim))
        return self.deconv(h.view(z.shape[0], 2 * self.ngf, 7, 7))


class Digits8(nn.Module):
    """Small MLP generator for 8x8 images: ``d -> ngf -> ngf -> C*8*8`` with LeakyReLU and tanh."""

    def __init__(self, latent_dim: int, channels: int = 1, ngf: int = 128, batchnorm: bool = False) -> None:
        super().__init__()
        _check_latent(latent_dim)
        if batchnorm:
            raise ValueError("batchnorm is not supported by the digits8 generator; use batchnorm=false")
        self.latent_dim, self.channels = latent_dim, channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim, ngf),
            _act(),
            nn.Linear(ngf, ngf),
            _act(),
            nn.Linear(ngf, channels * 64),
            nn.Tanh(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim)).view(z.shape[0], self.channels, 8, 8)


# name -> (class, native image size)
GENERATORS: dict[str, tuple[Callable[..., nn.Module], int]] = {
    "dcgan32": (DCGAN32, 32),
    "dcgan32_cifar": (DCGAN32Cifar, 32),
    "dcgan64": (DCGAN64, 64),
    "mnist28": (MNIST28, 28),
    "digits8": (Digits8, 8),
}


def default_generator_arch(image_size: int) -> str:
    """The architecture used for square images of side ``image_size`` when the config says ``auto``."""
    for name in ("digits8", "mnist28", "dcgan32", "dcgan64"):
        if GENERATORS[name][1] == image_size:
            return name
    raise ValueError(f"no generator architecture for image_size={image_size}; supported sizes: 8, 28, 32, 64")


def init_generator(net: nn.Module, scheme: str = "default") -> nn.Module:
    """Re-initialise ``net`` in place: ``"default"`` keeps torch's initialisation; ``"xavier_normal"`` is the
    LFBM / LEBM official code's ``weights_init_xavier``: Xavier-normal weights in every (transposed)
    convolution, batch-norm scales from N(1, 0.02) and zero shifts; linear layers and biases keep torch's."""
    if scheme not in GENERATOR_INITS:
        raise ValueError(f"generator init must be one of {GENERATOR_INITS}, got {scheme!r}")
    if scheme == "xavier_normal":
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) and m.affine:
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)
    return net


def build_generator(
    arch: str, latent_dim: int, event_shape: tuple[int, ...], ngf: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build generator ``arch`` (or ``"auto"``) for images of ``event_shape = (C, H, W)``.

    ``ngf`` is the base width (``None``: the architecture's default); ``kwargs`` go to the constructor.
    """
    if len(event_shape) != 3 or event_shape[1] != event_shape[2]:
        raise ValueError(f"event_shape must be square images (C, H, H), got {tuple(event_shape)}")
    channels, size = int(event_shape[0]), int(event_shape[1])
    if arch == "auto":
        arch = default_generator_arch(size)
    if arch not in GENERATORS:
        raise ValueError(f"generator arch must be 'auto' or one of {sorted(GENERATORS)}, got {arch!r}")
    cls, native = GENERATORS[arch]
    if native != size:
        raise ValueError(f"generator '{arch}' makes {native}x{native} images, but the data are {size}x{size}")
    if ngf is not None:
        kwargs["ngf"] = int(ngf)
    return cls(latent_dim, channels=channels, **kwargs)
