r"""Toy 2-D distributions with exact sampling and, where one exists, an exact normalised log-density.

These are the toy sets of the flow/EBM literature (FFJORD, the NT-EBM paper's "mixture of eight 2D
Gaussians", the dissertation's 25-Gaussians, 9-Gaussian grid and Swiss roll, CoopFlow's spiral), each
written as an explicit generative process so that its density is known:

* Gaussian mixtures (``8gaussians``, ``25gaussians``, ``9gaussians``): closed form.
* ``rings``: circles blurred by isotropic Gaussian noise; closed form through the Bessel function
  :math:`I_0` (averaging :math:`\mathcal{N}(x; r(\cos\theta, \sin\theta), \sigma^2 I)` over
  :math:`\theta` gives :math:`e^{-(|x|^2+r^2)/2\sigma^2} I_0(r|x|/\sigma^2) / 2\pi\sigma^2`).
* ``checkerboard``: uniform on 8 squares; closed form.
* ``spiral``, ``2spirals``, ``swissroll``, ``moons``: a point on a curve :math:`c(t)`, :math:`t \sim p(t)`,
  plus isotropic Gaussian noise, so :math:`p(x) = \int p(t)\,\mathcal{N}(x; c(t), \sigma^2 I)\,dt`. The 1-D
  integral has no closed form; it is evaluated by composite Gauss-Legendre quadrature (14 nodes on each
  panel of arc length 2.5 noise std), accurate to 1e-9 in log-density wherever log-density > -50 (error
  measured against a 10x finer rule; the tests check it against ``scipy.integrate.quad``).
* ``pinwheel``: FFJORD's recipe; no tractable density, :meth:`Toy2D.log_prob` raises.

Every distribution records its scale in its docstring and in ``docs/data.md``. Sampling takes an optional
CPU ``torch.Generator`` and returns float32; ``log_prob`` is differentiable and keeps the input's dtype and
device (it computes in float64).

Hand-written: no maintained library ships these toy sets with exact densities (sklearn has samplers for
moons and the Swiss roll only; FFJORD's ``toy_data.py`` is research code with samplers only).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from symgen.registry import DATASETS

__all__ = [
    "Toy2D",
    "GaussianMixture2D",
    "Rings",
    "Checkerboard",
    "NoisyCurves",
    "Curve",
    "Pinwheel",
    "TOY_NAMES",
    "eight_gaussians",
    "twentyfive_gaussians",
    "nine_gaussians",
    "rings",
    "checkerboard",
    "spiral",
    "two_spirals",
    "swissroll",
    "moons",
    "pinwheel",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]
_LOG_2PI = math.log(2 * math.pi)


def _positive(value: float, arg: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{arg} must be a positive number, got {value!r}")
    return float(value)


class Toy2D:
    """Base class: a distribution on R^2 with exact sampling (and maybe an exact log-density).

    Attributes:
        name: registered name, e.g. ``"spiral"``.
        kind: always ``"toy2d"``.
        event_shape: always ``(2,)``.
        has_density: whether :meth:`log_prob` is available.
        bounds: ``((xmin, xmax), (ymin, ymax))``, a box holding all but a negligible (< 1e-6) mass.
    """

    kind = "toy2d"
    event_shape = (2,)
    has_density = True

    def __init__(self, name: str, bounds: Bounds) -> None:
        self.name = name
        self.bounds = bounds

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` independent samples, shape ``(n, 2)``, float32 on the CPU."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        return self._sample(n, generator).to(torch.float32)

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact normalised log-density of points ``x`` of shape ``(..., 2)``; returns shape ``(...)``."""
        if not self.has_density:
            raise NotImplementedError(f"toy dataset '{self.name}' has no tractable density")
        if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1 or x.shape[-1] != 2:
            got = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a floating-point tensor of shape (..., 2), got {got}")
        flat = x.reshape(-1, 2).to(torch.float64)
        return self._log_prob(flat).reshape(x.shape[:-1]).to(x.dtype)

    def test_set(self, n: int = 10_000, seed: int = 2024) -> Tensor:
        """A fixed held-out sample: ``n`` points drawn with its own generator seeded by ``seed``."""
        return self.sample(n, generator=torch.Generator().manual_seed(seed))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def _log_prob(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, bounds={self.bounds})"


