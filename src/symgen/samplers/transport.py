r"""Neural transport: run any kernel in the latent space of a flow or generator, push samples forward.

For a map :math:`x = T(z)` from a simple latent space, sampling the latent density and pushing the
chain forward samples the data-space target while the chain mixes in a (nearly) unimodal space
(Hoffman et al., 2019, "NeuTra-lizing bad geometry in HMC"; NT-EBM Sec. 3.4). Two targets:

* a data-space log-density ``log_prob(x)`` -- the latent density is
  :math:`\log p(T(z)) + \log|\det \partial T/\partial z|` (needs ``T`` to return ``(x, ladj)``);
* an exponential tilt ``neg_energy`` ``f`` of the map's own pushforward -- the latent density is
  :math:`\log q_0(z) + f(T(z))` (NT-EBM Eq. (9), dissertation Eq. (4.8)); no Jacobian, no inverse, so
  ``T`` may be any generator, e.g. :class:`GeneratorTransport` over ``(z, eps)`` (NT-EBM Sec. 3.6 and
  appendix A.2) or VAEBM's ``(eps_x, eps_z)`` reparameterization (dissertation Eq. (4.18)-(4.19)).

``transform`` may be a flow distribution with ``forward(z) -> (x, ladj)`` and ``inverse(x) -> (z, ladj)``
(``symgen.flows``: ``dist = flow()``), or any callable ``z -> x`` or ``z -> (x, ladj)``.

Hand-written: pyro's NeuTraReparam is tied to pyro models and one-chain MCMC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from symgen.densities import LogDensity, check_log_prob_output, standard_normal_log_prob
from symgen.samplers.base import ChainState, Kernel
from symgen.samplers.chain import Trace, run_chain

__all__ = ["NeuralTransport", "GeneratorTransport"]


class GeneratorTransport:
    r"""A generator ``x = g(z) + sigma * eps`` as a map from one flat latent ``u = (z, eps)`` to ``x``.

    NT-EBM Sec. 3.6 / appendix A.2 Eq. (14): re-defining the latent as :math:`(z, \epsilon)` makes the
    generator a deterministic map from white noise, so an EBM tilt of it can be sampled in ``u``-space
    with :func:`~symgen.densities.tilted_latent_log_prob`. ``u`` has shape ``(B, d_z + d_x)``.

    Args:
        generator: ``g``, ``(B, *latent_shape) -> (B, *event_shape)``.
        latent_shape: shape of one ``z``.
        event_shape: shape of one ``x``.
        sigma: decoder noise standard deviation (``0`` makes ``eps`` inert).
    """

    def __init__(
        self,
        generator: Callable[[Tensor], Tensor],
        latent_shape: tuple[int, ...],
        event_shape: tuple[int, ...],
        sigma: float,
    ) -> None:
        if not callable(generator):
            raise ValueError("generator must be a callable z -> x")
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0; got {sigma}")
        self.generator = generator
        self.latent_shape = tuple(latent_shape)
        self.event_shape = tuple(event_shape)
        self.sigma = float(sigma)
        self.d_z = int(torch.Size(self.latent_shape).numel())
        self.d_x = int(torch.Size(self.event_shape).numel())

    @property
    def dim(self) -> int:
        """Dimension of the flat latent ``u = (z, eps)``."""
        return self.d_z + self.d_x

    def split(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``u (B, d_z + d_x) -> (z (B, *latent_shape), eps (B, *event_shape))``."""
        if u.dim() != 2 or u.shape[1] != self.dim:
            raise ValueError(f"u must have shape (B, {self.dim}); got {tuple(u.shape)}")
        b = u.shape[0]
        return u[:, : self.d_z].reshape(b, *self.latent_shape), u[:, self.d_z :].reshape(b, *self.event_shape)

    def join(self, z: Tensor, eps: Tensor) -> Tensor:
        """Inverse of :meth:`split`."""
        return torch.cat([z.reshape(z.shape[0], -1), eps.reshape(eps.shape[0], -1)], dim=1)

    def __call__(self, u: Tensor) -> Tensor:
        z, eps = self.split(u)
        return self.generator(z) + self.sigma * eps


