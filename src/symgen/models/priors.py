r"""Latent priors :math:`p_\alpha(z)` of the latent-variable model family, each with its own ML update.

Three priors share one small interface (``log_prob``, ``sample``, ``loss``):

* :class:`GaussianPrior` -- fixed :math:`\mathcal{N}(0, I_d)`; the model is ABP (Han et al. 2017).
* :class:`FlowPrior` -- a normalizing flow :math:`z = f_\alpha(z_0)`, :math:`z_0 \sim \mathcal{N}(0, I)`,
  with exact density (Eqs. (2), (5) of the LFBM paper) and exact ancestral sampling; its update is
  maximum likelihood on the inferred latents, Eq. (6). With Langevin inference this is LFBM.
* :class:`EBMPrior` -- :math:`p_\alpha(z) \propto \exp(f_\alpha(z))\,\mathcal{N}(z; 0, I)`, sampled by
  short-run Langevin from :math:`\mathcal{N}(0, I)`; its update is the contrastive loss
  :math:`\mathbb{E}_{\hat p_\alpha}[f_\alpha(z)] - \mathbb{E}_{\text{posterior}}[f_\alpha(z)]`, whose
  bias from MLE is the extra KL term of Eq. (12). This is LEBM (Pang et al. 2020).

``loss(z_post)`` returns the scalar to minimise for the prior's own optimizer (``None`` when the prior has
no parameters) and a dict of floats to log. The flow and the Langevin sampler come from
:mod:`symgen.flows` and :mod:`symgen.samplers`; the interface is hand-written because it is specific to
this model family.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.densities import standard_normal_log_prob
from symgen.flows import build_flow, standardized
from symgen.nets.energy import LatentEnergy
from symgen.samplers import Langevin, run_chain

__all__ = [
    "randn_on",
    "init_latent_flow",
    "LatentPrior",
    "GaussianPrior",
    "FlowPrior",
    "EBMPrior",
    "build_prior",
]


def randn_on(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal noise on ``device`` drawn with ``generator``, even when it lives on another device."""
    if generator is None or generator.device == device:
        return torch.randn(shape, generator=generator, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def init_latent_flow(flow: nn.Module, latent_dim: int, n: int = 512) -> nn.Module:
    """Run a latent flow's data-dependent init (ActNorm) on fixed :math:`\\mathcal{N}(0, I)` draws.

    In latent space the first "data" a flow sees are the chains' :math:`\\mathcal{N}(0, I)` starts; doing
    it at construction keeps ``forward``/``inverse`` consistent from the first call on.
    """
    if hasattr(flow, "initialize"):
        flow.initialize(torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(0)))
    return flow


class LatentPrior(nn.Module):
    """Interface of a prior over flat latents ``(B, d)``."""

    exact_sampling: ClassVar[bool] = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = latent_dim
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # tracks the device

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws of :math:`\\mathcal{N}(0, I_d)` on the prior's device."""
        return randn_on((n, self.latent_dim), generator, self.device)

    def log_prob(self, z: Tensor) -> Tensor:
        """:math:`\\log p_\\alpha(z)` per row, shape ``(B,)`` (up to a constant for the EBM)."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latents from the prior, shape ``(n, d)``."""
        raise NotImplementedError

    def from_base(self, z0: Tensor) -> Tensor:
        """Map base noise :math:`z_0 \\sim \\mathcal{N}(0, I)` to latent space (identity unless a flow)."""
        return z0

    def to_base(self, z: Tensor) -> Tensor:
        """Inverse of :meth:`from_base` (identity unless a flow)."""
        return z

    def loss(self, z_post: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, dict]:
        """Loss whose gradient is the prior's ML update given posterior latents ``z_post``."""
        raise NotImplementedError


class GaussianPrior(LatentPrior):
    """Fixed :math:`\\mathcal{N}(0, I_d)` (the ABP model); nothing to learn."""

    def log_prob(self, z: Tensor) -> Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.noise(n, generator)

    def loss(self, z_post: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, dict]:
        return None, {}


