r"""Deterministic gradient flow ``x'(t) = grad log p(x) = -grad E(x)`` as an invertible generator.

Dissertation Sec. 5.3: replacing short-run Langevin by the noise-free ODE (Eq. (5.5))

.. math:: x'(t) = -\nabla_x E_\theta(x(t)), \quad x(0) = x_0, \quad t \in [0, T]

gives an invertible map :math:`x_T = G^T_\theta(x_0)` (Eq. (5.6)) whose density follows from the
instantaneous change of variables (Chen et al., 2018), Eq. (5.7):

.. math:: \log p(x_T) = \log p_0(x_0) + \int_0^T \operatorname{tr}\,\nabla^2_{x} E_\theta(x(t))\,dt.

The ODE is solved with ``torchdiffeq.odeint`` (default ``dopri5``, ``T = 0.2``, tolerances ``1e-5``: the
dissertation's 2-D settings, Sec. 5.6). The trace is exact (``d`` extra backward passes, fine in low
dimension) or the Hutchinson estimate :math:`\mathbb E_v[v^\top \nabla^2 E\, v]` with Rademacher probes
held fixed over one solve (FFJORD, Grathwohl et al., 2019). Symgen passes the *log*-density
``log_prob = -E``, so the velocity is ``grad log_prob``.

Only the ODE right-hand side is hand-written; integration is torchdiffeq's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint

from symgen.densities import LogDensity, chain_sum, check_log_prob_output, standard_normal_log_prob

__all__ = ["GradientFlow"]

_TRACE_KINDS = ("exact", "hutchinson")


class GradientFlow:
    """The gradient-flow ODE of dissertation Eq. (5.5)-(5.7), forward, reverse and with log-densities.

    Args:
        log_prob: ``log p = -E``, ``(B, *event) -> (B,)``; the velocity is its gradient.
        t_end: integration horizon ``T``.
        method: torchdiffeq solver name (``"dopri5"``, ``"rk4"``, ``"euler"``...).
        rtol, atol: solver tolerances (adaptive solvers).
        trace: ``"exact"`` or ``"hutchinson"`` estimator of ``tr(Hessian)``.
        n_probes: Hutchinson probes per chain.
        options: extra ``odeint`` options (e.g. ``{"step_size": 0.01}`` for fixed-step solvers).
        differentiable: keep the graph (backprop through the solver to ``x0`` and parameters).
        generator: optional ``torch.Generator`` for the Hutchinson probes.
    """

    def __init__(
        self,
        log_prob: LogDensity,
        t_end: float = 0.2,
        method: str = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        trace: str = "exact",
        n_probes: int = 1,
        options: dict[str, Any] | None = None,
        differentiable: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if not callable(log_prob):
            raise ValueError("log_prob must be a callable x -> (B,)")
        if not t_end > 0:
            raise ValueError(f"t_end must be positive; got {t_end}")
        if not (rtol > 0 and atol > 0):
            raise ValueError(f"rtol and atol must be positive; got {rtol}, {atol}")
        if trace not in _TRACE_KINDS:
            raise ValueError(f"trace must be one of {_TRACE_KINDS}; got {trace!r}")
        if not isinstance(n_probes, int) or n_probes < 1:
            raise ValueError(f"n_probes must be a positive int; got {n_probes!r}")
        self.log_prob_fn = log_prob
        self.t_end = float(t_end)
        self.method = method
        self.rtol, self.atol = rtol, atol
        self.trace = trace
        self.n_probes = n_probes
        self.options = options
        self.differentiable = differentiable
        self.generator = generator
        self.nfe = 0

    # ----------------------------------------------------------------------------------------- dynamics
    def _leaf(self, x: Tensor) -> Tensor:
        return x if (self.differentiable and x.requires_grad) else x.detach().requires_grad_(True)

    def velocity(self, x: Tensor) -> Tensor:
        """``grad log p(x)`` (= ``-grad E``), shape of ``x``."""
        with torch.enable_grad():
            xr = self._leaf(x)
            lp = check_log_prob_output(self.log_prob_fn(xr), xr)
            (v,) = torch.autograd.grad(lp.sum(), xr, create_graph=self.differentiable)
        return v

    def _divergence(self, v: Tensor, xr: Tensor, probes: Tensor | None) -> Tensor:
        """``div v = tr(grad^2 log p)`` per chain, exact or by Hutchinson with fixed ``probes``."""
        b = xr.shape[0]
        if probes is None:
            vf = v.reshape(b, -1)
            div = torch.zeros(b, dtype=v.dtype, device=v.device)
            for i in range(vf.shape[1]):
                (row,) = torch.autograd.grad(
                    vf[:, i].sum(), xr, retain_graph=True, create_graph=self.differentiable
                )
                div = div + row.reshape(b, -1)[:, i]
            return div
        est = torch.zeros(b, dtype=v.dtype, device=v.device)
        for e in probes:
            (vjp,) = torch.autograd.grad(
                (v * e).sum(), xr, retain_graph=True, create_graph=self.differentiable
            )
            est = est + chain_sum(vjp * e)
        return est / probes.shape[0]

    def _augmented(self, probes: Tensor | None):
        def rhs(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            self.nfe += 1
            x = state[0]
            with torch.enable_grad():
                xr = self._leaf(x)
                lp = check_log_prob_output(self.log_prob_fn(xr), xr)
                (v,) = torch.autograd.grad(lp.sum(), xr, create_graph=True)
                div = self._divergence(v, xr, probes)
            if not self.differentiable:
                v, div = v.detach(), div.detach()
            # d/dt log p(x(t)) = -div v = tr(Hessian of E)  (dissertation Eq. (5.7))
            return v, -div

        return rhs

    def _plain(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        v = self.velocity(x)
        return v if self.differentiable else v.detach()

    def _times(self, x: Tensor, reverse: bool) -> Tensor:
        ts = [self.t_end, 0.0] if reverse else [0.0, self.t_end]
        return torch.tensor(ts, dtype=x.dtype, device=x.device)

    def _check(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() < 2 or not x.is_floating_point():
            raise ValueError("x must be a floating-point tensor of shape (B, *event)")
        return x if self.differentiable else x.detach()

    def _solve(self, x: Tensor, reverse: bool) -> Tensor:
        x = self._check(x)
        self.nfe = 0
        with torch.set_grad_enabled(self.differentiable):
            out = odeint(
                self._plain,
                x,
                self._times(x, reverse),
                rtol=self.rtol,
                atol=self.atol,
                method=self.method,
                options=self.options,
            )
        return out[-1]

    def _solve_with_delta(self, x: Tensor, reverse: bool) -> tuple[Tensor, Tensor]:
        x = self._check(x)
        self.nfe = 0
        probes = None
        if self.trace == "hutchinson":
            shape = (self.n_probes, *x.shape)
            probes = torch.randint(0, 2, shape, generator=self.generator, device=x.device).to(x.dtype) * 2 - 1
        acc0 = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        with torch.set_grad_enabled(self.differentiable):
            xs, accs = odeint(
                self._augmented(probes),
                (x, acc0),
                self._times(x, reverse),
                rtol=self.rtol,
                atol=self.atol,
                method=self.method,
                options=self.options,
            )
        # the accumulator integrates d log p/dt along the direction of integration
        delta = -accs[-1] if reverse else accs[-1]
        return xs[-1], delta

    # ------------------------------------------------------------------------------------------- public
    def forward(self, x0: Tensor) -> Tensor:
        """``x_T = G^T(x_0)`` (dissertation Eq. (5.6))."""
        return self._solve(x0, reverse=False)

    def reverse(self, x_t: Tensor) -> Tensor:
        """``x_0 = (G^T)^{-1}(x_T)``: the same ODE integrated from ``T`` back to 0."""
        return self._solve(x_t, reverse=True)

    def forward_with_delta(self, x0: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_T, delta)`` with ``delta = log p_T(x_T) - log p_0(x_0) = int_0^T tr(grad^2 E) dt``, (B,)."""
        return self._solve_with_delta(x0, reverse=False)

    def reverse_with_delta(self, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_0, delta)`` for ``x_T``, with the same ``delta = log p_T(x_T) - log p_0(x_0)``."""
        return self._solve_with_delta(x_t, reverse=True)

    def log_prob(self, x: Tensor, base_log_prob: LogDensity | None = None) -> Tensor:
        """Log-density of the flow's samples at ``x`` (Eq. (5.7)): ``log p_0(x_0) + delta`` ``(B,)``.

        ``base_log_prob`` is the density of ``x_0`` (default: standard normal, as in the dissertation).
        """
        base = standard_normal_log_prob if base_log_prob is None else base_log_prob
        x0, delta = self.reverse_with_delta(x)
        return base(x0) + delta