def _forward_of(transform: Any) -> Callable[[Tensor], Any]:
    if hasattr(transform, "forward") and hasattr(transform, "inverse"):
        return transform.forward
    if callable(transform):
        return transform
    raise ValueError("transform must have forward/inverse methods or be a callable z -> x or z -> (x, ladj)")


class NeuralTransport:
    """Sample a target through a latent map ``x = T(z)``: run a kernel on ``z``, push samples to ``x``.

    Args:
        transform: a flow distribution (``forward``/``inverse`` returning ``(value, ladj)``) or a
            callable ``z -> x`` / ``z -> (x, ladj)``.
        log_prob: data-space target ``log p(x)`` (general neural transport; ``T`` must give ``ladj``).
        neg_energy: tilt ``f(x)`` of ``T``'s pushforward (NT-EBM Eq. (9)); exactly one of
            ``log_prob`` / ``neg_energy``.
        base_log_prob: ``log q0(z)`` for the tilted target; default standard normal.
    """

    def __init__(
        self,
        transform: Any,
        log_prob: LogDensity | None = None,
        neg_energy: Callable[[Tensor], Tensor] | None = None,
        base_log_prob: LogDensity | None = None,
    ) -> None:
        if (log_prob is None) == (neg_energy is None):
            raise ValueError("give exactly one of log_prob (data-space target) or neg_energy (tilt)")
        self.transform = transform
        self._forward = _forward_of(transform)
        self.target_log_prob = log_prob
        self.neg_energy = neg_energy
        self.base_log_prob = standard_normal_log_prob if base_log_prob is None else base_log_prob

    def _map(self, z: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self._forward(z)
        if isinstance(out, tuple):
            return out[0], out[1]
        return out, None

    def push_forward(self, z: Tensor) -> Tensor:
        """``x = T(z)`` for ``z`` of shape ``(B, *latent)``."""
        return self._map(z)[0]

    def push_forward_trajectory(self, zs: Tensor) -> Tensor:
        """Map a latent trajectory ``(T, B, *latent)`` to data space ``(T, B, *event)`` without gradients."""
        with torch.no_grad():
            x = self.push_forward(zs.reshape(-1, *zs.shape[2:]))
        return x.reshape(zs.shape[0], zs.shape[1], *x.shape[1:])

    def pull_back(self, x: Tensor) -> Tensor:
        """``z = T^{-1}(x)``; needs a transform with an ``inverse`` method."""
        if not hasattr(self.transform, "inverse"):
            raise ValueError("pull_back needs a transform with an inverse(x) -> (z, ladj) method")
        out = self.transform.inverse(x)
        return out[0] if isinstance(out, tuple) else out

    def latent_log_prob(self, z: Tensor) -> Tensor:
        """Unnormalized latent log-density ``(B,)``: ``log p(T(z)) + ladj(z)`` or ``log q0(z) + f(T(z))``."""
        x, ladj = self._map(z)
        if self.neg_energy is not None:
            return self.base_log_prob(z) + self.neg_energy(x).reshape(z.shape[0])
        if ladj is None:
            raise ValueError(
                "a data-space log_prob target needs transform(z) to return (x, ladj); "
                "for a tilt of the transform's own density pass neg_energy instead"
            )
        lp = check_log_prob_output(self.target_log_prob(x), x, "log_prob")
        return lp + ladj.reshape(z.shape[0])

    def sample(
        self, kernel: Kernel, z0: Tensor | ChainState, n_steps: int, **run_kwargs: Any
    ) -> tuple[Tensor, Tensor, Trace]:
        """Run ``kernel`` on :meth:`latent_log_prob` from ``z0`` (``run_chain`` options pass through).

        Returns:
            ``(x, z, trace)``: pushed-forward final samples, final latents, and the latent-space trace
            (use :meth:`push_forward_trajectory` on ``trace.positions`` for data-space trajectories).
        """
        z, trace = run_chain(kernel, self.latent_log_prob, z0, n_steps, **run_kwargs)
        differentiable = run_kwargs.get("differentiable")
        if kernel.differentiable if differentiable is None else differentiable:
            return self.push_forward(z), z, trace
        with torch.no_grad():
            x = self.push_forward(z)
        return x, z, trace
