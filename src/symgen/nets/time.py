r"""Time-conditioned blocks for diffusion models: embeddings, AdaGN, residual blocks, a U-Net, an MLP.

* :func:`sinusoidal_embedding` -- the Transformer positional encoding (Vaswani et al., 2017, Sec. 3.5)
  in the form DDPM uses for the time step (Ho et al., 2020, App. B; their ``get_timestep_embedding``):
  for ``half = dim // 2`` frequencies :math:`\omega_i = 10000^{-i/(\mathrm{half}-1)}`,
  :math:`\mathrm{emb}(t) = [\sin(t\omega_0), \dots, \sin(t\omega_{\mathrm{half}-1}), \cos(t\omega_0), \dots,
  \cos(t\omega_{\mathrm{half}-1})]` (zero-padded by one entry when ``dim`` is odd).
* :class:`TimeEmbedding` -- that encoding followed by a two-layer MLP (dimension ``4 x`` the U-Net's base
  channels in DDPM and in DDGAN, dissertation Sec. 6.3.3).
* :class:`AdaGroupNorm` -- adaptive group normalisation, dissertation Eq. (6.13):
  :math:`\tilde w = \mu(e) + \sigma(e)\,\mathrm{GN}(w)` with per-channel shift and scale from a linear map
  of a conditioning vector ``e``; parametrised as :math:`\sigma = 1 + s(e)` so a zero map is plain
  ``GroupNorm`` (Dhariwal & Nichol, 2021, Sec. 3 use the same layer with the time embedding).
* :class:`TimeResBlock`, :class:`SelfAttention2d`, :class:`UNet` -- a small DDPM-style U-Net
  ``(x (B,C,H,W), t (B,)) -> (B,C',H,W)``.
* :class:`TimeMLP` -- ``(x (B,d), t (B,)) -> (B,d')`` for 2-D data: the time embedding is concatenated to
  the input, as in DDGAN's toy networks (dissertation Sec. 6.5, "Toy data": 3 layers of 512 units,
  LeakyReLU 0.2).

Everything is plain ``torch.nn`` (no CUDA-only ops) and checks input shapes with clear errors.

References:
    Vaswani et al., "Attention Is All You Need", NeurIPS 2017.
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
    Dhariwal, Nichol, "Diffusion Models Beat GANs on Image Synthesis", NeurIPS 2021.
    Xiao, "Designing Deep Generative Models with Symbiotic Composition", PhD dissertation, University of
    Chicago, 2022, Ch. 6 (denoising diffusion GANs).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from symgen.nets.activations import make_activation

__all__ = [
    "sinusoidal_embedding",
    "TimeEmbedding",
    "AdaGroupNorm",
    "TimeResBlock",
    "SelfAttention2d",
    "UNet",
    "TimeMLP",
    "num_groups",
]


def _as_time(t: Tensor | float, batch: int, ref: Tensor) -> Tensor:
    """``t`` as a float tensor of shape ``(batch,)`` on ``ref``'s device (scalars are broadcast)."""
    t = torch.as_tensor(t, device=ref.device)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"t must be a scalar or have shape ({batch},), got {tuple(t.shape)}")
    return t.to(ref.dtype if ref.is_floating_point() else torch.get_default_dtype())


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    r"""Sinusoidal embedding of times ``t`` (shape ``(B,)``, integer or real) into ``(B, dim)``.

    ``emb[:, i] = sin(t * w_i)`` and ``emb[:, half + i] = cos(t * w_i)`` with
    ``w_i = max_period ** (-i / (half - 1))``, ``half = dim // 2`` (DDPM, Ho et al. 2020, App. B; the
    Transformer encoding of Vaswani et al. 2017, Sec. 3.5, with sines and cosines in two blocks). The
    frequencies run from 1 to ``1 / max_period``, so integer steps up to ``~max_period`` stay distinct.
    For ``t`` in ``[0, 1]`` multiply by the number of steps (e.g. 1000) first.
    """
    if not isinstance(dim, int) or dim < 4:
        raise ValueError(f"dim must be an integer >= 4, got {dim!r}")
    if t.dim() != 1:
        raise ValueError(f"t must have shape (B,), got {tuple(t.shape)}")
    half = dim // 2
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    i = torch.arange(half, device=t.device, dtype=dtype)
    freqs = torch.exp(-math.log(max_period) * i / (half - 1))
    args = t.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimeEmbedding(nn.Module):
    """``t -> Linear(act(Linear(sinusoidal(scale * t))))``: ``(B,)`` to ``(B, out_dim)`` (DDPM, DDGAN).

    Arguments:
        dim: size of the sinusoidal encoding.
        out_dim: output size (default ``4 * dim``).
        activation: activation between the two linear layers (default Swish, as DDPM).
        scale: multiplies ``t`` before the encoding (e.g. 1000 for continuous ``t`` in ``[0, 1]``).
    """

    def __init__(
        self, dim: int, out_dim: int | None = None, activation: str = "swish", scale: float = 1.0
    ) -> None:
        super().__init__()
        self.dim, self.out_dim, self.scale = dim, out_dim or 4 * dim, float(scale)
        sinusoidal_embedding(torch.zeros(1), dim)  # validate dim now
        self.mlp = nn.Sequential(
            nn.Linear(dim, self.out_dim), make_activation(activation), nn.Linear(self.out_dim, self.out_dim)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t * self.scale, self.dim))


