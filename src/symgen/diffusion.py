r"""The discrete Gaussian diffusion process of DDPM and denoising diffusion GANs.

Dissertation Sec. 2.4 (Ho et al., 2020) and Sec. 6.3.3. A :class:`DiffusionSchedule` holds the cumulative
signal levels :math:`\bar\alpha_0 = 1 > \bar\alpha_1 > \dots > \bar\alpha_T` and gives

* the forward step :math:`q(x_t | x_{t-1}) = \mathcal N(\sqrt{1-\beta_t}\,x_{t-1}, \beta_t I)`, Eq. (2.44),
  with :math:`\beta_t = 1 - \bar\alpha_t / \bar\alpha_{t-1}`;
* the marginal :math:`q(x_t | x_0) = \mathcal N(\sqrt{\bar\alpha_t}\,x_0, (1-\bar\alpha_t) I)`, Eq. (2.46);
* the Gaussian posterior :math:`q(x_{t-1} | x_t, x_0) = \mathcal N(\tilde\mu_t(x_t, x_0), \tilde\beta_t I)`,
  Eqs. (2.50)-(2.51);
* the pair :math:`(x_{t-1}, x_t)` of Algorithm 1, step 2 (Eq. (2.46) then Eq. (2.44)).

:func:`vp_schedule` builds the discretised variance-preserving SDE of Sec. 6.3.3 for any ``T``:
:math:`1 - \bar\alpha_t = \sigma^2(t/T)` with :math:`\sigma^2(t') = 1 - e^{-\beta_{min} t' -
\frac12(\beta_{max}-\beta_{min}) t'^2}` (Eq. (6.14)), so :math:`\beta_t` is Eq. (6.15). With ``T = 1000`` it
is
DDPM's linear schedule up to O(1/T). :meth:`DiffusionSchedule.respace` keeps a subset of the levels: the
strided sampler of a many-step model (Sec. 2.4.4; Nichol & Dhariwal, 2021, Sec. 4) is then the same
posterior sampling on the coarser schedule.

Time indices are integers ``t`` in ``1..T`` (``0`` is the data); tensors of them have shape ``(B,)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["DiffusionSchedule", "vp_schedule", "vp_variance"]


def vp_variance(t: Tensor | float, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    r"""Variance :math:`\sigma^2(t') = 1 - \exp(-\beta_{min} t' - \frac12(\beta_{max}-\beta_{min}) t'^2)` of
    the VP SDE's marginal at normalised time ``t'`` in ``[0, 1]`` (dissertation Eq. (6.14))."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return -torch.expm1(-beta_min * t - 0.5 * (beta_max - beta_min) * t.square())


