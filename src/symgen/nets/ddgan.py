r"""Networks of denoising diffusion GANs (dissertation Sec. 6.3.2, 6.4.7) and of the DDPM baseline.

Generators ``G(x_t, z, t) -> (B, *event)`` and discriminators ``D(x_{t-1}, x_t, t) -> (B,)`` logits, for
vectors (2-D toys, flattened small images) and images:

* :class:`MLPGenerator` / :class:`MLPDiscriminator` -- the 25-Gaussians networks (Sec. 6.4.7, "Toy data"): 3
  fully connected layers of 512 units with LeakyReLU 0.2; the conditioning on ``x_t`` (and ``z``, and for
  ``D`` the pair) and on the sinusoidal embedding of ``t`` by concatenation with the input
  (:class:`symgen.nets.TimeMLP`). Images are flattened in and reshaped out.
* :class:`UNetGenerator` -- the U-Net of :class:`symgen.nets.UNet` whose AdaGN layers (Eq. (6.13)) receive
  ``w = mapping(z)`` (a StyleGAN mapping network, :class:`MappingNetwork`) added to the time embedding.
* :class:`ConvDiscriminator` -- Table 6.7: a 1x1 convolution of the concatenated ``[x_{t-1}, x_t]``, ResNet
  blocks (optionally downsampling) that add a projection of the time embedding, a minibatch-std layer, global
  sum pooling and a linear layer to a scalar; LeakyReLU 0.2 throughout.

A generator built with ``nz = 0`` takes no latent (the "no latent variable" ablation of Table 6.2) and the
same trunk with ``nz = 0`` is the DDPM noise-prediction network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from symgen.nets.activations import make_activation
from symgen.nets.time import TimeEmbedding, TimeMLP, UNet

__all__ = ["MappingNetwork", "MLPGenerator", "MLPDiscriminator", "UNetGenerator", "ConvDiscriminator"]


class MappingNetwork(nn.Module):
    """StyleGAN's mapping network: ``z`` normalised to unit mean square (pixel norm), then ``layers``
    linear layers of width ``out_dim`` with ``activation`` (Sec. 6.4.7, Table 6.6: 3 layers)."""

    def __init__(self, nz: int, out_dim: int, layers: int = 3, activation: str = "swish") -> None:
        super().__init__()
        if nz < 1 or out_dim < 1 or layers < 1:
            raise ValueError(f"nz, out_dim and layers must be >= 1, got {nz}, {out_dim}, {layers}")
        mods: list[nn.Module] = []
        width = nz
        for _ in range(layers):
            mods += [nn.Linear(width, out_dim), make_activation(activation)]
            width = out_dim
        self.net = nn.Sequential(*mods)

    def forward(self, z: Tensor) -> Tensor:
        z = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        return self.net(z)


def _flat_dim(event_shape: Sequence[int]) -> int:
    return int(math.prod(event_shape))


class MLPGenerator(nn.Module):
    r""":math:`G(x_t, z, t)` as ``TimeMLP([x_t, z], t)`` reshaped to ``event_shape`` (Sec. 6.4.7 toy net)."""

    def __init__(
        self,
        event_shape: Sequence[int],
        nz: int = 2,
        hidden: int = 512,
        layers: int = 3,
        activation: str = "lrelu",
        time_dim: int = 32,
    ) -> None:
        super().__init__()
        self.event_shape, self.nz = tuple(event_shape), int(nz)
        d = _flat_dim(self.event_shape)
        self.net = TimeMLP(d + self.nz, d, hidden, layers, activation, time_dim)

    def forward(self, xt: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        h = xt.flatten(1)
        if self.nz:
            if z is None or z.shape != (xt.shape[0], self.nz):
                raise ValueError(f"MLPGenerator(nz={self.nz}) needs z of shape ({xt.shape[0]}, {self.nz})")
            h = torch.cat([h, z], dim=1)
        return self.net(h, t).view(xt.shape)


class AdaMLPGenerator(nn.Module):
    r""":math:`G(x_t, z, t)` for vectors with the image generator's conditioning (Sec. 6.3.2) in MLP form:
    ``e = TimeEmbedding(t) [+ mapping(z)]``; each hidden layer is ``act(AdaNorm(Linear(h), e))`` with
    ``AdaNorm`` a layer normalisation whose per-unit scale and shift are linear in ``e`` (Eq. (6.13) with
    one group per example), plus a skip connection between equal widths; a linear output layer.
    ``nz = 0``: no latent (DDPM's noise predictor, Table 6.2's "no latent variable").
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        nz: int = 16,
        hidden: int = 256,
        layers: int = 3,
        activation: str = "lrelu",
        time_dim: int = 32,
        z_emb_dim: int = 128,
        mapping_layers: int = 3,
    ) -> None:
        super().__init__()
        from symgen.nets.time import AdaGroupNorm

        self.event_shape, self.nz = tuple(event_shape), int(nz)
        d = _flat_dim(self.event_shape)
        emb = 4 * time_dim
        self.time_embed = TimeEmbedding(time_dim, emb)
        self.mapping = MappingNetwork(self.nz, z_emb_dim, mapping_layers) if self.nz else None
        self.z_proj = nn.Linear(z_emb_dim, emb) if self.nz else None
        self.inp = nn.Linear(d, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.norms = nn.ModuleList(AdaGroupNorm(hidden, emb, groups=1) for _ in range(layers))
        self.act = make_activation(activation)
        self.out = nn.Linear(hidden, d)

    def forward(self, xt: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        e = self.time_embed(t.to(xt.dtype))
        if self.mapping is not None:
            if z is None or z.shape != (xt.shape[0], self.nz):
                raise ValueError(f"AdaMLPGenerator(nz={self.nz}) needs z of shape ({xt.shape[0]}, {self.nz})")
            e = e + self.z_proj(self.mapping(z))  # type: ignore[misc]
        h = self.act(self.norms[0](self.inp(xt.flatten(1)), e))
        for lin, norm in zip(self.layers, self.norms[1:]):
            h = h + self.act(norm(lin(h), e))
        return self.out(h).view(xt.shape)


class MLPDiscriminator(nn.Module):
    r""":math:`D(x_{t-1}, x_t, t)` as the logit ``TimeMLP([x_{t-1}, x_t], t)`` (Sec. 6.4.7 toy net)."""

    def __init__(
        self,
        event_shape: Sequence[int],
        hidden: int = 512,
        layers: int = 3,
        activation: str = "lrelu",
        time_dim: int = 32,
    ) -> None:
        super().__init__()
        d = _flat_dim(event_shape)
        self.net = TimeMLP(2 * d, 1, hidden, layers, activation, time_dim)

    def forward(self, x_prev: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x_prev.flatten(1), xt.flatten(1)], dim=1), t).squeeze(1)


