r"""One latent-variable model family -- generator, swappable prior and inference: LFBM, ABP, LEBM, LFBM-VAE.

The model is a top-down generator :math:`x = g_\beta(z) + \epsilon`, :math:`\epsilon \sim
\mathcal{N}(0, \sigma^2 I)`, over a latent prior :math:`p_\alpha(z)` (LFBM paper, Sec. 3.1). Two parts
are swappable:

* the prior (:mod:`symgen.models.priors`): Gaussian (ABP), normalizing flow (LFBM), latent EBM (LEBM);
* the inference of :math:`z` given :math:`x` (:mod:`symgen.models.inference`): a short-run MCMC chain on
  the posterior (Eq. (8)) -- Langevin by default, any :mod:`symgen.samplers` kernel by name -- trained by
  Algorithm 1, or an amortised encoder with a flow posterior trained by the ELBO (LFBM-VAE, Appendix C).

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
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.data.masks import OcclusionSpec, occlusion_mask
from symgen.densities import LogDensity, gaussian_log_likelihood, posterior_log_prob
from symgen.flows import build_flow
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.inference import (
    AmortizedInference,
    FlowPosterior,
    Inference,
    MCMCInference,
    build_inference,
)
from symgen.models.priors import EBMPrior, LatentPrior, build_prior
from symgen.nets.encoders import build_encoder
from symgen.nets.generators import build_generator, init_generator
from symgen.registry import MODELS

__all__ = ["LatentModel", "LFBM", "ABP", "LEBM", "LFBMVAE"]


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


class LatentModel(GenerativeModel):
    """Top-down generator with a swappable latent prior and inference (see the module docstring).

    Arguments:
        generator: :math:`g_\\beta`, ``(B, d) -> (B, *event_shape)``.
        prior: a :class:`~symgen.models.priors.LatentPrior`.
        event_shape: ``(C, H, W)``.
        sigma: standard deviation of the observation residual.
        inference: an :class:`~symgen.models.inference.MCMCInference` or
            :class:`~symgen.models.inference.AmortizedInference` (its posterior becomes ``self.posterior``).
        lr: learning rates ``{"generator", "prior", "encoder"}``; with an EBM prior ``"ebm_prior"`` replaces
            ``"prior"`` and ``"ebm_generator"`` (if not ``None``) replaces ``"generator"`` (see
            :meth:`learning_rates`); ``betas`` of Adam.
        occlusion: training-data occlusion of Sec. 4.6 (``kind == "none"``: fully observed data).
    """

    name = "latent"

    def __init__(
        self,
        generator: nn.Module,
        prior: LatentPrior,
        event_shape: tuple[int, ...],
        sigma: float,
        inference: Inference,
        lr: dict[str, float],
        betas: tuple[float, float] = (0.5, 0.999),
        occlusion: OcclusionSpec | None = None,
    ) -> None:
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"model.sigma must be > 0, got {sigma!r}")
        if not isinstance(inference, MCMCInference | AmortizedInference):
            raise TypeError(f"inference must be an MCMCInference or AmortizedInference, got {inference!r}")
        self.generator, self.prior = generator, prior
        self.posterior = inference.posterior if isinstance(inference, AmortizedInference) else None
        self.event_shape, self.sigma = tuple(event_shape), float(sigma)
        self.latent_dim = prior.latent_dim
        self.inference, self.lr, self.betas = inference, dict(lr), tuple(betas)
        self.occlusion = occlusion or OcclusionSpec()

    # ------------------------------------------------------------------ config
    legacy_defaults: ClassVar[dict[str, Any]] = {"prior": {"standardize": False}}  # runs before issue 17

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
                "standardize": True,  # flow prior: standardise latents (fitted to the first posterior batch)
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
                "noise": None,  # langevin only: noise on/off (null: on in training, off at test time)
                "test_steps": 400,  # evaluation chain (official code: 20x the training steps, no noise)
                "test_step_size": 0.1,
                "test_noise": None,
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
            "tasks": {
                "max_images": 1000,
                "batch_size": 500,
                "inpaint_size": 0.625,
                "inpaint_completions": 4,
                "recovery_chain": "train",
            },  # fmt: skip
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
        posterior = None
        if cfg["inference"]["kind"] == "encoder":
            ecfg = cfg["encoder"]
            enc = build_encoder(ecfg["arch"], d, data.event_shape, ecfg["width"])
            flow = None
            if ecfg["flow"]:
                flow = build_flow(ecfg["flow"], event_shape=(d,), **dict(ecfg["flow_args"]))
            posterior = FlowPosterior(enc, flow)
        return cls(
            gen, prior, data.event_shape, float(cfg["sigma"]), build_inference(cfg["inference"], posterior),
            lr={k: float(v) for k, v in cfg["lr"].items() if v is not None}, betas=tuple(cfg["betas"]),
            occlusion=OcclusionSpec.from_config(cfg["occlusion"]),
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

        return self.inference.optimizers(self, adam)

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
    def infer(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        test: bool = False,
        generator: torch.Generator | None = None,
        z0: Tensor | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """Latents of ``x`` (detached, ``(B, d)``) by the model's inference, training or test-time settings
        (see :mod:`symgen.models.inference`)."""
        return self.inference.infer(self, x, mask, test, generator, z0, steps)

    # ------------------------------------------------------------------ training
    def training_mask(self, x: Tensor, mask: Tensor | None) -> Tensor | None:
        """A training batch's mask: the batch's own, else the fixed occlusion of Sec. 4.6, else none."""
        if mask is not None:
            return mask
        return occlusion_mask(x, self.occlusion) if self.occlusion.active else None

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """Algorithm 1 (MCMC inference) or one ELBO step (LFBM-VAE, Eq. (24)), by the model's inference."""
        x, mask = _split_batch(batch)
        return self.inference.training_step(self, x, self.training_mask(x, mask), ctx)

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
