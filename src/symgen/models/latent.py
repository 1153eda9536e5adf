r"""One latent-variable model family with swappable prior and inference: LFBM, ABP, LEBM and LFBM-VAE.

The model is a top-down generator :math:`x = g_\beta(z) + \epsilon`, :math:`\epsilon \sim
\mathcal{N}(0, \sigma^2 I)`, over a latent prior :math:`p_\alpha(z)` (LFBM paper, Sec. 3.1). Two parts
are swappable:

* the prior (:mod:`symgen.models.priors`): Gaussian (ABP), normalizing flow (LFBM), latent EBM (LEBM);
* the inference of :math:`z` given :math:`x`: a short-run MCMC chain on the posterior
  :math:`\log p(z|x) = \log p_\alpha(z) + \log p_\beta(x|z) + c` (Eq. (8)) started from
  :math:`\mathcal{N}(0, I)` -- Langevin by default, any :mod:`symgen.samplers` kernel (MALA, HMC) by
  name -- or an amortised encoder with a flow posterior trained by the ELBO (LFBM-VAE, Appendix C).

Training follows Algorithm 1: infer :math:`z` by the chain (no gradient through it), update the prior by
maximum likelihood on the inferred :math:`z` (Eq. (6); for the EBM prior the contrastive loss whose bias
is Eq. (12)), update the generator by the Gaussian log-likelihood (Eq. (7)). With an occlusion spec
(Sec. 4.6) every training image is seen only through its fixed mask and only visible pixels enter the
likelihood. Langevin convention (LFBM/LEBM official code): :math:`z \leftarrow z + \frac{s^2}{2}\nabla_z
\log p(z|x) + s\,\epsilon`, i.e. Eq. (8) with :math:`\xi = s^2/2`.

The model logic is hand-written (no maintained library implements MCMC-based latent-variable learning);
flows, samplers and the posterior density come from :mod:`symgen.flows`, :mod:`symgen.samplers` and
:mod:`symgen.densities`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from symgen.densities import LogDensity, gaussian_log_likelihood, posterior_log_prob
from symgen.flows import build_flow
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.priors import EBMPrior, LatentPrior, build_prior, init_latent_flow, randn_on
from symgen.nets.encoders import GaussianEncoder, build_encoder
from symgen.nets.generators import build_generator, init_generator
from symgen.registry import MODELS
from symgen.samplers import HMC, MALA, Kernel, Langevin, run_chain
from symgen.tasks.occlusion import OcclusionSpec, occlusion_mask

__all__ = ["InferenceSpec", "LatentModel", "LFBM", "ABP", "LEBM", "LFBMVAE", "FlowPosterior"]

_KERNELS = ("langevin", "mala", "hmc")


@dataclass(frozen=True)
class InferenceSpec:
    """How :math:`z` is inferred: chain kind and its training / test-time settings.

    Attributes:
        kind: ``langevin``, ``mala``, ``hmc`` (short-run chains from N(0, I)) or ``encoder`` (LFBM-VAE;
            masked inference then falls back to the test-time Langevin chain, as in LFBM Sec. 4.3).
        steps, step_size, noise: the training chain (paper / official code: 20, 0.1, on).
        test_steps, test_step_size, test_noise: the chain used for evaluation (the official code
            uses 20x the training steps and no noise).
        sampler_args: extra keyword arguments of the kernel (e.g. HMC's number of leapfrog steps).
    """

    kind: str = "langevin"
    steps: int = 20
    step_size: float = 0.1
    noise: bool = True
    test_steps: int = 400
    test_step_size: float = 0.1
    test_noise: bool = False
    sampler_args: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in (*_KERNELS, "encoder"):
            raise ValueError(
                f"model.inference.kind must be one of {(*_KERNELS, 'encoder')}, got {self.kind!r}"
            )
        for name in ("steps", "test_steps"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"model.inference.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("step_size", "test_step_size"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"model.inference.{name} must be > 0, got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> InferenceSpec:
        return cls(
            kind=str(cfg["kind"]),
            steps=int(cfg["steps"]),
            step_size=float(cfg["step_size"]),
            noise=bool(cfg["noise"]),
            test_steps=int(cfg["test_steps"]),
            test_step_size=float(cfg["test_step_size"]),
            test_noise=bool(cfg["test_noise"]),
            sampler_args=tuple(sorted(dict(cfg.get("sampler_args") or {}).items())),
        )

    def chain(self, test: bool) -> tuple[str, int, float, bool]:
        """``(kernel, steps, step_size, noise)`` of the training or the test-time chain."""
        kind = "langevin" if self.kind == "encoder" else self.kind
        if test:
            return kind, self.test_steps, self.test_step_size, self.test_noise
        return kind, self.steps, self.step_size, self.noise


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


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """``x`` or ``(x, mask)`` (mask of ``x``'s shape or ``(B, 1, H, W)``); other extras are ignored."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        x = batch[0]
        if len(batch) > 1 and isinstance(batch[1], Tensor) and batch[1].dim() == x.dim():
            return x, batch[1].to(x.dtype)
        return x, None
    raise ValueError(
        f"batch must be an image tensor (B, C, H, W) or a tuple (x, mask); got {type(batch).__name__}"
    )


@torch.no_grad()
def _mse(x: Tensor, x_hat: Tensor, mask: Tensor | None) -> float:
    """Per-pixel squared error of a training batch (over the observed pixels when masked), for logging."""
    err = (x_hat - x).pow(2)
    if mask is None:
        return float(err.mean())
    m = torch.broadcast_to(mask, x.shape)
    return float((err * m).sum() / m.sum().clamp_min(1))


class LatentModel(GenerativeModel):
    """Top-down generator with a swappable latent prior and inference (see the module docstring).

    Arguments:
        generator: :math:`g_\\beta`, ``(B, d) -> (B, *event_shape)``.
        prior: a :class:`~symgen.models.priors.LatentPrior`.
        event_shape: ``(C, H, W)``.
        sigma: standard deviation of the observation residual.
        inference: the :class:`InferenceSpec`.
        lr: learning rates ``{"generator", "prior", "encoder"}``; with an EBM prior ``"ebm_prior"`` replaces
            ``"prior"`` and ``"ebm_generator"`` (if not ``None``) replaces ``"generator"`` (see
            :meth:`learning_rates`); ``betas`` of Adam.
        posterior: the LFBM-VAE inference model (``inference.kind == "encoder"``), else ``None``.
        occlusion: training-data occlusion of Sec. 4.6 (``kind == "none"``: fully observed data).
    """

    name = "latent"

    def __init__(
        self,
        generator: nn.Module,
        prior: LatentPrior,
        event_shape: tuple[int, ...],
        sigma: float,
        inference: InferenceSpec,
        lr: dict[str, float],
        betas: tuple[float, float] = (0.5, 0.999),
        posterior: FlowPosterior | None = None,
        occlusion: OcclusionSpec | None = None,
    ) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"model.sigma must be > 0, got {sigma!r}")
        if (inference.kind == "encoder") != (posterior is not None):
            raise ValueError(
                "an encoder posterior is required exactly when model.inference.kind == 'encoder'"
            )
        self.generator, self.prior, self.posterior = generator, prior, posterior
        self.event_shape, self.sigma = tuple(event_shape), float(sigma)
        self.latent_dim = prior.latent_dim
        self.inference, self.lr, self.betas = inference, dict(lr), tuple(betas)
        self.occlusion = occlusion or OcclusionSpec()

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "latent_dim": 16,
            "sigma": 0.3,  # std of the residual eps in x = g(z) + eps (official code: 0.3)
            # init: default (torch's) | xavier_normal (official LFBM/LEBM code: Xavier-normal conv weights)
            "generator": {"arch": "auto", "ngf": None, "batchnorm": False, "init": "default"},
            "prior": {
                "kind": "flow",  # gaussian (ABP) | flow (LFBM) | ebm (LEBM)
                "flow": "glow_vector",  # registered flow (symgen.flows) of the flow prior
                "flow_args": {},  # its constructor arguments (depth, hidden width...)
                "ebm": {
                    "hidden": 200,
                    "layers": 2,
                    "activation": "gelu",  # official LEBM / LFBM flexible-prior code
                    "steps": 60,
                    "step_size": 0.4,
                    "noise": True,
                    "energy_l2": 0.0,
                },
            },
            "inference": {
                "kind": "langevin",  # langevin | mala | hmc | encoder (LFBM-VAE)
                "steps": 20,
                "step_size": 0.1,
                "noise": True,
                "test_steps": 400,  # evaluation chain (official code: 20x the training steps, no noise)
                "test_step_size": 0.1,
                "test_noise": False,
                "sampler_args": {},  # extra kernel arguments (e.g. HMC leapfrog steps)
            },
            "encoder": {"arch": "auto", "width": None, "flow": "glow_vector", "flow_args": {}},
            # ebm_prior / ebm_generator: used instead of prior / generator when prior.kind == ebm, so that one
            # config file serves LFBM, ABP and LEBM; official LEBM: EBM lr 2e-5 (generator 1e-4 on SVHN)
            "lr": {
                "generator": 4e-4,
                "prior": 4e-4,
                "encoder": 2e-4,
                "ebm_prior": 2e-5,
                "ebm_generator": None,
            },
            "betas": [0.5, 0.999],
            # training-data occlusion (Sec. 4.6): none | salt_and_pepper (rate) | square (size: side fraction)
            # | patches (official "salt and pepper": rate 0.3/0.5/0.7 -> 24/48/90 squares of side size, 8/64)
            "occlusion": {"kind": "none", "rate": 0.0, "size": 0.0, "seed": 0},
            # evaluation options of symgen.tasks (recon_mse, inpaint_mse, anomaly_auprc, recovery_mse...)
            # recovery_chain: train (official: 20 noisy steps from N(0, I)) | test (long test chain) | both
            "tasks": {"max_images": 1000, "batch_size": 500, "inpaint_size": 0.625, "inpaint_completions": 4,
                      "recovery_chain": "train"},  # fmt: skip
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> LatentModel:
        if data.kind != "image":
            raise ValueError(f"latent-variable models need image data, got data kind {data.kind!r}")
        d = int(cfg["latent_dim"])
        gcfg = cfg["generator"]
        gen = build_generator(
            gcfg["arch"], d, data.event_shape, gcfg["ngf"], batchnorm=bool(gcfg["batchnorm"])
        )
        init_generator(gen, str(gcfg.get("init", "default")))
        prior = build_prior(cfg["prior"], d)
        inference = InferenceSpec.from_config(cfg["inference"])
        posterior = None
        if inference.kind == "encoder":
            ecfg = cfg["encoder"]
            enc = build_encoder(ecfg["arch"], d, data.event_shape, ecfg["width"])
            flow = None
            if ecfg["flow"]:
                flow = build_flow(ecfg["flow"], event_shape=(d,), **dict(ecfg["flow_args"]))
            posterior = FlowPosterior(enc, flow)
        return cls(
            gen, prior, data.event_shape, float(cfg["sigma"]), inference,
            lr={k: float(v) for k, v in cfg["lr"].items() if v is not None}, betas=tuple(cfg["betas"]),
            posterior=posterior, occlusion=OcclusionSpec.from_config(cfg["occlusion"]),
        )  # fmt: skip

    def learning_rates(self) -> dict[str, float]:
        """The learning rates in use: ``model.lr``, with ``ebm_prior`` / ``ebm_generator`` taking the place of
        ``prior`` / ``generator`` when the prior is an EBM (the LEBM official code trains its EBM with
        2e-5, far below the flow's rate)."""
        lr = dict(self.lr)
        if isinstance(self.prior, EBMPrior):
            lr["prior"] = lr.get("ebm_prior", lr.get("prior", 0.0))
            lr["generator"] = lr.get("ebm_generator", lr.get("generator", 0.0))
        return lr

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        def adam(params: Any, lr: float) -> torch.optim.Optimizer:
            return torch.optim.Adam(params, lr=lr, betas=self.betas)

        rates = self.learning_rates()

        if self.posterior is not None:  # LFBM-VAE: one ELBO, one optimizer with per-part learning rates
            groups = [
                {"params": list(self.generator.parameters()), "lr": rates["generator"]},
                {"params": list(self.posterior.parameters()), "lr": rates["encoder"]},
            ]
            prior_params = list(self.prior.parameters())
            if prior_params:
                groups.append({"params": prior_params, "lr": rates["prior"]})
            return {"vae": adam(groups, rates["generator"])}
        opts = {"generator": adam(self.generator.parameters(), rates["generator"])}
        if any(True for _ in self.prior.parameters()):
            opts["prior"] = adam(self.prior.parameters(), rates["prior"])
        return opts

    # ------------------------------------------------------------------ densities
    def log_likelihood(self, x: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
        r""":math:`\log p_\beta(x|z)` without its constant, per image: :math:`-\|m\odot(x-g)\|^2/2\sigma^2`.

        The generator's training loss is its negative mean (Eq. (7)).
        """
        return gaussian_log_likelihood(x, self.generator(z), self.sigma, mask)

    def log_joint(self, x: Tensor, z: Tensor, mask: Tensor | None = None) -> Tensor:
        r"""The decision function of Sec. 4.4, :math:`\log p_\theta(x, z)` per image.

        :math:`l_\alpha(z) - \|x - g(z)\|^2/2\sigma^2 - D\log(\sigma\sqrt{2\pi})`, ``D`` observed pixels.
        """
        ll = gaussian_log_likelihood(x, self.generator(z), self.sigma, mask, constants=True)
        return self.prior.log_prob(z) + ll

    def posterior_log_prob(self, x: Tensor, mask: Tensor | None = None) -> LogDensity:
        """The LogDensity :math:`z \\mapsto \\log p_\\alpha(z) + \\log p_\\beta(x|z)` (Eq. (8), Sec. 4.3)."""
        return posterior_log_prob(self.prior.log_prob, self.generator, x, self.sigma, mask)

    # ------------------------------------------------------------------ inference
    def _kernel(self, kind: str, step_size: float, noise: bool, generator: torch.Generator | None) -> Kernel:
        args = dict(self.inference.sampler_args)
        if kind == "langevin":
            return Langevin(
                step_size=step_size, noise_scale=1.0 if noise else 0.0, generator=generator, **args
            )
        if kind == "mala":
            return MALA(step_size=step_size, generator=generator, **args)
        return HMC(step_size=step_size, generator=generator, **args)

    def infer(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        test: bool = False,
        generator: torch.Generator | None = None,
        z0: Tensor | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """Latents of ``x`` (detached, ``(B, d)``).

        A chain on the (masked) posterior from ``z0`` (default: :math:`\\mathcal{N}(0, I)`), with the
        training or the test-time settings of :class:`InferenceSpec`; LFBM-VAE uses its encoder for fully
        observed images (``mask is None``) and the test-time Langevin chain otherwise (Sec. 4.3).
        """
        if self.posterior is not None and mask is None and z0 is None:
            with torch.no_grad():
                if test:
                    return self.posterior.mode(x)
                return self.posterior.rsample_and_log_prob(x, generator)[0]
        kind, n_steps, step_size, noise = self.inference.chain(test or self.posterior is not None)
        n_steps = n_steps if steps is None else int(steps)
        gen = generator if generator is None or generator.device == x.device else None
        if z0 is None:
            z0 = randn_on((x.shape[0], self.latent_dim), generator, x.device)
        kernel = self._kernel(kind, step_size, noise, gen)
        z, _ = run_chain(kernel, self.posterior_log_prob(x, mask), z0, n_steps)
        return z.detach()

    # ------------------------------------------------------------------ training
    def training_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """A training batch's mask: the batch's own, else the fixed occlusion of Sec. 4.6, else none."""
        if mask is not None:
            return mask
        return occlusion_mask(x, self.occlusion) if self.occlusion.active else None

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """Algorithm 1 (Langevin inference) or one ELBO step (LFBM-VAE, Eq. (24))."""
        x, mask = _split_batch(batch)
        mask = self.training_mask(x, mask)
        if self.posterior is not None:
            return self._vae_step(x, mask, ctx)
        z = self.infer(x, mask, generator=ctx.generator)  # line 4 of Algorithm 1, no gradient through it
        logs: dict[str, float] = {}
        prior_loss, prior_logs = self.prior.loss(z, ctx.generator)
        if prior_loss is not None:  # line 5: Eq. (6) (flow) / contrastive EBM update (LEBM)
            ctx.optimize("prior", prior_loss)
            logs["prior_loss"] = float(prior_loss.detach())
        x_hat = self.generator(z)
        gen_loss = -gaussian_log_likelihood(x, x_hat, self.sigma, mask).mean()  # line 6: Eq. (7)
        ctx.optimize("generator", gen_loss)
        logs["gen_loss"] = float(gen_loss.detach())
        logs["loss"] = logs["gen_loss"] + logs.get("prior_loss", 0.0)
        logs["recon_mse"] = _mse(x, x_hat, mask)
        return {**logs, **prior_logs}

    def _vae_step(self, x: Tensor, mask: Tensor | None, ctx: StepContext) -> dict[str, float]:
        if mask is not None:
            raise ValueError(
                "LFBM-VAE cannot learn from occluded images (LFBM Sec. 4.6); set model.occlusion.kind=none"
            )
        assert self.posterior is not None
        z, log_q = self.posterior.rsample_and_log_prob(x, ctx.generator)
        x_hat = self.generator(z)
        log_px = gaussian_log_likelihood(x, x_hat, self.sigma, constants=True)
        log_pz = self.prior.log_prob(z)
        elbo = log_px + log_pz - log_q  # Eq. (24)
        loss = -elbo.mean()
        ctx.optimize("vae", loss)
        return {"loss": float(loss.detach()), "kl": float((log_q - log_pz).mean().detach()),
                "recon_mse": _mse(x, x_hat, None)}  # fmt: skip

    # ------------------------------------------------------------------ sampling and tasks
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Ancestral sampling :math:`z \sim p_\alpha`, :math:`x = g_\beta(z)`.

        Exact for the Gaussian and flow priors; the EBM prior's latents come from its short-run chain.
        """
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        z = self.prior.sample(n, generator=generator)
        return self.generator(z)

    @torch.no_grad()
    def reconstruct(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """:math:`g_\\beta(z)` with :math:`z` inferred from the (masked) ``x`` by the test-time inference."""
        return self.generator(self.infer(x, mask, test=True, generator=generator))


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``base`` with nested changes written ``section__key=value`` (``prior__kind="ebm"``)."""
    out = copy.deepcopy(base)
    for path, value in changes.items():
        node = out
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


@MODELS.register("lfbm", help="LFBM: generator + latent normalizing-flow prior, short-run Langevin inference")
class LFBM(LatentModel):
    """Latent space flow-based model with Langevin-flow inference (Xie et al., AAAI 2023)."""

    name = "lfbm"


@MODELS.register("abp", help="ABP: generator + fixed Gaussian prior, short-run Langevin inference")
class ABP(LatentModel):
    """Alternating back-propagation (Han et al. 2017): the Gaussian-prior baseline."""

    name = "abp"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return _with(LatentModel.default_config(), prior__kind="gaussian")


@MODELS.register(
    "lebm", help="LEBM: generator + latent EBM prior, short-run Langevin for prior and posterior"
)
class LEBM(LatentModel):
    """Latent space energy-based prior model (Pang et al. 2020)."""

    name = "lebm"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return _with(LatentModel.default_config(), prior__kind="ebm")


@MODELS.register("lfbm_vae", help="LFBM-VAE: flow prior, encoder + flow posterior trained by the ELBO")
class LFBMVAE(LatentModel):
    """The LFBM-VAE baseline (LFBM paper, Appendix C)."""

    name = "lfbm_vae"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return _with(LatentModel.default_config(), inference__kind="encoder")
