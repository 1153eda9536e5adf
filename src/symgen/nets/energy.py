r"""Energy networks: the latent-space MLP of the LEBM prior and the image-space ConvNet EBMs.

Sign convention (the same as :mod:`symgen.densities`): every network here returns the **negative energy**
:math:`f_\theta(x) = -E_\theta(x)`, an unnormalised log-density, shape ``(B,)``:
:math:`p_\theta(x) \propto \exp(f_\theta(x))\, q(x)` with an optional reference measure ``q`` (CoopFlow
Eq. (1), NT-EBM Eq. (4)/(7), LEBM). Pass a network straight to
:func:`symgen.densities.ebm_log_prob` / :func:`~symgen.densities.tilted_latent_log_prob`. For the
dissertation's convention :math:`p \propto \exp(-E)` call ``net.energy(x)`` on the image networks, which
returns :math:`E_\theta(x) = -f_\theta(x)`.

* :class:`LatentEnergy` -- an MLP ``d -> hidden -> ... -> 1`` with LeakyReLU (or GELU) activations, as in
  the latent EBM prior of Pang et al. (2020) (three linear layers, width 200, LeakyReLU 0.2). The prior
  density is :math:`p_\alpha(z) \propto \exp(f_\alpha(z))\,\mathcal{N}(z; 0, I)` (LFBM paper, Sec. 3.3).
* :class:`ConvEnergy` -- a plain strided ConvNet: a 3x3 stride-1 convolution, then 4x4 stride-2
  convolutions, an activation after each, and a linear read-out of the last feature map to a scalar
  (NT-EBM Tables 4-5, dissertation Table 5.2).
* :class:`ResConvEnergy` -- the residual ConvNet of CoopFlow Table 2: a 3x3 stem, residual blocks that
  halve the resolution with 2x2 average pooling, a 100-channel convolution and a sum over its outputs.
* :data:`ENERGY_PRESETS` / :func:`build_energy_net` -- the paper architectures by name, resized by config.

Hand-written: the papers specify these layer by layer and no maintained library ships them.

References:
    Pang, Han, Nijkamp, Zhu, Wu, "Learning Latent Space Energy-Based Prior Model", NeurIPS 2020.
    Xie, Zhu, Li, Li, "A Tale of Two Flows: Cooperative Learning of Langevin Flow and Normalizing Flow
    Toward Energy-Based Model", ICLR 2022 (CoopFlow), Appendix A.1, Table 2.
    Nijkamp, Gao, Sountsov, Vasudevan, Pang, Zhu, Wu, "MCMC Should Mix: Learning Energy-Based Model with
    Neural Transport Latent Space MCMC", ICLR 2022 (NT-EBM), Appendix A.3, Tables 4-5.
    Xiao, "Designing Deep Generative Models with Symbiotic Composition", PhD dissertation, University of
    Chicago, 2022, Sec. 5.5.3, Table 5.2.
"""

from __future__ import annotations

import difflib
import inspect
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from symgen.nets.activations import make_activation

__all__ = [
    "LatentEnergy",
    "ImageEnergy",
    "ConvEnergy",
    "ResDownBlock",
    "ResConvEnergy",
    "EnergyPreset",
    "ENERGY_ARCHS",
    "ENERGY_PRESETS",
    "build_energy_net",
]


class LatentEnergy(nn.Module):
    r"""Scalar network :math:`f_\alpha: \mathbb{R}^d \to \mathbb{R}`; ``forward(z)`` returns shape ``(B,)``.

    Arguments:
        latent_dim: size ``d`` of the latent vector.
        hidden: width of the hidden layers.
        layers: number of hidden layers (``>= 1``).
        activation: a name of :data:`symgen.nets.activations.ACTIVATIONS`: ``"lrelu"`` (slope 0.2),
            ``"gelu"``, ``"swish"`` (the dissertation's 2-D energy, Sec. 5.5.3)...
    """

    def __init__(
        self, latent_dim: int, hidden: int = 200, layers: int = 2, activation: str = "lrelu"
    ) -> None:
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers!r}")
        make_activation(activation)  # validates the name (ValueError listing the accepted ones)
        mods: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), make_activation(activation)]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)
        self.latent_dim = latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim)).squeeze(-1)