def _box(half_x: float, half_y: float | None = None) -> Bounds:
    half_y = half_x if half_y is None else half_y
    return ((-half_x, half_x), (-half_y, half_y))


class GaussianMixture2D(Toy2D):
    r"""Equal-weight mixture of isotropic Gaussians :math:`\frac1K\sum_k \mathcal{N}(\mu_k, \sigma^2 I)`.

    Arguments:
        name: dataset name.
        means: ``(K, 2)`` component means.
        std: common component standard deviation :math:`\sigma`.
    """

    def __init__(self, name: str, means: Tensor, std: float) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        if self.means.ndim != 2 or self.means.shape[1] != 2 or len(self.means) == 0:
            raise ValueError(f"means must have shape (K, 2) with K >= 1, got {tuple(self.means.shape)}")
        self.std = _positive(std, "std")
        reach = self.means.abs().amax().item() + 6 * self.std
        super().__init__(name, _box(math.ceil(reach * 10) / 10))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = torch.randint(len(self.means), (n,), generator=generator)
        eps = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return self.means[k] + self.std * eps

    def _log_prob(self, x: Tensor) -> Tensor:
        means = self.means.to(x.device)
        d2 = (x[:, None, :] - means[None]).pow(2).sum(-1)
        log_norm = math.log(len(means)) + _LOG_2PI + 2 * math.log(self.std)
        return torch.logsumexp(-d2 / (2 * self.std**2), dim=1) - log_norm


class Rings(Toy2D):
    r"""Equal-weight mixture of circles of radii :math:`r_k` blurred by isotropic noise :math:`\sigma`.

    Closed-form density :math:`\frac1K\sum_k \frac{1}{2\pi\sigma^2}
    \exp\!\big(-\frac{(|x|-r_k)^2}{2\sigma^2}\big)\,\mathrm{i0e}\big(\frac{r_k|x|}{\sigma^2}\big)`, with
    ``i0e`` the exponentially scaled modified Bessel function of order 0.
    """

    def __init__(self, name: str, radii: tuple[float, ...], std: float) -> None:
        if len(radii) == 0:
            raise ValueError("radii must be a non-empty sequence of positive numbers")
        self.radii = torch.tensor([_positive(r, "radii") for r in radii], dtype=torch.float64)
        self.std = _positive(std, "std")
        super().__init__(name, _box(math.ceil((max(radii) + 6 * self.std) * 10) / 10))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        k = torch.randint(len(self.radii), (n,), generator=generator)
        theta = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
        circle = self.radii[k, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
        return circle + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x: Tensor) -> Tensor:
        radii = self.radii.to(x.device)
        r = x.norm(dim=1, keepdim=True)
        s2 = self.std**2
        comp = -(r - radii).pow(2) / (2 * s2) + torch.special.i0e(r * radii / s2).log()
        return torch.logsumexp(comp, dim=1) - math.log(len(radii)) - _LOG_2PI - math.log(s2)


class Checkerboard(Toy2D):
    """Uniform on the 8 squares of side ``2 * scale`` of a 4x4 board on ``[-4 scale, 4 scale]^2``.

    Square ``(i, j)`` (``i, j = floor(x / (2 scale))`` in ``{-2, ..., 1}``) is filled iff ``i + j`` is even,
    as in FFJORD. Density ``1 / (32 scale^2)`` on the filled squares, 0 elsewhere (log-density ``-inf``).
    """

    def __init__(self, name: str, scale: float = 1.0) -> None:
        self.scale = _positive(scale, "scale")
        super().__init__(name, _box(4 * self.scale))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        i = torch.randint(-2, 2, (n,), generator=generator)
        j = torch.randint(-1, 1, (n,), generator=generator) * 2 + (i % 2)  # same parity as i
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        return 2 * self.scale * (torch.stack([i, j], dim=1).to(torch.float64) + u)

    def _log_prob(self, x: Tensor) -> Tensor:
        cell = torch.floor(x / (2 * self.scale))
        inside = (cell >= -2).all(dim=1) & (cell <= 1).all(dim=1) & ((cell.sum(dim=1) % 2) == 0)
        value = -math.log(32 * self.scale**2)
        # x * 0 keeps the result attached to x's autograd graph (zero gradient, as the density is flat).
        return torch.where(inside, value + x[:, 0] * 0, torch.full_like(x[:, 0], -math.inf))


