r"""The autoencoder family of dissertation Ch. 3: GLF, regularized GLF, RAE + GMM, VAEs with flows.

Every model is an encoder, a decoder :math:`G_\theta` and a latent prior (:mod:`symgen.models.priors`),
trained on one loss by one Adam optimizer ``ae`` (parameter groups: the auto-encoder; the prior with its
own learning rate, weight decay and Adam moments). The reconstruction loss is
:math:`\mathcal{L}_{\text{recon}}(x, \hat x) = \tfrac12\|x - \hat x\|^2 = -\log\mathcal{N}(x; \hat x, I) + c`,
so :math:`\beta` means the same in every model: the decoder's pixel variance is :math:`1/\beta` (Sec. 3.3.1).

* :class:`GLF` -- deterministic AE :math:`z = E_\phi(x)` and a flow prior :math:`p_\eta`, Eq. (3.7):
  :math:`\beta\,\mathcal{L}_{\text{recon}}(x, G_\theta(E_\phi(x))) - \log p_\eta(\mathrm{sg}[E_\phi(x)])`.
  The stop-gradient ``z.detach()`` means the flow loss never reaches the encoder.
* :class:`RegularizedGLF` -- the same without the stop-gradient, Eq. (3.5): the flow NLL regularises (and
  can collapse) the codes, Sec. 3.3.2 / Fig. 3.7.
* :class:`RAEGMM` -- RAE (Ghosh et al. 2020),
  :math:`\beta\,\mathcal{L}_{\text{recon}} + \gamma\,\tfrac12\|z\|^2`, then a 10-component Gaussian mixture
  fitted by EM on training codes (:mod:`symgen.models.gmm_prior`).
* :class:`VAE` -- the beta-ELBO, Eq. (3.2) / (3.4),
  :math:`-\mathbb{E}_q[\beta\log p_\theta(x|z) + \log p_\eta(z) - \log q_\phi(z|x)]`, with a Gaussian or
  flow prior and a Gaussian encoder optionally followed by a flow
  (:class:`~symgen.models.inference.FlowPosterior`); registered as ``vae``, ``vae_flow_prior``,
  ``vae_flow_posterior``.

Stage-1 API (what a tilted model such as VAEBM needs from a frozen autoencoder): ``encode(x) -> z`` (the
code, or the posterior's mode), ``decode(z) -> x`` (the decoder mean), ``prior`` (``log_prob``, ``sample``,
``from_base`` / ``to_base`` between base noise and latents), ``sample(n)``, ``reconstruct(x)``, and for VAEs
``posterior.rsample_and_log_prob(x)``. Logged per step for Figs. 3.6-3.7: ``recon``, ``nll`` (flow NLL of the
codes), ``z_rms`` (root mean square of the codes: latent collapse), ``entropy`` (VAE: :math:`-\log q`).
"""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.flows import build_flow
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.gmm_prior import GMMPrior
from symgen.models.inference import FlowPosterior, batch_mse
from symgen.models.priors import FlowPrior, GaussianPrior, LatentPrior
from symgen.nets.autoencoders import build_ae_decoder, build_ae_encoder
from symgen.registry import MODELS

__all__ = [
    "AutoencoderModel",
    "GLF",
    "RegularizedGLF",
    "RAEGMM",
    "VAE",
    "VAEFlowPrior",
    "VAEFlowPosterior",
    "recon_loss",
    "build_ae_prior",
]


def recon_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    r""":math:`\mathcal{L}_{\text{recon}} = \tfrac12\|x - \hat x\|^2` per example, ``(B,)`` (unit-variance
    Gaussian decoder without its constant)."""
    return 0.5 * (x - x_hat).pow(2).flatten(1).sum(-1)


def _images(batch: Any) -> Tensor:
    x = batch[0] if isinstance(batch, tuple | list) else batch
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"autoencoder models need image batches (B, C, H, W), got {type(x).__name__}")
    return x


