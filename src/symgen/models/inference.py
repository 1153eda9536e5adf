r"""How a latent-variable model infers :math:`z` from :math:`x`: by MCMC on the posterior, or amortised.

A :class:`~symgen.models.latent.LatentModel` is a generator, a prior and one of these inference objects:

* :class:`MCMCInference` -- a short-run chain of any kernel of :mod:`symgen.samplers` (``langevin``,
  ``mala``, ``hmc``) on the posterior :math:`\log p(z|x) = \log p_\alpha(z) + \log p_\beta(x|z) + c`
  (LFBM Eq. (8)) started from :math:`\mathcal{N}(0, I)`, with training and test-time settings. Training
  follows Algorithm 1 (ABP, LEBM, LFBM). Options a kernel does not take are refused, not ignored.
* :class:`AmortizedInference` -- an encoder with a flow posterior :math:`q_\phi(z|x)` trained with the
  generator and prior by the ELBO (LFBM-VAE, Appendix C, Eq. (24)); masked images (inpainting, Sec. 4.3)
  fall back to its test-time chain.

Langevin convention (LFBM/LEBM official code): :math:`z \leftarrow z + \frac{s^2}{2}\nabla_z \log p(z|x)
+ s\,\epsilon`, i.e. Eq. (8) with :math:`\xi = s^2/2`.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from symgen.densities import gaussian_log_likelihood
from symgen.models.base import StepContext
from symgen.models.priors import init_latent_flow, randn_on
from symgen.nets.encoders import GaussianEncoder
from symgen.samplers import HMC, MALA, Kernel, Langevin, run_chain

if TYPE_CHECKING:
    from symgen.models.latent import LatentModel

__all__ = ["KERNELS", "MCMCInference", "AmortizedInference", "FlowPosterior", "build_inference", "batch_mse"]

KERNELS: dict[str, type[Kernel]] = {"langevin": Langevin, "mala": MALA, "hmc": HMC}


def _takes(kernel: type[Kernel], option: str) -> bool:
    return option in inspect.signature(kernel.__init__).parameters


@dataclass(frozen=True)
class MCMCInference:
    """Short-run MCMC inference: kernel ``kind`` and its training / test-time settings.

    Attributes:
        kind: a kernel of :data:`KERNELS`.
        steps, step_size, noise: the training chain (paper / official code: 20, 0.1, noise on).
        test_steps, test_step_size, test_noise: the evaluation chain (official code: more steps, no noise).
        sampler_args: extra keyword arguments of the kernel (e.g. HMC's number of leapfrog steps).
        ``noise`` / ``test_noise`` are options of the Langevin kernel (its noise scale on / off; ``None``:
        on for training, off for testing); other kernels are always stochastic and refuse them.
    """

    kind: str = "langevin"
    steps: int = 20
    step_size: float = 0.1
    noise: bool | None = None
    test_steps: int = 400
    test_step_size: float = 0.1
    test_noise: bool | None = None
    sampler_args: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KERNELS:
            raise ValueError(
                f"model.inference.kind must be one of {(*KERNELS, 'encoder')}, got {self.kind!r}"
            )
        for name in ("steps", "test_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"model.inference.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("step_size", "test_step_size"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"model.inference.{name} must be > 0, got {getattr(self, name)!r}")
        kernel = KERNELS[self.kind]
        for name in ("noise", "test_noise"):
            if getattr(self, name) is not None and not _takes(kernel, "noise_scale"):
                raise ValueError(
                    f"model.inference.{name} is an option of the langevin kernel; {self.kind} has no noise "
                    "switch (it is always stochastic): remove it or set it to null"
                )
        for name, _ in self.sampler_args:
            if name in ("step_size", "generator", "noise_scale") or not _takes(kernel, name):
                accepted = [
                    p for p in inspect.signature(kernel.__init__).parameters if p not in ("self", "kwargs")
                ]
                raise ValueError(
                    f"model.inference.sampler_args.{name} is not an option of the {self.kind} kernel "
                    f"(it takes {', '.join(accepted)}; step_size and noise have their own keys)"
                )

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> MCMCInference:
        def flag(v: Any) -> bool | None:
            return None if v is None else bool(v)

        return cls(
            kind=str(cfg["kind"]),
            steps=int(cfg["steps"]),
            step_size=float(cfg["step_size"]),
            noise=flag(cfg["noise"]),
            test_steps=int(cfg["test_steps"]),
            test_step_size=float(cfg["test_step_size"]),
            test_noise=flag(cfg["test_noise"]),
            sampler_args=tuple(sorted(dict(cfg.get("sampler_args") or {}).items())),
        )

    def kernel(self, test: bool, generator: torch.Generator | None = None) -> Kernel:
        """The kernel of the training (``test=False``) or the test-time chain."""
        step_size = self.test_step_size if test else self.step_size
        args = dict(self.sampler_args)
        if _takes(KERNELS[self.kind], "noise_scale"):
            noise = self.test_noise if test else self.noise
            noise = (not test) if noise is None else noise
            args["noise_scale"] = 1.0 if noise else 0.0
        return KERNELS[self.kind](step_size=step_size, generator=generator, **args)

    def infer(
        self,
        model: LatentModel,
        x: Tensor,
        mask: Tensor | None = None,
        test: bool = False,
        generator: torch.Generator | None = None,
        z0: Tensor | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """Latents of ``x`` (detached, ``(B, d)``): the chain on the (masked) posterior of ``model`` from
        ``z0`` (default :math:`\\mathcal{N}(0, I)`), ``steps`` overriding the chain's length."""
        n_steps = (self.test_steps if test else self.steps) if steps is None else int(steps)
        gen = generator if generator is None or generator.device == x.device else None
        if z0 is None:
            z0 = randn_on((x.shape[0], model.latent_dim), generator, x.device)
        z, _ = run_chain(self.kernel(test, gen), model.posterior_log_prob(x, mask), z0, n_steps, record=False)
        return z.detach()

    def optimizers(self, model: LatentModel, adam: Any) -> dict[str, torch.optim.Optimizer]:
        """One Adam for the generator, one for the prior (when it has parameters)."""
        rates = model.learning_rates()
        opts = {"generator": adam(model.generator.parameters(), rates["generator"])}
        if any(True for _ in model.prior.parameters()):
            opts["prior"] = adam(model.prior.parameters(), rates["prior"])
        return opts

    def training_step(
        self, model: LatentModel, x: Tensor, mask: Tensor | None, ctx: StepContext
    ) -> dict[str, float]:
        """Algorithm 1: infer :math:`z` (no gradient through the chain), update the prior by Eq. (6) (the
        contrastive loss for an EBM prior), update the generator by Eq. (7)."""
        z = self.infer(model, x, mask, generator=ctx.generator)
        logs: dict[str, float] = {}
        prior_loss, prior_logs = model.prior.loss(z, ctx.generator)
        if prior_loss is not None:
            ctx.optimize("prior", prior_loss)
            logs["prior_loss"] = float(prior_loss.detach())
        x_hat = model.generator(z)
        gen_loss = -gaussian_log_likelihood(x, x_hat, model.sigma, mask).mean()
        ctx.optimize("generator", gen_loss)
        logs["gen_loss"] = float(gen_loss.detach())
        logs["loss"] = logs["gen_loss"] + logs.get("prior_loss", 0.0)
        logs["recon_mse"] = batch_mse(x, x_hat, mask)
        return {**logs, **prior_logs}


class FlowPosterior(nn.Module):
    r"""LFBM-VAE inference model :math:`q_\phi(z|x)`: Gaussian encoder then a flow (Eqs. (22)-(23)).

    :math:`z_0 \sim \mathcal{N}(\mu_{\phi_0}(x), \mathrm{diag}\,\sigma^2_{\phi_0}(x))`, :math:`z =
    f_{\phi_1}(z_0)`, :math:`\log q_\phi(z|x) = \log q_{\phi_0}(z_0|x) - \log|\det \partial z/\partial z_0|`.
    """

    def __init__(self, encoder: GaussianEncoder, flow: nn.Module | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.flow = None if flow is None else init_latent_flow(flow, encoder.latent_dim)

    def _push(self, z0: Tensor) -> tuple[Tensor, Tensor]:
        if self.flow is None:
            return z0, z0.new_zeros(z0.shape[0])
        return self.flow().forward(z0)  # (z, log|det dz/dz0|)

    def rsample_and_log_prob(
        self, x: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """A reparameterised draw ``z ~ q(z|x)`` and ``log q(z|x)``, each per row."""
        mu, log_sigma = self.encoder(x)
        eps = randn_on(mu.shape, generator, mu.device)
        z0 = mu + log_sigma.exp() * eps
        log_q0 = -0.5 * (eps.pow(2) + math.log(2 * math.pi)).sum(-1) - log_sigma.sum(-1)
        z, ladj = self._push(z0)
        return z, log_q0 - ladj

    def mode(self, x: Tensor) -> Tensor:
        """The deterministic code :math:`f_{\\phi_1}(\\mu_{\\phi_0}(x))` (used for reconstruction)."""
        mu, _ = self.encoder(x)
        return self._push(mu)[0]


@dataclass(frozen=True, eq=False)
class AmortizedInference:
    """Encoder + flow posterior trained by the ELBO (LFBM-VAE); ``chain`` infers masked images.

    The posterior module is registered on the model as ``model.posterior`` (its parameters train with it).
    """

    posterior: FlowPosterior
    chain: MCMCInference

    kind = "encoder"

    def infer(
        self,
        model: LatentModel,
        x: Tensor,
        mask: Tensor | None = None,
        test: bool = False,
        generator: torch.Generator | None = None,
        z0: Tensor | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """The encoder's code for fully observed ``x`` (its mode at test time, a draw in training); the
        test-time chain for masked images or a given ``z0`` (Sec. 4.3)."""
        if mask is None and z0 is None:
            with torch.no_grad():
                if test:
                    return self.posterior.mode(x)
                return self.posterior.rsample_and_log_prob(x, generator)[0]
        return self.chain.infer(model, x, mask, True, generator, z0, steps)

    def optimizers(self, model: LatentModel, adam: Any) -> dict[str, torch.optim.Optimizer]:
        """One ELBO, one Adam with per-part learning rates (generator, encoder, prior)."""
        rates = model.learning_rates()
        groups = [
            {"params": list(model.generator.parameters()), "lr": rates["generator"]},
            {"params": list(self.posterior.parameters()), "lr": rates["encoder"]},
        ]
        prior_params = list(model.prior.parameters())
        if prior_params:
            groups.append({"params": prior_params, "lr": rates["prior"]})
        return {"vae": adam(groups, rates["generator"])}

    def training_step(
        self, model: LatentModel, x: Tensor, mask: Tensor | None, ctx: StepContext
    ) -> dict[str, float]:
        """One ELBO step (Eq. (24)): :math:`\\log p(x|z) + \\log p_\\alpha(z) - \\log q_\\phi(z|x)`."""
        if mask is not None:
            raise ValueError(
                "LFBM-VAE cannot learn from occluded images (LFBM Sec. 4.6); set model.occlusion.kind=none"
            )
        z, log_q = self.posterior.rsample_and_log_prob(x, ctx.generator)
        x_hat = model.generator(z)
        log_px = gaussian_log_likelihood(x, x_hat, model.sigma, constants=True)
        log_pz = model.prior.log_prob(z)
        loss = -(log_px + log_pz - log_q).mean()
        ctx.optimize("vae", loss)
        return {
            "loss": float(loss.detach()),
            "kl": float((log_q - log_pz).mean().detach()),
            "recon_mse": batch_mse(x, x_hat, None),
        }


Inference = MCMCInference | AmortizedInference


def build_inference(cfg: dict[str, Any], posterior: FlowPosterior | None = None) -> Inference:
    """``model.inference`` as an inference object; ``kind: encoder`` needs the ``posterior`` module and
    uses the other keys (a Langevin chain) for masked images."""
    if cfg["kind"] == "encoder":
        if posterior is None:
            raise ValueError("model.inference.kind == 'encoder' needs an encoder posterior")
        return AmortizedInference(posterior, MCMCInference.from_config({**cfg, "kind": "langevin"}))
    return MCMCInference.from_config(cfg)


@torch.no_grad()
def batch_mse(x: Tensor, x_hat: Tensor, mask: Tensor | None) -> float:
    """Per-pixel squared error of a training batch (over the observed pixels when masked), for logging."""
    err = (x_hat - x).pow(2)
    if mask is None:
        return float(err.mean())
    m = torch.broadcast_to(mask, x.shape)
    return float((err * m).sum() / m.sum().clamp_min(1))