@dataclass(frozen=True)
class Curve:
    r"""One piece of a :class:`NoisyCurves`: a parametrised curve and the law of its parameter.

    Attributes:
        point: ``t -> c(t)``, maps a float64 tensor ``(m,)`` to ``(m, 2)``.
        t_range: support ``(a, b)`` of the parameter :math:`t`.
        t_log_density: normalised :math:`\log p(t)` on ``t_range``.
        t_from_uniform: inverse CDF, maps ``u ~ U(0, 1)`` to :math:`t \sim p`.
        weight: mixture weight of this piece (the weights of a :class:`NoisyCurves` sum to 1).
    """

    point: Callable[[Tensor], Tensor]
    t_range: tuple[float, float]
    t_log_density: Callable[[Tensor], Tensor]
    t_from_uniform: Callable[[Tensor], Tensor]
    weight: float = 1.0


class NoisyCurves(Toy2D):
    r"""Mixture of curves plus isotropic Gaussian noise: :math:`x = c_j(t) + \sigma\varepsilon`.

    The density :math:`\sum_j w_j \int p_j(t)\,\mathcal{N}(x; c_j(t), \sigma^2 I)\,dt` is computed by
    composite Gauss-Legendre quadrature (``order`` nodes per panel, panels of arc length
    ``panel_sigmas * std``), so the node spacing along the curve is a fixed fraction of the noise scale.

    Arguments:
        name: dataset name.
        curves: the pieces (their ``weight`` must sum to 1).
        std: noise standard deviation :math:`\sigma`.
        panel_sigmas: panel arc length in units of ``std``; smaller is more accurate.
        order: Gauss-Legendre nodes per panel.
    """

    def __init__(
        self, name: str, curves: list[Curve], std: float, panel_sigmas: float = 2.5, order: int = 14
    ) -> None:
        if not curves or abs(sum(c.weight for c in curves) - 1.0) > 1e-9:
            raise ValueError("curves must be a non-empty list of Curve whose weights sum to 1")
        self.curves = tuple(curves)
        self.std = _positive(std, "std")
        self.panel_sigmas = _positive(panel_sigmas, "panel_sigmas")
        self._nodes, self._log_w = self._quadrature(order)
        reach = self._nodes.abs().amax(dim=0) + 6 * self.std
        super().__init__(name, _box(*(math.ceil(v * 10) / 10 for v in reach.tolist())))

    def _quadrature(self, order: int) -> tuple[Tensor, Tensor]:
        """Nodes ``c_j(t_i)`` and log-weights ``log(w_j p_j(t_i) dt_i)`` of the panelled quadrature."""
        xi, wi = np.polynomial.legendre.leggauss(order)
        nodes, log_w = [], []
        for curve in self.curves:
            a, b = curve.t_range
            t_fine = torch.linspace(a, b, 8193, dtype=torch.float64)
            speed = (curve.point(t_fine).diff(dim=0)).norm(dim=1)
            arc = torch.cat([torch.zeros(1, dtype=torch.float64), speed.cumsum(0)]).numpy()
            panels = max(1, math.ceil(arc[-1] / (self.panel_sigmas * self.std)))
            edges = np.interp(np.linspace(0.0, arc[-1], panels + 1), arc, t_fine.numpy())
            mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
            t = torch.from_numpy((mid[:, None] + half[:, None] * xi).ravel())
            w = torch.from_numpy((half[:, None] * wi).ravel())
            nodes.append(curve.point(t))
            log_w.append(w.log() + curve.t_log_density(t) + math.log(curve.weight))
        return torch.cat(nodes), torch.cat(log_w)

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        weights = torch.tensor([c.weight for c in self.curves], dtype=torch.float64)
        piece = torch.multinomial(weights, n, replacement=True, generator=generator) if n else weights[:0]
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        out = torch.empty(n, 2, dtype=torch.float64)
        for j, curve in enumerate(self.curves):
            sel = piece == j
            out[sel] = curve.point(curve.t_from_uniform(u[sel]))
        return out + self.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)

    def _log_prob(self, x: Tensor) -> Tensor:
        nodes, log_w = self._nodes.to(x.device), self._log_w.to(x.device)
        node_sq = nodes.pow(2).sum(1)
        chunk = max(1, 4_000_000 // len(nodes))
        out = []
        for xb in x.split(chunk):
            # |x - c|^2 expanded so the cross term is one matmul (float64: cancellation error ~1e-13)
            d2 = (xb.pow(2).sum(1, keepdim=True) + node_sq - 2 * xb @ nodes.T).clamp_min(0)
            out.append(torch.logsumexp(log_w - d2 / (2 * self.std**2), dim=1))
        return torch.cat(out) - _LOG_2PI - 2 * math.log(self.std)


class Pinwheel(Toy2D):
    r"""FFJORD's pinwheel: ``num_arms`` curved arms; sampling only (no tractable density).

    A feature :math:`f = (f_1, f_2) \sim \mathcal{N}((1, 0), \mathrm{diag}(\sigma_r^2, \sigma_t^2))` is
    rotated clockwise by :math:`\phi_k + \mathrm{rate}\, e^{f_1}` (arm angle :math:`\phi_k = 2\pi k / K`,
    arm ``k`` uniform) and scaled by 2, so :math:`|x| = 2|f|` and
    :math:`E|x|^2 = 4(1 + \sigma_r^2 + \sigma_t^2)`.
    """

    has_density = False

    def __init__(
        self,
        name: str,
        num_arms: int = 5,
        radial_std: float = 0.3,
        tangential_std: float = 0.1,
        rate: float = 0.25,
    ) -> None:
        if isinstance(num_arms, bool) or not isinstance(num_arms, int) or num_arms < 1:
            raise ValueError(f"num_arms must be a positive integer, got {num_arms!r}")
        self.num_arms = num_arms
        self.radial_std = _positive(radial_std, "radial_std")
        self.tangential_std = _positive(tangential_std, "tangential_std")
        self.rate = _positive(rate, "rate")
        super().__init__(name, _box(math.ceil(2 * (1 + 6 * self.radial_std) * 10) / 10))

    def _sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        f = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        f = f * torch.tensor([self.radial_std, self.tangential_std], dtype=torch.float64)
        f[:, 0] += 1.0
        k = torch.randint(self.num_arms, (n,), generator=generator).to(torch.float64)
        angle = 2 * math.pi * k / self.num_arms + self.rate * f[:, 0].exp()
        cos, sin = angle.cos(), angle.sin()
        return 2 * torch.stack([f[:, 0] * cos + f[:, 1] * sin, -f[:, 0] * sin + f[:, 1] * cos], dim=1)


# ---------------------------------------------------------------- registered instances


def _spiral_arm(turn: float, scale: float, sign: float = 1.0, weight: float = 1.0) -> Curve:
    """Arm ``sign * (-t cos t, t sin t) / scale`` with ``p(t) = 2t / T^2`` on ``[0, T]`` (FFJORD 2spirals)."""

    def point(t: Tensor) -> Tensor:
        return sign * torch.stack([-t * t.cos(), t * t.sin()], dim=-1) / scale

    return Curve(
        point=point,
        t_range=(0.0, turn),
        t_log_density=lambda t: (2 * t / turn**2).log(),
        t_from_uniform=lambda u: turn * u.sqrt(),
        weight=weight,
    )


def _uniform_curve(point: Callable[[Tensor], Tensor], a: float, b: float, weight: float = 1.0) -> Curve:
    return Curve(
        point=point,
        t_range=(a, b),
        t_log_density=lambda t: torch.full_like(t, -math.log(b - a)),
        t_from_uniform=lambda u: a + (b - a) * u,
        weight=weight,
    )


_SPIRAL_TURN = 3 * math.pi  # 540 degrees, as in FFJORD


@DATASETS.register("8gaussians", "8 Gaussians on a ring of radius 2*sqrt(2), std 1/(2*sqrt(2))")
def eight_gaussians(radius: float = 2 * math.sqrt(2), std: float = 1 / (2 * math.sqrt(2))) -> Toy2D:
    """NT-EBM / FFJORD's 8 Gaussians: means at ``radius * (cos(k pi/4), sin(k pi/4))``, common ``std``.

    Defaults are FFJORD's (means at distance 4 and std 0.5, all divided by sqrt(2)): radius 2.83, std 0.354.
    """
    angles = torch.arange(8, dtype=torch.float64) * math.pi / 4
    means = _positive(radius, "radius") * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture2D("8gaussians", means, std)


def _grid_means(side: int, spacing: float) -> Tensor:
    ticks = (torch.arange(side, dtype=torch.float64) - (side - 1) / 2) * spacing
    return torch.cartesian_prod(ticks, ticks)


@DATASETS.register("25gaussians", "5x5 grid of Gaussians, spacing 1/sqrt(2), std 0.05/(2*sqrt(2))")
def twentyfive_gaussians(spacing: float = 1 / math.sqrt(2), std: float = 0.05 / (2 * math.sqrt(2))) -> Toy2D:
    """The dissertation's (DDGAN / VAEBM) 25-Gaussians: means on ``{-2,...,2}^2 * spacing``, common ``std``.

    Defaults follow the usual recipe (grid {-4,-2,0,2,4}^2 with std 0.05, all divided by 2*sqrt(2)):
    spacing 0.707, std 0.0177 (very sharp modes: a hard mode-coverage test).
    """
    return GaussianMixture2D("25gaussians", _grid_means(5, _positive(spacing, "spacing")), std)


@DATASETS.register("25gaussians_vaebm", "5x5 grid of Gaussians, spacing 1, std 0.0839 (true test LL -1.10)")
def twentyfive_gaussians_vaebm(spacing: float = 1.0, std: float = 0.08388) -> Toy2D:
    """25 Gaussians on ``{-2,...,2}^2`` (spacing 1) with the ``std`` at which the true mean test
    log-likelihood, :math:`-\\log 25 - \\log(2\\pi\\sigma^2) - 1`, is the dissertation's -1.10 nats
    (Sec. 4.4.1; its data's spacing and std are not given: this std is solved from that number)."""
    return GaussianMixture2D("25gaussians_vaebm", _grid_means(5, _positive(spacing, "spacing")), std)


@DATASETS.register("9gaussians", "3x3 grid of Gaussians, spacing 2, std 0.25")
def nine_gaussians(spacing: float = 2.0, std: float = 0.25) -> Toy2D:
    """The dissertation's 9-Gaussian grid: means on ``{-1, 0, 1}^2 * spacing`` (2), common ``std`` (0.25)."""
    return GaussianMixture2D("9gaussians", _grid_means(3, _positive(spacing, "spacing")), std)


@DATASETS.register("rings", "4 concentric circles (radii 0.75..3) with isotropic noise 0.08")
def rings(radii: tuple[float, ...] = (0.75, 1.5, 2.25, 3.0), std: float = 0.08) -> Toy2D:
    """FFJORD's rings: equal-weight circles of radii 0.75, 1.5, 2.25, 3 plus isotropic N(0, 0.08^2) noise."""
    return Rings("rings", tuple(radii), std)


@DATASETS.register("checkerboard", "uniform on the 8 black squares of side 2 in [-4, 4]^2")
def checkerboard(scale: float = 1.0) -> Toy2D:
    """FFJORD's checkerboard: uniform on 8 squares of side ``2 * scale`` in ``[-4 scale, 4 scale]^2``."""
    return Checkerboard("checkerboard", scale)


@DATASETS.register("spiral", "one spiral arm (540 degrees, radius up to pi) with noise 0.1")
def spiral(std: float = 0.1) -> Toy2D:
    """One arm ``(-t cos t, t sin t) / 3``, ``p(t) = 2t / T^2`` on ``[0, 3 pi]``, plus N(0, std^2 I) noise.

    It reaches radius pi; std defaults to 0.1. FFJORD's arm adds a U(0, 0.5)/3 jitter as well, which is
    dropped here so that the density is a 1-D integral.
    """
    return NoisyCurves("spiral", [_spiral_arm(_SPIRAL_TURN, 3.0)], std)


@DATASETS.register("2spirals", "two interleaved spiral arms (radius up to pi) with noise 0.1")
def two_spirals(std: float = 0.1) -> Toy2D:
    """FFJORD's 2spirals without its uniform jitter: the ``spiral`` arm and its mirror ``-c(t)``, 1/2 each."""
    arms = [_spiral_arm(_SPIRAL_TURN, 3.0, sign, 0.5) for sign in (1.0, -1.0)]
    return NoisyCurves("2spirals", arms, std)


@DATASETS.register("swissroll", "Swiss roll (t cos t, t sin t)/5, t ~ U(1.5 pi, 4.5 pi), noise 0.2")
def swissroll(std: float = 0.2) -> Toy2D:
    """FFJORD's Swiss roll (sklearn ``make_swiss_roll(noise=1)[:, [0, 2]] / 5``), in distribution exactly.

    ``c(t) = (t cos t, t sin t) / 5`` with ``t ~ U(1.5 pi, 4.5 pi)`` (radius 0.94 to 2.83) plus N(0, 0.2^2 I).
    """

    def point(t: Tensor) -> Tensor:
        return torch.stack([t * t.cos(), t * t.sin()], dim=-1) / 5

    return NoisyCurves("swissroll", [_uniform_curve(point, 1.5 * math.pi, 4.5 * math.pi)], std)


@DATASETS.register("moons", "two interleaved half circles (radius 2) with noise 0.2")
def moons(std: float = 0.2) -> Toy2D:
    """FFJORD's moons: sklearn ``make_moons(noise=0.1) * 2 + (-1, -0.2)``, with iid angles.

    Upper arc ``2 (cos t, sin t) + (-1, -0.2)``, lower arc ``(1 - 2 cos t, 0.8 - 2 sin t)``, ``t ~ U(0, pi)``,
    1/2 each, plus N(0, 0.2^2 I). (sklearn spaces the angles evenly instead of drawing them.)
    """

    def upper(t: Tensor) -> Tensor:
        return torch.stack([2 * t.cos() - 1, 2 * t.sin() - 0.2], dim=-1)

    def lower(t: Tensor) -> Tensor:
        return torch.stack([1 - 2 * t.cos(), 0.8 - 2 * t.sin()], dim=-1)

    curves = [_uniform_curve(upper, 0.0, math.pi, 0.5), _uniform_curve(lower, 0.0, math.pi, 0.5)]
    return NoisyCurves("moons", curves, std)


@DATASETS.register("pinwheel", "FFJORD's 5-arm pinwheel (sampling only, no density)")
def pinwheel(
    num_arms: int = 5, radial_std: float = 0.3, tangential_std: float = 0.1, rate: float = 0.25
) -> Toy2D:
    """FFJORD's pinwheel (5 arms, radial std 0.3, tangential std 0.1, rate 0.25, scale 2); no density."""
    return Pinwheel("pinwheel", num_arms, radial_std, tangential_std, rate)


TOY_NAMES: tuple[str, ...] = (
    "8gaussians",
    "25gaussians",
    "25gaussians_vaebm",
    "9gaussians",
    "rings",
    "checkerboard",
    "spiral",
    "2spirals",
    "swissroll",
    "moons",
    "pinwheel",
)