class DiffusionSchedule:
    r"""A discrete diffusion with levels :math:`\bar\alpha_0 = 1, \dots, \bar\alpha_T` (strictly decreasing).

    Arguments:
        alphas_bar: ``(T,)`` values :math:`\bar\alpha_1 > \dots > \bar\alpha_T` in ``(0, 1)``.
        times: ``(T,)`` integer labels of the levels, passed to networks as their time input (default
            ``1..T``; a respaced schedule keeps the labels of the levels it kept).
    """

    def __init__(self, alphas_bar: Tensor | Sequence[float], times: Tensor | Sequence[int] | None = None):
        ab = torch.as_tensor(alphas_bar, dtype=torch.float64).flatten()
        if ab.numel() < 1:
            raise ValueError("alphas_bar must hold at least one level (T >= 1)")
        full = torch.cat([torch.ones(1, dtype=torch.float64), ab])
        if not (bool((ab > 0).all()) and bool((full[1:] < full[:-1]).all())):
            raise ValueError("alphas_bar must be strictly decreasing in (0, 1)")
        self.T = int(ab.numel())
        self.alphas_bar = full.float()  # (T + 1,), index 0 is the data
        self.betas = (1 - full[1:] / full[:-1]).float()  # (T,), beta_t at index t - 1
        self.times = (
            torch.arange(1, self.T + 1) if times is None else torch.as_tensor(times, dtype=torch.long)
        )
        if self.times.shape != (self.T,):
            raise ValueError(f"times must have shape ({self.T},), got {tuple(self.times.shape)}")
        # posterior coefficients of Eq. (2.51), index t - 1
        prev = full[:-1]
        self._post_x0 = (prev.sqrt() * (1 - full[1:] / prev) / (1 - full[1:])).float()
        self._post_xt = ((full[1:] / prev).sqrt() * (1 - prev) / (1 - full[1:])).float()
        self._post_var = ((1 - prev) / (1 - full[1:]) * (1 - full[1:] / prev)).float()

    # ------------------------------------------------------------------ helpers
    def _check_t(self, t: Tensor, x: Tensor, low: int = 1) -> Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],) or t.dtype.is_floating_point:
            raise ValueError(f"t must be integers of shape ({x.shape[0]},), got {t.dtype} {tuple(t.shape)}")
        if bool((t < low).any()) or bool((t > self.T).any()):
            raise ValueError(f"t must lie in {low}..{self.T}, got values in {int(t.min())}..{int(t.max())}")
        return t.long()

    def _coef(self, values: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """``values[t]`` as ``(B, 1, ..., 1)`` broadcastable against ``x``."""
        return values.to(x.device, x.dtype)[t].view(-1, *([1] * (x.dim() - 1)))

    @staticmethod
    def _noise(x: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
        if noise is not None:
            return noise
        return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)

    def sample_t(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None):
        """``n`` time indices uniform on ``1..T`` (Algorithm 1, step 1), shape ``(n,)``."""
        return torch.randint(1, self.T + 1, (n,), generator=generator).to(device)

    # ------------------------------------------------------------------ forward process
    def q_sample(
        self, x0: Tensor, t: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        r""":math:`x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1-\bar\alpha_t}\,\epsilon` (Eq. (2.46)); ``t`` in
        ``0..T``."""
        t = self._check_t(t, x0, low=0)
        ab = self._coef(self.alphas_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * self._noise(x0, noise, generator)

    def q_step(
        self, x_prev: Tensor, t: Tensor, noise: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        r""":math:`x_t = \sqrt{1-\beta_t}\,x_{t-1} + \sqrt{\beta_t}\,\epsilon` (Eq. (2.44)); ``t`` in
        ``1..T``."""
        t = self._check_t(t, x_prev)
        beta = self._coef(self.betas, t - 1, x_prev)
        return (1 - beta).sqrt() * x_prev + beta.sqrt() * self._noise(x_prev, noise, generator)

    def q_pair(
        self, x0: Tensor, t: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""``(x_{t-1}, x_t)``: :math:`x_{t-1} \sim q(x_{t-1}|x_0)`, then :math:`x_t \sim q(x_t|x_{t-1})`
        (Algorithm 1, step 2; Eq. (6.4))."""
        t = self._check_t(t, x0)
        x_prev = self.q_sample(x0, t - 1, generator=generator)
        return x_prev, self.q_step(x_prev, t, generator=generator)

    # ------------------------------------------------------------------ posterior
    def posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""Mean :math:`\tilde\mu_t(x_t, x_0)` and variance :math:`\tilde\beta_t` (broadcastable) of
        :math:`q(x_{t-1}|x_t, x_0)` (Eq. (2.51))."""
        t = self._check_t(t, xt)
        mean = self._coef(self._post_x0, t - 1, xt) * x0 + self._coef(self._post_xt, t - 1, xt) * xt
        return mean, self._coef(self._post_var, t - 1, xt)

    def posterior_sample(
        self,
        x0: Tensor,
        xt: Tensor,
        t: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r""":math:`x_{t-1} \sim q(x_{t-1}|x_t, x_0)` (Eq. (2.50); Algorithm 1 step 4, Algorithm 2 step 4).
        At ``t = 1`` the variance is 0 and the sample is ``x0``."""
        mean, var = self.posterior(x0, xt, t)
        return mean + var.sqrt() * self._noise(xt, noise, generator)

    def predict_x0(self, xt: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        r""":math:`x_0 = (x_t - \sqrt{1-\bar\alpha_t}\,\epsilon) / \sqrt{\bar\alpha_t}` (Eq. (6.9))."""
        t = self._check_t(t, xt)
        ab = self._coef(self.alphas_bar, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def predict_eps(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        r"""The noise of Eq. (6.8) that takes ``x0`` to ``xt``: :math:`(x_t - \sqrt{\bar\alpha_t} x_0) /
        \sqrt{1-\bar\alpha_t}`."""
        t = self._check_t(t, xt)
        ab = self._coef(self.alphas_bar, t, xt)
        return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()

    # ------------------------------------------------------------------ respacing
    def respace(self, steps: int) -> DiffusionSchedule:
        r"""The schedule restricted to ``steps`` levels evenly spaced in ``1..T`` (always keeping ``T``);
        its ``times`` are the original indices, and its :math:`\beta` s follow from the kept
        :math:`\bar\alpha` s (Nichol & Dhariwal, 2021, Sec. 4)."""
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.T:
            raise ValueError(f"steps must be an integer in 1..{self.T}, got {steps!r}")
        keep = torch.linspace(self.T, 0, steps + 1)[:-1].round().long().flip(0)
        keep = torch.unique(keep.clamp(min=1))
        return DiffusionSchedule(self.alphas_bar.double()[keep], self.times[keep - 1])

    def __repr__(self) -> str:
        return f"DiffusionSchedule(T={self.T}, alpha_bar_T={float(self.alphas_bar[-1]):.3g})"


def vp_schedule(T: int = 4, beta_min: float = 0.1, beta_max: float = 20.0) -> DiffusionSchedule:
    r"""The discretised VP SDE of dissertation Sec. 6.3.3: :math:`\bar\alpha_t = 1 - \sigma^2(t/T)`, so
    :math:`\beta_t = 1 - e^{-\beta_{min}/T - \frac12(\beta_{max}-\beta_{min})(2t-1)/T^2}` (Eq. (6.15)).

    Raises ``ValueError`` naming ``T`` (an integer >= 1) or ``beta_min`` / ``beta_max``
    (``0 <= beta_min < beta_max``)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T (number of diffusion steps) must be an integer >= 1, got {T!r}")
    for key, v in (("beta_min", beta_min), ("beta_max", beta_max)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{key} must be a finite number >= 0, got {v!r}")
    if not beta_min < beta_max:
        raise ValueError(f"beta_min must be < beta_max, got beta_min={beta_min}, beta_max={beta_max}")
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    return DiffusionSchedule(1 - vp_variance(t, float(beta_min), float(beta_max)))