def build_ae_prior(cfg: dict[str, Any], latent_dim: int) -> LatentPrior:
    """The latent prior of ``model.prior.kind``: ``gaussian``, ``flow`` (``model.prior.flow`` with
    ``flow_args``; Sec. 3.4: RealNVP, 4 affine couplings, MLPs of 3 layers of width ``k``) or ``gmm``
    (``model.gmm``)."""
    kind = cfg["prior"]["kind"]
    if kind == "gaussian":
        return GaussianPrior(latent_dim)
    if kind == "flow":
        p = cfg["prior"]
        return FlowPrior(latent_dim, str(p["flow"]), standardize=False, **dict(p.get("flow_args") or {}))
    if kind == "gmm":
        g = cfg["gmm"]
        return GMMPrior(latent_dim, int(g["components"]), int(g["fit_points"]), float(g["reg_covar"]))
    raise ValueError(f"model.prior.kind must be gaussian, flow or gmm, got {kind!r}")


class AutoencoderModel(GenerativeModel):
    """Encoder, decoder and latent prior trained by one loss (:meth:`losses`) with one optimizer ``ae``.

    Arguments:
        encoder: ``x -> z`` (deterministic) or a :class:`FlowPosterior` (VAEs).
        decoder: :math:`G_\\theta`, ``(B, d) -> (B, *event_shape)``.
        prior: a :class:`~symgen.models.priors.LatentPrior`.
        event_shape: ``(C, H, W)``.
        beta: weight of the reconstruction term (Eqs. (3.2)-(3.7)), > 0.
        lr, weight_decay: ``{"ae", "prior"}``; adam: ``{"ae" | "prior": {"betas", "eps"}}`` of each group.
        lr_decay: ``{"every": steps (0: none), "factor": f}``: multiply both rates by ``f`` every ``every``
            updates (Sec. 3.4.3: halve after 50 of 100 epochs on MNIST).
    """

    allowed_priors: ClassVar[tuple[str, ...]] = ("gaussian", "flow", "gmm")
    gaussian_encoder: ClassVar[bool] = False

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        prior: LatentPrior,
        event_shape: tuple[int, ...],
        beta: float = 1.0,
        lr: dict[str, float] | None = None,
        weight_decay: dict[str, float] | None = None,
        adam: dict[str, dict[str, Any]] | None = None,
        lr_decay: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not beta > 0:
            raise ValueError(
                f"model.beta must be a number > 0 (weight of the reconstruction loss), got {beta!r}"
            )
        self.encoder, self.decoder, self.prior = encoder, decoder, prior
        self.event_shape, self.beta, self.latent_dim = tuple(event_shape), float(beta), prior.latent_dim
        self.lr = {"ae": 1e-3, "prior": 1e-3, **(lr or {})}
        self.weight_decay = {"ae": 0.0, "prior": 0.0, **(weight_decay or {})}
        for key, table in (("lr", self.lr), ("weight_decay", self.weight_decay)):
            for k, v in table.items():
                if not float(v) >= 0:
                    raise ValueError(f"model.{key}.{k} must be >= 0, got {v!r}")
        self.adam = {
            "ae": {"betas": (0.9, 0.999), "eps": 1e-8},
            "prior": {"betas": (0.9, 0.999), "eps": 1e-8},
        }
        for part, opts in (adam or {}).items():
            if part not in self.adam or set(opts) - {"betas", "eps"}:
                raise ValueError(f"model.adam must be {{ae|prior: {{betas, eps}}}}, got {part}: {opts!r}")
            self.adam[part] = {
                **self.adam[part],
                **{k: tuple(v) if k == "betas" else float(v) for k, v in opts.items()},
            }
        self.lr_decay = {"every": 0, "factor": 0.5, **(lr_decay or {})}
        if int(self.lr_decay["every"]) < 0 or not 0 < float(self.lr_decay["factor"]) <= 1:
            raise ValueError(f"model.lr_decay needs every >= 0 and 0 < factor <= 1, got {self.lr_decay!r}")

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        coupling = {"transforms": 8, "hidden_features": [64, 64]}
        return {
            "latent_dim": 20,  # Sec. 3.4: 20 on MNIST / Fashion, 64 on CIFAR-10 / CelebA
            # reconstruction weight (decoder pixel variance 1/beta); GLF: only scales its own loss term
            "beta": 1.0,
            # auto: mlp8 encoder / digits8 decoder at 8x8, Table 3.6 (infogan) otherwise; width: base width
            "encoder": {"arch": "auto", "width": None},
            "decoder": {"arch": "auto", "width": None},
            # Sec. 3.4: 4 affine coupling blocks, 3 FC layers of k units each (k = 64 MNIST, 256 CIFAR/CelebA)
            # (official code: 4 double-coupling blocks = 8 single couplings of zuko's RealNVP)
            "prior": {"kind": "flow", "flow": "realnvp", "flow_args": copy.deepcopy(coupling)},
            "posterior_flow": {"flow": None, "flow_args": copy.deepcopy(coupling)},
            "gmm": {"components": 10, "fit_points": 10000, "reg_covar": 1.0e-6},  # RAE + GMM (Sec. 3.4.4)
            "latent_penalty": 0.5,  # RAE gamma on ||z||^2 / 2 (Sec. 3.4.4: 0.5 after a search)
            "lr": {"ae": 1.0e-3, "prior": 1.0e-3},
            "weight_decay": {"ae": 0.0, "prior": 2.0e-5},  # Sec. 3.4.3: 2e-5 on the flow's optimizer
            # Adam per group; the flow's from the official GLF code (betas 0.8, 0.9, eps 1e-6), AE: torch's
            "adam": {
                "ae": {"betas": [0.9, 0.999], "eps": 1.0e-8},
                "prior": {"betas": [0.8, 0.9], "eps": 1.0e-6},
            },
            "lr_decay": {"every": 0, "factor": 0.5},
            "tasks": {"max_images": 1000, "batch_size": 500},  # recon_mse options
        }  # fmt: skip

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> AutoencoderModel:
        if data.kind != "image":
            raise ValueError(f"autoencoder models need image data, got data kind {data.kind!r}")
        if cfg["prior"]["kind"] not in cls.allowed_priors:
            raise ValueError(
                f"model.prior.kind of {cls.name} must be one of {cls.allowed_priors}, "
                f"got {cfg['prior']['kind']!r}"
            )
        d = int(cfg["latent_dim"])
        if d <= 0:
            raise ValueError(f"model.latent_dim must be a positive integer, got {cfg['latent_dim']!r}")
        e, g = cfg["encoder"], cfg["decoder"]
        encoder = build_ae_encoder(e["arch"], d, data.event_shape, e["width"], cls.gaussian_encoder)
        decoder = build_ae_decoder(g["arch"], d, data.event_shape, g["width"])
        return cls(
            cls._wrap_encoder(encoder, cfg), decoder, build_ae_prior(cfg, d), data.event_shape,
            beta=cfg["beta"], lr={k: float(v) for k, v in cfg["lr"].items()},
            weight_decay={k: float(v) for k, v in cfg["weight_decay"].items()},
            adam=dict(cfg["adam"]), lr_decay=dict(cfg["lr_decay"]), **cls._extra_args(cfg),
        )  # fmt: skip

    @classmethod
    def _wrap_encoder(cls, encoder: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        return encoder

    @classmethod
    def _extra_args(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam ``ae``: the auto-encoder's and the prior's parameters in two groups (own lr / decay)."""
        prior_ids = {id(p) for p in self.prior.parameters()}
        groups = [
            {
                "params": [p for p in self.parameters() if id(p) not in prior_ids],
                "lr": self.lr["ae"],
                "weight_decay": self.weight_decay["ae"],
                **self.adam["ae"],
            }
        ]
        if prior_ids:
            groups.append(
                {
                    "params": list(self.prior.parameters()),
                    "lr": self.lr["prior"],
                    "weight_decay": self.weight_decay["prior"],
                    **self.adam["prior"],
                }
            )
        return {"ae": torch.optim.Adam(groups, lr=self.lr["ae"])}

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        every = int(self.lr_decay["every"])
        if not every:
            return {}
        return {
            "ae": torch.optim.lr_scheduler.StepLR(optimizers["ae"], every, float(self.lr_decay["factor"]))
        }

    # ------------------------------------------------------------------ stage-1 API
    def encode(self, x: Tensor) -> Tensor:
        """The deterministic code :math:`E_\\phi(x)`, ``(B, d)`` (VAEs: the posterior's mode)."""
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """The decoder mean :math:`G_\\theta(z)`, ``(B, *event_shape)``."""
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral sampling :math:`z \\sim p_\\eta` (flow, Gaussian, mixture), :math:`x = G_\\theta(z)`."""
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        return self.decode(self.prior.sample(n, generator=generator))

    @torch.no_grad()
    def reconstruct(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """:math:`G_\\theta(E_\\phi(x))` (the ``recon_mse`` evaluation); masked inputs are not supported."""
        if mask is not None:
            raise ValueError(f"{self.name} reconstructs fully observed images only (no inpainting)")
        return self.decode(self.encode(x))

    # ------------------------------------------------------------------ training
    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The training loss ``loss`` (scalar) and its logged terms, for a batch ``x``."""
        raise NotImplementedError

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """One Adam step on :meth:`losses`."""
        terms = self.losses(_images(batch), ctx.generator)
        ctx.optimize("ae", terms["loss"])
        return {k: float(v.detach()) for k, v in terms.items()}

    @staticmethod
    def _code_stats(z: Tensor, x: Tensor, x_hat: Tensor) -> dict[str, Tensor]:
        return {
            "recon_mse": torch.tensor(batch_mse(x, x_hat.detach(), None)),
            "z_rms": z.detach().pow(2).mean().sqrt(),
        }


class _FlowAE(AutoencoderModel):
    """Deterministic AE + flow prior; :attr:`stop_gradient` picks Eq. (3.7) (GLF) or Eq. (3.5)."""

    allowed_priors = ("flow",)
    stop_gradient: ClassVar[bool] = True

    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        r""":math:`\beta\,\mathcal{L}_{\text{recon}}(x, G(E(x))) - \log p_\eta(z)`; GLF: ``z = sg[E(x)]``."""
        z = self.encoder(x)
        x_hat = self.decoder(z)
        recon = recon_loss(x, x_hat).mean()
        nll = -self.prior.log_prob(z.detach() if self.stop_gradient else z).mean()
        loss = self.beta * recon + nll
        return {"loss": loss, "recon": recon, "nll": nll, **self._code_stats(z, x, x_hat)}


@MODELS.register("glf", help="GLF: deterministic AE + latent flow, flow loss stopped at the codes (Eq. 3.7)")
class GLF(_FlowAE):
    """Generative Latent Flow (Xiao et al. 2019; dissertation Eq. (3.7))."""

    name = "glf"
    stop_gradient = True


@MODELS.register(
    "glf_reg", help="regularized GLF: AE + latent flow, flow NLL back-propagated into the encoder (Eq. 3.5)"
)
class RegularizedGLF(_FlowAE):
    """Regularized GLF (dissertation Eq. (3.5)): the flow NLL also trains the encoder."""

    name = "glf_reg"
    stop_gradient = False


@MODELS.register(
    "rae_gmm", help="RAE + GMM: AE with a latent-norm penalty, 10-component GMM fitted to its codes"
)
class RAEGMM(AutoencoderModel):
    """Regularized autoencoder with an ex-post Gaussian mixture (Ghosh et al. 2020; dissertation Sec. 3.4.4).

    ``latent_penalty`` is :math:`\\gamma`; every training code is recorded in the mixture's buffer and the
    mixture is (re)fitted by EM when sampled after training (:class:`~symgen.models.gmm_prior.GMMPrior`).
    """

    name = "rae_gmm"
    allowed_priors = ("gmm",)

    def __init__(self, *args: Any, latent_penalty: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not float(latent_penalty) >= 0:
            raise ValueError(f"model.latent_penalty must be >= 0, got {latent_penalty!r}")
        self.latent_penalty = float(latent_penalty)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = AutoencoderModel.default_config()
        cfg["prior"]["kind"] = "gmm"
        return cfg

    @classmethod
    def _extra_args(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"latent_penalty": cfg["latent_penalty"]}

    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        r""":math:`\beta\,\mathcal{L}_{\text{recon}} + \gamma\,\tfrac12\|z\|^2`; records the codes (GMM)."""
        z = self.encoder(x)
        x_hat = self.decoder(z)
        recon = recon_loss(x, x_hat).mean()
        penalty = 0.5 * z.pow(2).sum(-1).mean()
        if self.training:
            self.prior.record(z)
        loss = self.beta * recon + self.latent_penalty * penalty
        return {"loss": loss, "recon": recon, "latent_penalty": penalty, **self._code_stats(z, x, x_hat)}


@MODELS.register("vae", help="VAE with a Gaussian prior, beta-weighted ELBO (dissertation Eq. 3.2)")
class VAE(AutoencoderModel):
    """VAE trained by the beta-ELBO, Eq. (3.2); flow prior Eq. (3.4) and flow posterior by config.

    ``encoder`` is a :class:`~symgen.models.inference.FlowPosterior` (Gaussian encoder, then an optional
    flow); ``self.posterior`` names the same module.
    """

    name = "vae"
    allowed_priors = ("gaussian", "flow")
    gaussian_encoder = True

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = AutoencoderModel.default_config()
        cfg["prior"]["kind"] = "gaussian"
        return cfg

    @classmethod
    def _wrap_encoder(cls, encoder: nn.Module, cfg: dict[str, Any]) -> nn.Module:
        pf = cfg["posterior_flow"]
        flow = None
        if pf["flow"]:
            flow = build_flow(
                str(pf["flow"]), event_shape=(int(cfg["latent_dim"]),), **dict(pf["flow_args"] or {})
            )
        return FlowPosterior(encoder, flow)

    @property
    def posterior(self) -> FlowPosterior:
        return self.encoder

    def encode(self, x: Tensor) -> Tensor:
        """The posterior's mode :math:`f_{\\phi_1}(\\mu_{\\phi_0}(x))`."""
        return self.encoder.mode(x)

    @property
    def decoder_sigma(self) -> float:
        """Standard deviation :math:`1/\\sqrt\\beta` of the Gaussian decoder :math:`p_\\theta(x|z)`."""
        return self.beta**-0.5

    @torch.no_grad()
    def iwae_log_likelihood(
        self, x: Tensor, samples: int, generator: torch.Generator | None = None, chunk: int = 65536
    ) -> Tensor:
        r"""The importance-weighted bound (Burda et al. 2015) on :math:`\log p(x)`, per row ``(B,)``:
        :math:`\log\frac1K\sum_k p_\theta(x|z_k)\,p_\eta(z_k)/q_\phi(z_k|x)`, :math:`z_k \sim q_\phi(z|x)`,
        with the full Gaussian decoder :math:`\mathcal N(G_\theta(z), \beta^{-1} I)` (its constant included).
        ``K = samples``; it increases with ``K`` toward :math:`\log p(x)` (VAEBM Sec. 4.4.1: K = 10,000)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        d = x[0].numel()
        const = 0.5 * d * math.log(self.beta / (2 * math.pi))
        rows = max(1, chunk // samples)
        out = []
        for xb in x.split(rows):
            xr = xb.repeat_interleave(samples, 0)
            z, log_q = self.encoder.rsample_and_log_prob(xr, generator)
            log_w = const - self.beta * recon_loss(xr, self.decoder(z)) + self.prior.log_prob(z) - log_q
            out.append(torch.logsumexp(log_w.reshape(len(xb), samples), 1) - math.log(samples))
        return torch.cat(out)

    def losses(self, x: Tensor, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        r"""Negative Eq. (3.2)/(3.4): :math:`-\beta\log p_\theta(x|z) - \log p_\eta(z) + \log q_\phi(z|x)`,
        one reparameterised draw :math:`z \sim q_\phi(z|x)`; ``entropy`` is :math:`-\log q_\phi(z|x)`."""
        z, log_q = self.encoder.rsample_and_log_prob(x, generator)
        x_hat = self.decoder(z)
        recon = recon_loss(x, x_hat).mean()
        nll = -self.prior.log_prob(z).mean()
        entropy = -log_q.mean()
        loss = self.beta * recon + nll - entropy
        return {
            "loss": loss, "recon": recon, "nll": nll, "entropy": entropy, "kl": nll - entropy,
            **self._code_stats(z, x, x_hat),
        }  # fmt: skip


@MODELS.register("vae_flow_prior", help="VAE + flow prior, beta-weighted ELBO (dissertation Eq. 3.4)")
class VAEFlowPrior(VAE):
    """VAE with a normalizing-flow prior (Eq. (3.4)); Fig. 3.6 varies ``model.beta``."""

    name = "vae_flow_prior"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return AutoencoderModel.default_config()


@MODELS.register(
    "vae_flow_posterior", help="VAE + flow posterior (Gaussian encoder then a RealNVP), Gaussian prior"
)
class VAEFlowPosterior(VAE):
    """VAE whose posterior is a Gaussian encoder followed by a flow (Table 3.1's VAE + flow posterior)."""

    name = "vae_flow_posterior"

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = copy.deepcopy(VAE.default_config())
        cfg["posterior_flow"]["flow"] = "realnvp"
        return cfg