class FlowPrior(LatentPrior):
    r"""Normalizing-flow prior (Eq. (1)-(2) of the LFBM paper); ML update of Eq. (6).

    With ``standardize`` (default) the flow's input is standardised (:func:`symgen.flows.standardized`):
    initialised with the flow on :math:`\\mathcal{N}(0, I)` draws, then re-fitted once to the first batch
    of posterior latents that :meth:`loss` receives (pooled over data-parallel ranks). The buffer
    ``latents_fitted`` records that re-fit, so a resumed run does not repeat it.

    Arguments:
        latent_dim: size ``d`` of the latent vector.
        flow: registered flow name for :func:`symgen.flows.build_flow` (e.g. ``"glow_vector"``).
        standardize: standardise the latents in front of the flow.
        flow_kwargs: keyword arguments of that flow (depth, hidden width...).
    """

    def __init__(
        self, latent_dim: int, flow: str = "glow_vector", standardize: bool = True, **flow_kwargs: Any
    ) -> None:
        super().__init__(latent_dim)
        self.flow_name = flow
        self.standardize = bool(standardize)
        built = build_flow(flow, event_shape=(latent_dim,), **flow_kwargs)
        self.flow = init_latent_flow(standardized(built) if self.standardize else built, latent_dim)
        if self.standardize:
            self.register_buffer("latents_fitted", torch.tensor(False))

    def log_prob(self, z: Tensor) -> Tensor:
        return self.flow().log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return self.from_base(self.noise(n, generator))

    def from_base(self, z0: Tensor) -> Tensor:
        """Push base noise through the flow, :math:`z = f_\\alpha(z_0)` (Eq. (1))."""
        return self.flow().forward(z0)[0]

    def to_base(self, z: Tensor) -> Tensor:
        """Map latents to the flow's base space, :math:`z_0 = f_\\alpha^{-1}(z)`."""
        return self.flow().inverse(z)[0]

    def loss(self, z_post: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, dict]:
        if self.standardize and not bool(self.latents_fitted):
            self.flow.standardizer.fit(z_post.detach(), all_ranks=True)
            self.latents_fitted.fill_(True)
        nll = -self.log_prob(z_post.detach()).mean()
        return nll, {"prior_nll": float(nll.detach())}


class EBMPrior(LatentPrior):
    """Latent EBM prior :math:`\\exp(f_\\alpha(z))\\,\\mathcal{N}(z;0,I)` sampled by short-run Langevin.

    Arguments:
        latent_dim: size ``d`` of the latent vector.
        hidden, layers, activation: the energy MLP (:class:`symgen.nets.LatentEnergy`).
        steps, step_size, noise: short-run Langevin for prior samples, in the LFBM/LEBM convention
            :math:`z \\leftarrow z + \\frac{s^2}{2}\\nabla\\log p + s\\,\\epsilon` (Pang et al.: 60, 0.4).
        energy_l2: weight of an L2 penalty on :math:`f` at positive and negative samples (0 disables;
            a common stabiliser for EBM training).
    """

    exact_sampling: ClassVar[bool] = False

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 200,
        layers: int = 2,
        activation: str = "lrelu",
        steps: int = 60,
        step_size: float = 0.4,
        noise: bool = True,
        energy_l2: float = 0.0,
    ) -> None:
        super().__init__(latent_dim)
        if steps < 0 or step_size <= 0:
            raise ValueError(f"EBM prior needs steps >= 0 and step_size > 0, got {steps!r}, {step_size!r}")
        self.f = LatentEnergy(latent_dim, hidden, layers, activation)
        self.steps, self.step_size, self.with_noise, self.energy_l2 = steps, step_size, noise, energy_l2

    def log_prob(self, z: Tensor) -> Tensor:
        return self.f(z) + standard_normal_log_prob(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Short-run Langevin from :math:`\\mathcal{N}(0, I)` (no gradient flows out of the chain)."""
        z0 = self.noise(n, generator)
        gen = generator if generator is not None and generator.device == z0.device else None
        kernel = Langevin(
            step_size=self.step_size, noise_scale=1.0 if self.with_noise else 0.0, generator=gen
        )
        z, _ = run_chain(kernel, self.log_prob, z0, self.steps, record=False)
        return z.detach()

    def loss(self, z_post: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, dict]:
        z_prior = self.sample(len(z_post), generator)
        f_pos, f_neg = self.f(z_post.detach()), self.f(z_prior)
        loss = f_neg.mean() - f_pos.mean()
        if self.energy_l2 > 0:
            loss = loss + self.energy_l2 * (f_pos.pow(2).mean() + f_neg.pow(2).mean())
        return loss, {"ebm_f_pos": float(f_pos.mean().detach()), "ebm_f_neg": float(f_neg.mean().detach())}


_PRIORS = {"gaussian": GaussianPrior, "flow": FlowPrior, "ebm": EBMPrior}


def build_prior(cfg: dict[str, Any], latent_dim: int) -> LatentPrior:
    """Build the prior from the ``model.prior`` config section (``kind`` picks the class)."""
    kind = cfg.get("kind")
    if kind not in _PRIORS:
        raise ValueError(f"model.prior.kind must be one of {sorted(_PRIORS)}, got {kind!r}")
    if kind == "gaussian":
        return GaussianPrior(latent_dim)
    if kind == "flow":
        standardize = cfg.get("standardize", True)
        if not isinstance(standardize, bool):
            raise ValueError(f"model.prior.standardize must be true or false, got {standardize!r}")
        return FlowPrior(latent_dim, str(cfg["flow"]), standardize, **dict(cfg.get("flow_args") or {}))
    return EBMPrior(latent_dim, **cfg["ebm"])