def num_groups(channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``channels`` that is at most ``max_groups`` (group count for GroupNorm)."""
    if channels <= 0 or max_groups <= 0:
        raise ValueError(f"channels and max_groups must be positive, got {channels}, {max_groups}")
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


class AdaGroupNorm(nn.Module):
    r"""Adaptive group normalisation (dissertation Eq. (6.13); Dhariwal & Nichol 2021, Sec. 3).

    ``forward(h, e) = (1 + s(e)) * GroupNorm(h) + b(e)`` with ``(s, b) = Linear(e)`` split per channel and
    ``GroupNorm`` the usual affine group normalisation. With a zero linear map it *is* ``GroupNorm``.

    Arguments:
        channels: channels of ``h`` (``(B, channels, ...)``).
        emb_dim: size of the conditioning vector ``e`` (``(B, emb_dim)``).
        groups: at most this many groups (the largest divisor of ``channels`` not above it).
    """

    def __init__(self, channels: int, emb_dim: int, groups: int = 32, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels, groups), channels, eps=eps)
        self.proj = nn.Linear(emb_dim, 2 * channels)
        self.channels, self.emb_dim = channels, emb_dim

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        if h.dim() < 2 or h.shape[1] != self.channels:
            raise ValueError(f"AdaGroupNorm expects (B, {self.channels}, ...), got {tuple(h.shape)}")
        if emb.shape != (h.shape[0], self.emb_dim):
            raise ValueError(
                f"AdaGroupNorm expects emb of shape ({h.shape[0]}, {self.emb_dim}), got {tuple(emb.shape)}"
            )
        scale, shift = self.proj(emb).chunk(2, dim=1)
        view = (h.shape[0], self.channels) + (1,) * (h.dim() - 2)
        return self.norm(h) * (1 + scale.view(view)) + shift.view(view)


class TimeResBlock(nn.Module):
    """Residual block conditioned on an embedding ``e`` (DDPM's block with AdaGN, Dhariwal & Nichol 2021).

    ``h = conv3x3(act(GN(x)))``; ``h = conv3x3(dropout(act(AdaGN(h, e))))``; ``out = h + skip(x)``, with
    ``skip`` a 1x1 convolution when the channel count changes.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        dropout: float = 0.0,
        groups: int = 32,
        activation: str = "swish",
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups(cin, groups), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = AdaGroupNorm(cout, emb_dim, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.act = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = self.conv2(self.dropout(self.act(self.norm2(h, emb))))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Single-head self-attention over the ``H*W`` positions with a residual connection (DDPM)."""

    def __init__(self, channels: int, groups: int = 32) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels, groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        attn = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", attn, v).reshape(b, c, h, w)
        return x + self.proj(out)


class _Level(nn.Module):
    """Res blocks (each optionally followed by attention) at one resolution of the U-Net."""

    def __init__(self, blocks: list[TimeResBlock], attn: list[nn.Module]) -> None:
        super().__init__()
        self.blocks, self.attn = nn.ModuleList(blocks), nn.ModuleList(attn)


class UNet(nn.Module):
    r"""Small DDPM-style U-Net: ``forward(x, t, cond=None)`` maps ``(B, C, H, W)`` to ``(B, C_out, H, W)``.

    A 3x3 input convolution to ``base_channels``; for each multiplier ``m`` in ``channel_mults`` a level of
    ``num_res_blocks`` :class:`TimeResBlock` s with ``base_channels * m`` channels (plus
    :class:`SelfAttention2d` after each block when the level's resolution is in ``attn_resolutions``),
    then a 3x3 stride-2 convolution (not after the last level); a middle block (res, attention, res); the
    mirrored up path with ``num_res_blocks + 1`` blocks per level on the concatenated skip connections and
    nearest-neighbour 2x upsampling followed by a 3x3 convolution; GroupNorm, activation, 3x3 output
    convolution. Every res block is conditioned through AdaGN on ``e = TimeEmbedding(t)`` (size
    ``4 * base_channels``), plus ``Linear(cond)`` when ``cond_dim > 0`` (e.g. DDGAN's latent ``z``).

    Arguments:
        event_shape: ``(C, H, W)``; ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
        base_channels: channels of the first level.
        channel_mults: channel multiplier per level (resolution halves between levels).
        num_res_blocks: res blocks per level on the down path.
        attn_resolutions: feature-map sides (e.g. ``(16,)``) at which to add self-attention.
        dropout: dropout rate inside the res blocks.
        out_channels: output channels (default ``C``).
        cond_dim: size of an extra conditioning vector (``0``: none).
        groups: maximum GroupNorm group count.
        activation: activation name (default Swish).
        time_scale: multiplies ``t`` before the sinusoidal encoding.
    """

    def __init__(
        self,
        event_shape: Sequence[int],
        base_channels: int = 64,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        out_channels: int | None = None,
        cond_dim: int = 0,
        groups: int = 32,
        activation: str = "swish",
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        try:
            shape = tuple(operator.index(s) for s in event_shape)
        except TypeError:
            shape = ()
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(
                f"event_shape must be an image shape (C, H, W) of positive ints, got {event_shape!r}"
            )
        if not channel_mults or not all(isinstance(m, int) and m > 0 for m in channel_mults):
            raise ValueError(
                f"channel_mults must be a non-empty sequence of positive ints, got {channel_mults!r}"
            )
        if num_res_blocks < 1 or base_channels < 1:
            raise ValueError(
                f"num_res_blocks and base_channels must be >= 1, got {num_res_blocks}, {base_channels}"
            )
        factor = 2 ** (len(channel_mults) - 1)
        channels, height, width = shape
        if height % factor or width % factor:
            raise ValueError(
                f"{len(channel_mults)} levels halve the resolution {len(channel_mults) - 1} times: "
                f"H and W must be divisible by {factor}, got {height}x{width}"
            )
        sizes = [height // 2**i for i in range(len(channel_mults))]
        unknown = sorted(set(attn_resolutions) - set(sizes))
        if unknown:
            raise ValueError(f"attn_resolutions {unknown} are not level resolutions {sizes}")
        self.event_shape, self.cond_dim = shape, int(cond_dim)
        emb_dim = 4 * base_channels
        self.time_embed = TimeEmbedding(base_channels, emb_dim, activation, time_scale)
        self.cond_embed = nn.Linear(cond_dim, emb_dim) if cond_dim > 0 else None

        def res(cin: int, cout: int) -> TimeResBlock:
            return TimeResBlock(cin, cout, emb_dim, dropout, groups, activation)

        def attn(ch: int, size: int) -> nn.Module:
            return SelfAttention2d(ch, groups) if size in attn_resolutions else nn.Identity()

        self.conv_in = nn.Conv2d(channels, base_channels, 3, 1, 1)
        widths = [base_channels * m for m in channel_mults]
        skips, ch = [base_channels], base_channels
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, (wd, size) in enumerate(zip(widths, sizes)):
            blocks, attns = [], []
            for _ in range(num_res_blocks):
                blocks.append(res(ch, wd))
                attns.append(attn(wd, size))
                ch = wd
                skips.append(ch)
            self.down.append(_Level(blocks, attns))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(ch, ch, 3, 2, 1))
            if not last:
                skips.append(ch)
        self.mid1, self.mid_attn, self.mid2 = res(ch, ch), SelfAttention2d(ch, groups), res(ch, ch)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            blocks, attns = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(res(ch + skips.pop(), widths[i]))
                ch = widths[i]
                attns.append(attn(ch, sizes[i]))
            self.up.append(_Level(blocks, attns))
            self.upsample.append(
                nn.Identity()
                if i == 0
                else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, 1, 1))
            )
        self.out = nn.Sequential(
            nn.GroupNorm(num_groups(ch, groups), ch),
            make_activation(activation),
            nn.Conv2d(ch, out_channels or channels, 3, 1, 1),
        )

    def embed(self, t: Tensor | float, cond: Tensor | None, ref: Tensor) -> Tensor:
        """The conditioning vector ``e`` of the res blocks, ``(B, 4 * base_channels)``."""
        emb = self.time_embed(_as_time(t, ref.shape[0], ref))
        if self.cond_embed is not None:
            if cond is None or cond.shape != (ref.shape[0], self.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(
                    f"UNet(cond_dim={self.cond_dim}) needs cond of shape ({ref.shape[0]}, {self.cond_dim}), "
                    f"got {got}"
                )
            emb = emb + self.cond_embed(cond)
        elif cond is not None:
            raise ValueError("cond given, but the UNet was built with cond_dim=0")
        return emb

    def forward(self, x: Tensor, t: Tensor | float, cond: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"UNet expects x of shape (B, {', '.join(map(str, self.event_shape))}), got {tuple(x.shape)}"
            )
        emb = self.embed(t, cond, x)
        h = self.conv_in(x)
        hs = [h]
        for level, down in zip(self.down, self.downsample):
            for block, att in zip(level.blocks, level.attn):
                h = att(block(h, emb))
                hs.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for level, up in zip(self.up, self.upsample):
            for block, att in zip(level.blocks, level.attn):
                h = att(block(torch.cat([h, hs.pop()], dim=1), emb))
            h = up(h)
        return self.out(h)


class TimeMLP(nn.Module):
    """Time-conditioned MLP for vectors: ``forward(x (B, in_dim), t) -> (B, out_dim)``.

    ``[x, sinusoidal(scale * t)]`` goes through ``layers`` hidden linear layers of width ``hidden`` with
    ``activation`` and a linear output layer. The defaults follow DDGAN's 25-Gaussians networks
    (dissertation Sec. 6.5, "Toy data": 3 fully-connected layers of 512 units, LeakyReLU 0.2, conditioning
    on ``x_t`` and ``t`` by concatenation with the input). Condition on more (``x_t``, a latent ``z``) by
    concatenating it to ``x`` and counting it in ``in_dim``.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int = 512,
        layers: int = 3,
        activation: str = "lrelu",
        time_dim: int = 32,
        time_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                "in_dim, out_dim, hidden and layers must be >= 1, "
                f"got {in_dim}, {out_dim}, {hidden}, {layers}"
            )
        sinusoidal_embedding(torch.zeros(1), time_dim)  # validate time_dim now
        self.in_dim, self.time_dim, self.time_scale = in_dim, time_dim, float(time_scale)
        mods: list[nn.Module] = []
        width = in_dim + time_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), make_activation(activation)]
            width = hidden
        mods.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*mods)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"TimeMLP expects x of shape (B, {self.in_dim}), got {tuple(x.shape)}")
        temb = sinusoidal_embedding(_as_time(t, x.shape[0], x) * self.time_scale, self.time_dim)
        return self.net(torch.cat([x, temb], dim=1))