class UNetGenerator(nn.Module):
    r""":math:`G(x_t, z, t)`: a :class:`symgen.nets.UNet` on ``x_t`` whose AdaGN layers get ``mapping(z)``
    (Sec. 6.3.2, Eq. (6.13); Table 6.6: latent size ``nz``, ``z_emb_dim``, ``mapping_layers``).

    ``nz = 0``: no latent and no mapping network (Table 6.2 "no latent variable"; DDPM's network).
    Other keyword arguments go to :class:`symgen.nets.UNet`.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        nz: int = 100,
        z_emb_dim: int = 256,
        mapping_layers: int = 3,
        **unet: object,
    ) -> None:
        super().__init__()
        self.nz = int(nz)
        self.mapping = MappingNetwork(self.nz, z_emb_dim, mapping_layers) if self.nz else None
        self.unet = UNet(tuple(event_shape), cond_dim=z_emb_dim if self.nz else 0, **unet)  # type: ignore[arg-type]

    def forward(self, xt: Tensor, t: Tensor, z: Tensor | None = None) -> Tensor:
        if self.mapping is None:
            return self.unet(xt, t)
        if z is None or z.shape != (xt.shape[0], self.nz):
            raise ValueError(f"UNetGenerator(nz={self.nz}) needs z of shape ({xt.shape[0]}, {self.nz})")
        return self.unet(xt, t, self.mapping(z))


class _DownBlock(nn.Module):
    """``(act, conv3x3, + Linear(temb), act, [avgpool], conv3x3) + skip``, divided by sqrt(2)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, down: bool) -> None:
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.conv1, self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1), nn.Conv2d(cout, cout, 3, 1, 1)
        self.temb = nn.Linear(emb_dim, cout)
        self.pool = nn.AvgPool2d(2) if down else nn.Identity()
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(x)) + self.temb(emb)[:, :, None, None]
        h = self.conv2(self.pool(self.act(h)))
        return (h + self.skip(self.pool(x))) / math.sqrt(2)