def _check_event_shape(event_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        shape = tuple(operator.index(s) for s in event_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(
            f"event_shape must be an image shape (C, H, W) of positive ints, got {event_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _check_widths(nf: int, mults: Sequence[int]) -> list[int]:
    if not isinstance(nf, int) or nf <= 0:
        raise ValueError(f"nf must be a positive integer, got {nf!r}")
    if len(mults) == 0 or not all(isinstance(m, int) and m > 0 for m in mults):
        raise ValueError(f"mults must be a non-empty sequence of positive ints, got {mults!r}")
    return [nf * m for m in mults]


class ImageEnergy(nn.Module):
    r"""Base of the image energy networks: shape checks and the two sign conventions.

    ``forward(x)`` returns the negative energy :math:`f_\theta(x)` of shape ``(B,)`` (the log-density
    convention of :mod:`symgen.densities`); :meth:`energy` returns :math:`E_\theta(x) = -f_\theta(x)`.
    """

    event_shape: tuple[int, int, int]

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"{type(self).__name__} expects images of shape "
                f"(B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )

    def energy(self, x: Tensor) -> Tensor:
        r""":math:`E_\theta(x) = -f_\theta(x)`, shape ``(B,)`` (for :math:`p \propto \exp(-E)`)."""
        return -self(x)


class ConvEnergy(ImageEnergy):
    r"""Plain strided ConvNet :math:`f_\theta: \mathbb{R}^{C\times H\times W} \to \mathbb{R}`.

    Layers (NT-EBM Tables 4-5; dissertation Table 5.2): a 3x3 stride-1 convolution to ``nf * mults[0]``
    channels, then one 4x4 stride-2 (padding 1) convolution to ``nf * mults[i]`` channels for every further
    multiplier, each followed by ``activation``; finally a linear map of the flattened last feature map
    (``h x w`` positions) to a scalar. On a 4x4 map that read-out *is* the NT-EBM's final
    "4x4 conv(1)" (a valid convolution covering the whole map: same function class, same parameter count)
    and the dissertation's "Flatten, FC layer to scalar".

    Arguments:
        event_shape: image shape ``(C, H, W)``; ``H`` and ``W`` are halved (floor) by every 4x4 layer.
        nf: base number of filters.
        mults: channel multiplier of each convolution (the first is the 3x3 stride-1 layer).
        activation: a name of :data:`symgen.nets.activations.ACTIVATIONS` (``"lipswish"``, ``"swish"``...).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        nf: int = 32,
        mults: Sequence[int] = (1, 2, 4, 4),
        activation: str = "lipswish",
    ) -> None:
        super().__init__()
        self.event_shape = _check_event_shape(event_shape)
        widths = _check_widths(nf, mults)
        channels, h, w = self.event_shape
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1), make_activation(activation)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), make_activation(activation)]
            h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"{len(widths) - 1} stride-2 layers need images of at least {2 ** (len(widths) - 1)} pixels "
                f"per side, got {self.event_shape[1]}x{self.event_shape[2]}"
            )
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * h * w, 1)
        self.feature_shape = (widths[-1], h, w)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.head(self.features(x).flatten(1)).squeeze(-1)


class ResDownBlock(nn.Module):
    r"""Residual block of CoopFlow Table 2(b), halving the resolution.

    ``out = avgpool2x2( act(conv3x3(act(conv3x3(x)))) + act(conv3x3_skip(x)) )``; the first convolution
    keeps ``cin`` channels and the second and the shortcut map to ``cout`` (the table does not say where
    the width changes; this follows the official code's ``block``).
    """

    def __init__(self, cin: int, cout: int, activation: str = "swish") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1)
        self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 3, 1, 1)
        self.act = make_activation(activation)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.conv2(self.act(self.conv1(x))))
        return self.pool(h + self.act(self.skip(x)))


class ResConvEnergy(ImageEnergy):
    r"""Residual ConvNet EBM of CoopFlow Table 2(a): :math:`f_\theta(x) = \sum_{c,i,j} h_{c,i,j}(x)`.

    A 3x3 stride-1 stem to ``nf`` channels with ``activation``; one :class:`ResDownBlock` to ``nf * m``
    channels per multiplier (each halves ``H`` and ``W``); a ``head_kernel`` x ``head_kernel`` convolution
    with stride ``head_stride`` and no padding to ``head_channels`` channels, followed by
    ``head_activation`` (``None``: none); the output is the sum over channels (and over positions if the
    head leaves more than one).

    Table 2 with ``nf=128, mults=(2, 4, 8)``: 32 -> 16 -> 8 -> 4, then a 3x3 stride-4 convolution to 100
    channels with Swish (one output position). The official code instead uses a 4x4 stride-1 convolution
    without activation (preset ``coopflow_cifar_code``).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        nf: int = 128,
        mults: Sequence[int] = (2, 4, 8),
        activation: str = "swish",
        head_channels: int = 100,
        head_kernel: int = 3,
        head_stride: int = 4,
        head_activation: str | None = "swish",
    ) -> None:
        super().__init__()
        self.event_shape = _check_event_shape(event_shape)
        widths = [nf, *_check_widths(nf, mults)]
        channels, height, width = self.event_shape
        h, w = height, width
        for _ in mults:
            h, w = h // 2, w // 2
        if min(h, w) < head_kernel:
            raise ValueError(
                f"{len(mults)} residual blocks leave a {h}x{w} map, smaller than the "
                f"{head_kernel}x{head_kernel} head; images need at least "
                f"{head_kernel * 2 ** len(mults)} pixels per side, got {height}x{width}"
            )
        self.stem = nn.Sequential(nn.Conv2d(channels, nf, 3, 1, 1), make_activation(activation))
        self.blocks = nn.Sequential(
            *(ResDownBlock(a, b, activation) for a, b in zip(widths[:-1], widths[1:]))
        )
        head: list[nn.Module] = [nn.Conv2d(widths[-1], head_channels, head_kernel, head_stride, 0)]
        if head_activation is not None:
            head.append(make_activation(head_activation))
        self.head = nn.Sequential(*head)

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.head(self.blocks(self.stem(x))).sum(dim=(1, 2, 3))


ENERGY_ARCHS: dict[str, type[ImageEnergy]] = {"conv": ConvEnergy, "resconv": ResConvEnergy}


@dataclass(frozen=True)
class EnergyPreset:
    """A named paper architecture: ``arch`` in :data:`ENERGY_ARCHS`, its keyword arguments, the dataset
    shape it was specified for (``native_shape``) and the table it reproduces (``source``)."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    native_shape: tuple[int, int, int] = (3, 32, 32)
    source: str = ""


ENERGY_PRESETS: dict[str, EnergyPreset] = {
    "coopflow_cifar": EnergyPreset(
        "resconv",
        dict(
            nf=128, mults=(2, 4, 8), activation="swish", head_kernel=3, head_stride=4, head_activation="swish"
        ),
        (3, 32, 32),
        "CoopFlow App. A.1, Table 2 (as printed: 3x3 stride-4 head to 100 channels with Swish)",
    ),
    "coopflow_cifar_code": EnergyPreset(
        "resconv",
        dict(nf=128, mults=(2, 4, 8), activation="swish", head_kernel=4, head_stride=1, head_activation=None),
        (3, 32, 32),
        "CoopFlow official code EBM_res(n_f=128): Table 2 with a 4x4 stride-1 head and no head activation",
    ),
    "ntebm_mnist": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 4, 4), activation="lipswish"),
        (1, 28, 28),
        "NT-EBM App. A.3, Table 4 layers with n_f=32 on 28x28x1 (3x3 final map, read by a 3x3 valid conv)",
    ),
    "ntebm_cifar": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 4, 4), activation="lipswish"),
        (3, 32, 32),
        "NT-EBM App. A.3, Table 4 (32x32x3; CIFAR-10 and SVHN), n_f=32",
    ),
    "ntebm_celeba": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 4, 8, 8), activation="lipswish"),
        (3, 64, 64),
        "NT-EBM App. A.3, Table 5 (64x64x3; CelebA), n_f=32",
    ),
    "dissertation_5_2_mnist": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 2, 2), activation="swish"),
        (1, 32, 32),
        "Dissertation Table 5.2, MNIST / Fashion-MNIST column (resized to 32x32), nf=32",
    ),
    "dissertation_5_2_cifar": EnergyPreset(
        "conv",
        dict(nf=64, mults=(1, 2, 4, 8), activation="swish"),
        (3, 32, 32),
        "Dissertation Table 5.2, CIFAR-10 column, nf=64",
    ),
    "dissertation_5_2_celeba": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 4, 8, 16), activation="swish"),
        (3, 64, 64),
        "Dissertation Table 5.2, CelebA column (64x64), nf=32",
    ),
    "digits8": EnergyPreset(
        "conv",
        dict(nf=32, mults=(1, 2, 4), activation="lipswish"),
        (1, 8, 8),
        "no paper table: the NT-EBM layer pattern shrunk for the bundled 8x8 digits (8 -> 4 -> 2)",
    ),
}


def build_energy_net(
    name_or_cfg: str | Mapping[str, Any], event_shape: Sequence[int], **overrides: Any
) -> ImageEnergy:
    """Build an image energy network for images of ``event_shape = (C, H, W)``.

    ``name_or_cfg`` is a preset name of :data:`ENERGY_PRESETS`, or a mapping: either
    ``{"preset": name, **overrides}`` (e.g. ``{"preset": "ntebm_cifar", "nf": 8}``) or
    ``{"arch": "conv" | "resconv", **kwargs}`` with the constructor's keyword arguments. Keyword
    ``overrides`` are applied last. Presets adapt to the channels of ``event_shape``; their spatial layout
    needs a large enough image (a clear error otherwise).
    """
    if isinstance(name_or_cfg, str):
        cfg: dict[str, Any] = {"preset": name_or_cfg}
    elif isinstance(name_or_cfg, Mapping):
        cfg = dict(name_or_cfg)
    else:
        raise ValueError(
            f"energy network must be a preset name or a mapping, got {type(name_or_cfg).__name__}"
        )
    if ("preset" in cfg) == ("arch" in cfg):
        raise ValueError(
            f"energy network config needs exactly one of 'preset' or 'arch', got keys {sorted(cfg)}"
        )
    if "preset" in cfg:
        name = cfg.pop("preset")
        if name not in ENERGY_PRESETS:
            close = difflib.get_close_matches(str(name), ENERGY_PRESETS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown energy preset {name!r}{hint}; choose from {sorted(ENERGY_PRESETS)}")
        preset = ENERGY_PRESETS[name]
        arch, kwargs = preset.arch, {**preset.kwargs, **cfg, **overrides}
    else:
        arch = cfg.pop("arch")
        if arch not in ENERGY_ARCHS:
            raise ValueError(f"unknown energy arch {arch!r}; choose from {sorted(ENERGY_ARCHS)}")
        kwargs = {**cfg, **overrides}
    cls = ENERGY_ARCHS[arch]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "event_shape")]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for energy arch {arch!r}; valid: {valid}")
    return cls(_check_event_shape(event_shape), **kwargs)
