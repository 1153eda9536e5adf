r"""VAEBM (dissertation Secs. 4.3.2-4.3.4; Xiao, Kreis, Kautz, Vahdat 2021): an energy tilt of a frozen VAE.

The model is :math:`p_{\theta,\phi}(x) \propto e^{f_\theta(x)} p_\phi(x)` with :math:`p_\phi` a VAE with a
Gaussian decoder, :math:`x = G_\phi(T^z_\phi(\epsilon_z)) + \sigma\epsilon_x` (Eq. 4.18; ``f`` is symgen's
negative energy, the dissertation's :math:`-f`). Training plan (``train.stages``):

1. stage ``model.vae_stage`` (optimizer ``vae``): the VAE part (any registered VAE of
   :mod:`symgen.models.glf`: ``vae``, ``vae_flow_prior``, ``vae_flow_posterior``; ``model.vae.name``) by its
   own beta-ELBO -- or the part is loaded from a VAE run with
   ``model.init_from: {vae: {run: R, source: ""}}``;
2. the EBM stage (optimizer ``ebm``; the VAE frozen): maximum likelihood, Eq. (4.17), with negatives drawn by
   Langevin dynamics in :math:`u = (\epsilon_z, \epsilon_x)` on
   :math:`h(u) \propto e^{f_\theta(T_\phi(u))} \mathcal N(u; 0, I)` (Eq. 4.19,
   :func:`~symgen.densities.tilted_latent_log_prob` over :class:`~symgen.samplers.GeneratorTransport`),
   pushed forward by :math:`T_\phi`; chains start from :math:`\mathcal N(0, I)` (short-run, as the official
   code) or persist (``model.persistent``, the official code's replay buffer; checkpointed by
   :meth:`VAEBM.chain_state`); the kernel is unadjusted Langevin (``model.langevin.kernel: langevin``, the
   paper's) or the same proposal with a Metropolis test (``mala``); ``energy_l2`` adds
   :math:`\lambda(\overline{f^2}(x^+) + \overline{f^2}(x^-))`;
   optionally (``model.decoder_update > 0``, optimizer ``decoder``) the decoder moves toward the tilted model
   by Eq. (4.30): minimise :math:`-\mathbb E_{x \sim p_\phi}[f_\theta(x)]` on fresh reparameterised VAE
   samples.

2-D data: the VAE part is the registered VAE class built on MLPs (``model.vae_mlp``); images: the class's own
``from_config`` with ``model.vae`` merged over its defaults.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.config import merge
from symgen.densities import tilted_latent_log_prob
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.glf import VAE, build_ae_prior
from symgen.models.short_run_ebm import _positive, build_energy, default_energy_config, split_batch
from symgen.nets.encoders import GaussianEncoder
from symgen.registry import MODELS
from symgen.samplers import MALA, Langevin, run_chain
from symgen.samplers.transport import GeneratorTransport

__all__ = ["VAEBM", "build_vae_part"]

VAE_KINDS = ("vae", "vae_flow_prior", "vae_flow_posterior")


def _mlp(d_in: int, d_out: int, hidden: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    width = d_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    mods.append(nn.Linear(width, d_out))
    return nn.Sequential(*mods)


def build_vae_part(cfg: dict[str, Any], data: DataInfo) -> VAE:
    """The VAE part from ``model.vae`` (``name`` + overrides of that class's defaults), ``model.vae_mlp``."""
    section = dict(cfg["vae"])
    name = section.pop("name", None)
    if name not in VAE_KINDS:
        raise ValueError(f"model.vae.name must be one of {', '.join(VAE_KINDS)}, got {name!r}")
    cls = MODELS.get(name)
    # model.vae holds the full VAE defaults; apply only what differs, so the class's own defaults survive
    # (e.g. vae_flow_prior's prior.kind: flow)
    base = VAE.default_config()
    vcfg = merge(cls.default_config(), {k: v for k, v in section.items() if v != base.get(k)}, "model.vae.")
    if data.kind == "image":
        return cls.from_config(vcfg, data)
    d, dim = int(vcfg["latent_dim"]), int(math.prod(data.event_shape))
    h, n = int(cfg["vae_mlp"]["hidden"]), int(cfg["vae_mlp"]["layers"])
    encoder = cls._wrap_encoder(GaussianEncoder(_mlp(dim, 2 * d, h, n), d), vcfg)
    return cls(
        encoder, _mlp(d, dim, h, n), build_ae_prior(vcfg, d), data.event_shape, beta=vcfg["beta"],
        lr={k: float(v) for k, v in vcfg["lr"].items()},
        weight_decay={k: float(v) for k, v in vcfg["weight_decay"].items()}, adam=dict(vcfg["adam"]),
    )  # fmt: skip


@MODELS.register(
    "vaebm", help="VAEBM: energy tilt of a frozen VAE, Langevin in (eps_z, eps_x) space (Eq. 4.19)"
)
class VAEBM(GenerativeModel):
    """A VAE part ``vae`` (:class:`~symgen.models.glf.VAE`) and a negative energy ``energy``."""

    name = "vaebm"
    # a VAE run (source: "") or the VAE part of another VAEBM run (source: vae)
    init_from_kinds: ClassVar[dict[str, tuple[str, ...]]] = {"vae": (*VAE_KINDS, "vaebm")}

    def __init__(self, vae: VAE, energy: nn.Module, kind: str, opts: dict[str, Any]) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise ValueError(f"model.vae must build a VAE (glf.VAE), got {type(vae).__name__}")
        self.vae, self.energy, self.kind = vae, energy, kind
        self.event_shape = tuple(vae.event_shape)
        self.opts = dict(opts)
        self.transport = GeneratorTransport(
            self.decode_base, (vae.latent_dim,), self.event_shape, vae.decoder_sigma
        )
        self.chains: Tensor | None = None  # persistent (eps_z, eps_x) chains (checkpointed: chain_state)

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            # the VAE part: a registered VAE and overrides of its default_config (beta = 1 / sigma_x^2)
            "vae": {**VAE.default_config(), "name": "vae", "latent_dim": 2, "beta": 100.0},
            "vae_mlp": {"hidden": 128, "layers": 3},  # 2-D data: MLP encoder / decoder
            "energy": default_energy_config(),  # 2-D: MLP; images: preset (digits8, ...)
            # negative phase (official code: short-run chains from N(0, I) every update)
            # kernel langevin: the paper's unadjusted Langevin; mala: the same proposal with an MH correction
            "langevin": {"steps": 20, "step_size": 0.05, "noise_scale": 1.0, "kernel": "langevin"},
            "persistent": {"enabled": False, "reinit_prob": 0.05},
            # steps 0: the VAE's own ancestral samples; decoder_mean auto: the decoder mean for images
            "sample": {"steps": 100, "decoder_mean": "auto"},
            "energy_l2": 1.0,  # official code: regularisation of the energies' squares (Sec. 4.4.1)
            "decoder_update": 0.0,  # weight of Eq. (4.30) (0: off; needs optimizer `decoder` in a stage)
            "lr": {"ebm": 1.0e-4, "decoder": 1.0e-5},  # the VAE part: model.vae.lr
            "ebm_betas": [0.0, 0.999],  # Du & Mordatch (2019); NVlabs/VAEBM train_VAEBM.py: (0.99, 0.999)
            "vae_stage": "vae",  # the stage that trains the VAE part by its ELBO
            "tasks": {"iwae_samples": 1000, "grid_resolution": 128, "grid_iwae_samples": 200},
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> VAEBM:
        lang = dict(cfg["langevin"])
        opts = {
            "steps": int(_positive("model.langevin.steps", lang["steps"])),
            "step_size": _positive("model.langevin.step_size", lang["step_size"]),
            "noise_scale": _positive("model.langevin.noise_scale", lang["noise_scale"], allow_zero=True),
            "kernel": str(lang["kernel"]),
            "persistent": bool(cfg["persistent"]["enabled"]),
            "reinit_prob": float(cfg["persistent"]["reinit_prob"]),
            "sample_steps": int(_positive("model.sample.steps", cfg["sample"]["steps"], allow_zero=True)),
            "decoder_mean": data.kind == "image"
            if cfg["sample"]["decoder_mean"] == "auto"
            else bool(cfg["sample"]["decoder_mean"]),
            "energy_l2": _positive("model.energy_l2", cfg["energy_l2"], allow_zero=True),
            "decoder_update": _positive("model.decoder_update", cfg["decoder_update"], allow_zero=True),
            "lr": {k: _positive(f"model.lr.{k}", v) for k, v in dict(cfg["lr"]).items()},
            "ebm_betas": tuple(float(b) for b in cfg["ebm_betas"]),
            "vae_stage": str(cfg["vae_stage"]),
            "tasks": dict(cfg["tasks"]),
        }
        if opts["kernel"] not in ("langevin", "mala"):
            raise ValueError(f"model.langevin.kernel must be 'langevin' or 'mala', got {opts['kernel']!r}")
        if opts["kernel"] == "mala" and opts["noise_scale"] != 1.0:
            raise ValueError("model.langevin.noise_scale must be 1 with kernel 'mala' (the MH test needs it)")
        if not 0.0 <= opts["reinit_prob"] <= 1.0:
            raise ValueError(f"model.persistent.reinit_prob must be in [0, 1], got {opts['reinit_prob']!r}")
        return cls(build_vae_part(cfg, data), build_energy(cfg["energy"], data), data.kind, opts)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.opts["lr"]
        out = {
            "vae": self.vae.configure_optimizers()["ae"],  # model.vae.lr / weight_decay / adam
            "ebm": torch.optim.Adam(self.energy.parameters(), lr=lr["ebm"], betas=self.opts["ebm_betas"]),
        }
        if self.opts["decoder_update"] > 0:
            out["decoder"] = torch.optim.Adam(self.vae.decoder.parameters(), lr=lr["decoder"])
        return out

    # ------------------------------------------------------------------ densities
    def decode_base(self, eps_z: Tensor) -> Tensor:
        r""":math:`G_\phi(T^z_\phi(\epsilon_z))`: prior base noise to the decoder mean (Eq. 4.18)."""
        return self.vae.decode(self.vae.prior.from_base(eps_z))

    def neg_energy(self, x: Tensor) -> Tensor:
        r"""The tilt :math:`f_\theta(x)`, ``(B,)`` (the dissertation's :math:`-f`)."""
        return self.energy(x).reshape(x.shape[0])

    def latent_log_prob(self, u: Tensor) -> Tensor:
        r"""Unnormalised
        :math:`\log h(\epsilon_z, \epsilon_x) = f_\theta(T_\phi(u)) + \log\mathcal N(u; 0, I)`
        (Eq. 4.19), ``u`` of shape ``(B, d_z + d_x)``."""
        return tilted_latent_log_prob(self.neg_energy, self.transport)(u)

    def vae_log_likelihood(self, x: Tensor, samples: int | None = None) -> Tensor:
        """The VAE's importance-weighted bound on :math:`\\log p_\\phi(x)` (``tasks.iwae_samples``)."""
        return self.vae.iwae_log_likelihood(x, int(samples or self.opts["tasks"]["iwae_samples"]))

    @torch.no_grad()
    def log_prob(self, x: Tensor, samples: int | None = None) -> Tensor:
        r"""Unnormalised :math:`\log p_{\theta,\phi}(x) = f_\theta(x) + \log p_\phi(x)`, the VAE's term by its
        importance-weighted bound with ``samples`` (default ``tasks.grid_iwae_samples``) draws."""
        k = int(samples or self.opts["tasks"]["grid_iwae_samples"])
        return self.neg_energy(x) + self.vae.iwae_log_likelihood(x, k)

    def named_densities(self) -> dict[str, Any]:
        """2-D panels / ``kl_grid_parts``: the VAE (IWAE bound) and the VAEBM (unnormalised)."""
        k = int(self.opts["tasks"]["grid_iwae_samples"])
        return {"vae": lambda x: self.vae.iwae_log_likelihood(x, k), "vaebm": self.log_prob}

    # ------------------------------------------------------------------ sampling
    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """:math:`u = (\\epsilon_z, \\epsilon_x) \\sim \\mathcal N(0, I)`, ``(n, d_z + d_x)``."""
        return torch.randn((n, self.transport.dim), generator=generator).to(self.device)

    def langevin(self, u0: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """``steps`` Langevin steps on :meth:`latent_log_prob` from ``u0`` (VAE parameters untouched):
        unadjusted (``model.langevin.kernel: langevin``, Sec. 4.3.3) or Metropolis-adjusted (``mala``, same
        proposal and fixed step size, exact for the current energy)."""
        if steps == 0:
            return u0
        gen = generator if generator is not None and generator.device == u0.device else None
        s = self.opts["step_size"]
        if self.opts["kernel"] == "mala":
            kernel: Langevin | MALA = MALA(s, adaptation=None, generator=gen)
        else:
            kernel = Langevin(s, noise_scale=self.opts["noise_scale"], generator=gen)
        u, _ = run_chain(kernel, self.latent_log_prob, u0, steps, record=False)
        return u.detach()

    def push_forward(self, u: Tensor, mean: bool = False) -> Tensor:
        """:math:`x = T_\\phi(u)` (Eq. 4.18); ``mean``: the decoder mean :math:`G_\\phi(T^z(\\epsilon_z))`."""
        with torch.no_grad():
            if mean:
                return self.decode_base(self.transport.split(u)[0])
            return self.transport(u)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """VAEBM samples: ``sample.steps`` Langevin steps in ``(eps_z, eps_x)`` from N(0, I), pushed
        forward."""
        u = self.langevin(self.noise(n, generator), self.opts["sample_steps"], generator)
        return self.push_forward(u, self.opts["decoder_mean"])

    def vae_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Ancestral samples of the VAE alone (same output convention as :meth:`sample`)."""
        return self.push_forward(self.noise(n, generator), self.opts["decoder_mean"])

    def named_samples(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The VAE's samples and the VAEBM's (Fig. 4.5 / Table 4.1)."""
        return {"vae": self.vae_sample(n, generator), "vaebm": self.sample(n, generator)}

    # ------------------------------------------------------------------ training
    def start(self, n: int) -> Tensor:
        """Chain starts: fresh N(0, I), or the persistent chains (each restarted with ``reinit_prob``)."""
        fresh = self.noise(n)
        if not self.opts["persistent"] or self.chains is None or self.chains.shape[0] != n:
            return fresh
        keep = torch.rand(n, 1, device=fresh.device) >= self.opts["reinit_prob"]
        return torch.where(keep, self.chains, fresh)

    def chain_state(self) -> dict[str, Any]:
        """The persistent chains' last ``u = (eps_z, eps_x)``, ``(B, d_z + d_x)`` (the trainer checkpoints it
        per rank, so a resumed run continues the same chains); empty without persistent chains."""
        return {} if self.chains is None else {"chains": self.chains.detach().clone()}

    def load_chain_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`chain_state` (an empty state: fresh chains at the next update)."""
        chains = state.get("chains")
        if chains is not None and (chains.dim() != 2 or chains.shape[1] != self.transport.dim):
            raise ValueError(
                f"checkpoint chains must have shape (B, {self.transport.dim}), got {tuple(chains.shape)}"
            )
        self.chains = None if chains is None else chains.to(self.device)

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x = split_batch(batch).to(self.device)
        if ctx.stage is not None and ctx.stage == self.opts["vae_stage"]:
            terms = self.vae.losses(x, ctx.generator)
            ctx.optimize("vae", terms["loss"])
            return {f"vae_{k}": float(v.detach()) for k, v in terms.items()}
        u = self.langevin(self.start(x.shape[0]), self.opts["steps"])
        if self.opts["persistent"]:
            self.chains = u
        x_neg = self.push_forward(u)
        f_pos, f_neg = self.neg_energy(x), self.neg_energy(x_neg)
        loss = f_neg.mean() - f_pos.mean()  # Eq. (4.17)
        l2 = self.opts["energy_l2"]
        if l2 > 0:
            loss = loss + l2 * (f_pos.square().mean() + f_neg.square().mean())
        logs = {"f_data": f_pos.mean().item(), "f_model": f_neg.mean().item(), "ebm_loss": loss.item()}
        logs["grad_norm_ebm"] = ctx.optimize("ebm", loss)
        if self.opts["decoder_update"] > 0:  # Eq. (4.30): reparameterised VAE samples toward low energy
            x_vae = self.transport(self.noise(x.shape[0]))
            dec_loss = -self.opts["decoder_update"] * self.neg_energy(x_vae).mean()
            logs["decoder_loss"] = dec_loss.item()
            ctx.optimize("decoder", dec_loss)
        return logs

    @torch.no_grad()
    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """``test_nll_vae_iwae``: minus the VAE's importance-weighted bound (``tasks.iwae_samples``)."""
        return {"test_nll_vae_iwae": float(-self.vae_log_likelihood(data).mean())}