class ConvDiscriminator(nn.Module):
    r""":math:`D(x_{t-1}, x_t, t)` for images (Table 6.7).

    Arguments:
        event_shape: ``(C, H, W)``.
        stem: channels of the 1x1 input convolution of ``[x_{t-1}, x_t]`` (2C channels).
        blocks: ``[[channels, downsample], ...]`` ResNet blocks (CIFAR-10: ``[[128, false], [256, true],
            [512, true], [512, true], [512, true]]``).
        time_dim: size of the sinusoidal time encoding; its two-layer MLP outputs ``4 * time_dim``.
        mbstd_group: group size of the minibatch standard-deviation layer (Karras et al., 2020).
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        stem: int = 128,
        blocks: Sequence[Sequence[int | bool]] = ((128, False), (256, True), (512, True)),
        time_dim: int = 128,
        mbstd_group: int = 4,
    ) -> None:
        super().__init__()
        shape = tuple(event_shape)
        if len(shape) != 3:
            raise ValueError(f"ConvDiscriminator needs an image shape (C, H, W), got {event_shape!r}")
        downs = sum(bool(b[1]) for b in blocks)
        if shape[1] % 2**downs or shape[2] % 2**downs:
            raise ValueError(f"{downs} downsampling blocks need H and W divisible by {2**downs}, got {shape}")
        self.event_shape, self.mbstd_group = shape, int(mbstd_group)
        emb_dim = 4 * time_dim
        self.time_embed = TimeEmbedding(time_dim, emb_dim, activation="lrelu")
        self.stem = nn.Conv2d(2 * shape[0], stem, 1)
        self.blocks = nn.ModuleList()
        ch = stem
        for width, down in blocks:
            self.blocks.append(_DownBlock(ch, int(width), emb_dim, bool(down)))
            ch = int(width)
        self.final = nn.Conv2d(ch + 1, ch, 3, 1, 1)
        self.act = nn.LeakyReLU(0.2)
        self.out = nn.Linear(ch, 1)

    def _mbstd(self, h: Tensor) -> Tensor:
        """Append the mean over features of the per-group standard deviation as one channel."""
        b = h.shape[0]
        g = max(d for d in range(1, min(self.mbstd_group, b) + 1) if b % d == 0)
        y = h.view(g, b // g, *h.shape[1:])
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (b // g,)
        std = std.repeat(g).view(b, 1, 1, 1).expand(b, 1, *h.shape[2:])
        return torch.cat([h, std], dim=1)

    def forward(self, x_prev: Tensor, xt: Tensor, t: Tensor) -> Tensor:
        if tuple(xt.shape[1:]) != self.event_shape or x_prev.shape != xt.shape:
            raise ValueError(f"ConvDiscriminator expects two (B, {self.event_shape}) tensors")
        emb = self.time_embed(t.to(xt.dtype))
        h = self.stem(torch.cat([x_prev, xt], dim=1))
        for block in self.blocks:
            h = block(h, emb)
        h = self.act(self.final(self._mbstd(h)))
        return self.out(h.sum(dim=(2, 3))).squeeze(1)
