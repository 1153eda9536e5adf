r"""Denoising diffusion GANs (dissertation Ch. 6; Xiao, Kreis, Vahdat, ICLR 2022).

A few large denoising steps of the discretised VP SDE (:func:`symgen.diffusion.vp_schedule`, Sec. 6.3.3), each
modelled by a conditional GAN. The generator :math:`G_\theta(x_t, z, t)` predicts :math:`x_0`, and
:math:`p_\theta(x_{t-1}|x_t) = \int p(z)\, q(x_{t-1} | x_t, x_0 = G_\theta(x_t, z, t))\, dz` (Eq. (6.12)). The
time-conditioned discriminator :math:`D_\phi(x_{t-1}, x_t, t)` contrasts real pairs from the forward process
(Eq. (6.4)) with generated ones under the non-saturating loss (Eqs. (6.3), (6.5)), with the :math:`R_1`
penalty of Eq. (6.16) on the real :math:`x_{t-1}` every ``r1_every`` discriminator updates (lazy
regularisation, official ``--lazy_reg``). One training step is Algorithm 1, :meth:`DDGAN.sample` Algorithm 2.

Ablations of Table 6.2 (``model.parametrization``): ``posterior`` (Eq. (6.12), the main model), ``direct``
(``G`` outputs :math:`x_{t-1}`, no posterior sampling), ``noise`` (``G`` outputs the noise :math:`\epsilon`,
turned into :math:`x_0` by Eq. (6.9) before the posterior sampling); ``model.nz: 0`` removes the latent
variable. ``model.num_steps: 1`` is a plain (unconditional) GAN.

The EMA of the generator is ``train.ema_decay`` with ``train.ema_modules: [generator]``; cosine learning-rate
decay of both players over ``model.lr_decay_steps`` updates (Sec. 6.4.7, "Optimization").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symgen.diffusion import DiffusionSchedule, vp_schedule
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.short_run_ebm import check_choice, split_batch
from symgen.registry import MODELS

__all__ = ["DDGAN", "build_trunk", "check_schedule", "cosine_schedulers", "NETS"]

PARAMETRIZATIONS = ("posterior", "direct", "noise")
NETS = ("auto", "mlp", "adamlp", "unet")


def _number(key: str, value: Any, low: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > low if strict else value >= low):
        raise ValueError(f"{key} must be a number {'>' if strict else '>='} {low}; got {value!r}")
    return float(value)


def _integer(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low}; got {value!r}")
    return int(value)


def check_schedule(cfg: dict[str, Any]) -> DiffusionSchedule:
    """The VP schedule of ``model.num_steps``, ``model.beta_min``, ``model.beta_max``; bad values raise a
    ``ValueError`` naming the key (``T < 1``, ``beta_min >= beta_max``)."""
    T = _integer("model.num_steps", cfg["num_steps"], 1)
    bmin = _number("model.beta_min", cfg["beta_min"], strict=False)
    bmax = _number("model.beta_max", cfg["beta_max"], strict=False)
    if not bmin < bmax:
        raise ValueError(f"model.beta_min must be < model.beta_max; got beta_min={bmin}, beta_max={bmax}")
    return vp_schedule(T, bmin, bmax)


def default_net_config() -> dict[str, Any]:
    """The ``model.mlp`` / ``model.unet`` / ``model.disc`` sections shared by DDGAN and DDPM."""
    return {
        # auto: mlp for 2-D data, unet for images | mlp | adamlp (vectors; images flattened) | unet
        "net": "auto",
        # Sec. 6.4.7 toy networks: 3 fully connected layers of 512, LeakyReLU 0.2 (G and D); adamlp: the same
        # widths with t (and mapping(z)) through adaptive layer norms (z_emb_dim, mapping_layers: adamlp only)
        "mlp": {
            "hidden": 512,
            "layers": 3,
            "activation": "lrelu",
            "time_dim": 32,
            "z_emb_dim": 128,
            "mapping_layers": 3,
        },
        # Table 6.6 (CIFAR-10 column; z_emb_dim 512 there, mapping_layers 3)
        "unet": {
            "base_channels": 128,
            "channel_mults": [1, 2, 2, 2],
            "num_res_blocks": 2,
            "attn_resolutions": [16],
            "dropout": 0.0,
            "z_emb_dim": 256,
            "mapping_layers": 3,
        },
    }


def _net_kind(cfg: dict[str, Any], data: DataInfo) -> str:
    kind = check_choice("model.net", cfg["net"], NETS)
    if kind == "auto":
        kind = "unet" if data.kind == "image" else "mlp"
    if kind == "unet" and len(data.event_shape) != 3:
        raise ValueError(f"model.net: unet needs images (C, H, W); the data has shape {data.event_shape}")
    return kind


def build_trunk(cfg: dict[str, Any], data: DataInfo, nz: int) -> nn.Module:
    """The network ``f(x_t, t[, z]) -> (B, *event)`` of DDGAN's generator (``nz`` latents) or DDPM's
    noise predictor (``nz = 0``): an MLP (Sec. 6.4.7), the MLP with adaptive norms, or the AdaGN U-Net
    (Sec. 6.3.2)."""
    from symgen.nets.ddgan import AdaMLPGenerator, MLPGenerator, UNetGenerator

    kind, m = _net_kind(cfg, data), cfg["mlp"]
    args = (
        data.event_shape,
        nz,
        int(m["hidden"]),
        int(m["layers"]),
        str(m["activation"]),
        int(m["time_dim"]),
    )
    if kind == "mlp":
        return MLPGenerator(*args)
    if kind == "adamlp":
        return AdaMLPGenerator(*args, int(m["z_emb_dim"]), int(m["mapping_layers"]))
    u = dict(cfg["unet"])
    return UNetGenerator(
        data.event_shape, nz, int(u.pop("z_emb_dim")), int(u.pop("mapping_layers")),
        base_channels=int(u["base_channels"]), channel_mults=tuple(u["channel_mults"]),
        num_res_blocks=int(u["num_res_blocks"]), attn_resolutions=tuple(u["attn_resolutions"]),
        dropout=float(u["dropout"]),
    )  # fmt: skip


def cosine_schedulers(
    optimizers: dict[str, torch.optim.Optimizer], steps: int | None, lr_min: float
) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
    """Cosine decay (Loshchilov & Hutter, 2016) of every optimizer to ``lr_min`` over ``steps`` updates
    (official code: ``CosineAnnealingLR(T_max = iterations, eta_min = 1e-5)``); ``None``: constant."""
    if not steps:
        return {}
    return {
        k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=steps, eta_min=lr_min)
        for k, o in optimizers.items()
    }


@MODELS.register(
    "ddgan", help="denoising diffusion GAN: a few denoising steps, each a conditional GAN (Ch. 6)"
)
class DDGAN(GenerativeModel):
    """Denoising diffusion GAN (see the module docstring)."""

    name = "ddgan"

    def __init__(
        self,
        schedule: DiffusionSchedule,
        generator: nn.Module,
        discriminator: nn.Module,
        event_shape: tuple[int, ...],
        nz: int,
        parametrization: str = "posterior",
        output_tanh: bool = False,
        r1_gamma: float = 0.05,
        r1_every: int = 1,
        lr: dict[str, float] | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        lr_decay_steps: int | None = None,
        lr_min: float = 1e-5,
    ) -> None:
        super().__init__()
        self.schedule = schedule
        self.generator, self.discriminator = generator, discriminator
        self.event_shape, self.nz = tuple(event_shape), int(nz)
        self.parametrization = check_choice("model.parametrization", parametrization, PARAMETRIZATIONS)
        self.output_tanh = bool(output_tanh)
        self.r1_gamma = _number("model.r1_gamma", r1_gamma, strict=False)
        self.r1_every = _integer("model.r1_every", r1_every, 1)
        self.lr = dict(lr or {"generator": 1.6e-4, "discriminator": 1e-4})
        self.betas = betas
        self.lr_decay_steps, self.lr_min = lr_decay_steps, float(lr_min)

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "num_steps": 4,  # T (Sec. 6.4: T = 4 for the main results)
            "beta_min": 0.1,  # VP SDE, Eq. (6.14)
            "beta_max": 20.0,
            "parametrization": "posterior",  # posterior (Eq. 6.12) | direct | noise (Table 6.2 ablations)
            "nz": 100,  # latent size L (Table 6.6: 256 CIFAR-10, 100 CelebA-HQ / LSUN); 0: no latent
            **default_net_config(),
            # discriminator: the MLP of model.mlp for mlp nets; Table 6.7 for images
            "disc": {"stem": 128, "blocks": [[128, False], [256, True], [512, True]], "time_dim": 128},
            "output_tanh": False,  # tanh on G's output (official image default; x0 in [-1, 1])
            "r1_gamma": 0.05,  # gamma of Eq. (6.16) (CIFAR-10 0.05; CelebA-HQ / LSUN 1)
            "r1_every": 1,  # lazy R1: penalise every k-th discriminator update (official --lazy_reg)
            "lr": {"generator": 1.6e-4, "discriminator": 1.0e-4},  # Table 6.8
            "betas": [0.5, 0.9],  # Adam (Table 6.8)
            "lr_decay_steps": None,  # cosine decay over this many updates (null: constant lr)
            "lr_min": 1.0e-5,  # eta_min of the cosine decay (official code)
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> DDGAN:
        from symgen.nets.ddgan import ConvDiscriminator, MLPDiscriminator

        schedule = check_schedule(cfg)
        nz = _integer("model.nz", cfg["nz"], 0)
        gen = build_trunk(cfg, data, nz)
        if _net_kind(cfg, data) != "unet":
            m = cfg["mlp"]
            disc: nn.Module = MLPDiscriminator(
                data.event_shape, int(m["hidden"]), int(m["layers"]), str(m["activation"]), int(m["time_dim"])
            )
        else:
            d = cfg["disc"]
            disc = ConvDiscriminator(data.event_shape, int(d["stem"]), d["blocks"], int(d["time_dim"]))
        lr = cfg["lr"]
        if not isinstance(lr, dict) or set(lr) != {"generator", "discriminator"}:
            raise ValueError(f"model.lr must be {{generator: lr, discriminator: lr}}; got {lr!r}")
        betas = cfg["betas"]
        if not (isinstance(betas, list | tuple) and len(betas) == 2):
            raise ValueError(f"model.betas must be [beta1, beta2]; got {betas!r}")
        decay = cfg["lr_decay_steps"]
        decay = None if decay is None else _integer("model.lr_decay_steps", decay, 1)
        return cls(
            schedule, gen, disc, data.event_shape, nz, cfg["parametrization"], bool(cfg["output_tanh"]),
            cfg["r1_gamma"], cfg["r1_every"],
            {k: _number(f"model.lr.{k}", v) for k, v in lr.items()},
            (float(betas[0]), float(betas[1])), decay, _number("model.lr_min", cfg["lr_min"], strict=False),
        )  # fmt: skip

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "generator": torch.optim.Adam(
                self.generator.parameters(), lr=self.lr["generator"], betas=self.betas
            ),
            "discriminator": torch.optim.Adam(
                self.discriminator.parameters(), lr=self.lr["discriminator"], betas=self.betas
            ),
        }

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        return cosine_schedulers(optimizers, self.lr_decay_steps, self.lr_min)

    # ------------------------------------------------------------------ the denoising step
    @property
    def nfe(self) -> int:
        """Network evaluations per sample: one generator call per denoising step (``T``)."""
        return self.schedule.T

    def latent(self, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """:math:`z \\sim \\mathcal N(0, I_L)`, ``(n, nz)`` (``None`` without a latent)."""
        if not self.nz:
            return None
        return torch.randn(n, self.nz, generator=generator).to(self.device)

    def denoise(self, xt: Tensor, t: Tensor, z: Tensor | None, generator: torch.Generator | None = None):
        r"""One draw :math:`x_{t-1} \sim p_\theta(x_{t-1}|x_t)` (Algorithm 1 steps 3-4; Eq. (6.12) or the
        ablated parametrisation)."""
        out = self.generator(xt, t.to(xt.dtype), z)
        if self.output_tanh and self.parametrization != "noise":
            out = torch.tanh(out)
        if self.parametrization == "direct":
            return out
        x0 = self.schedule.predict_x0(xt, t, out) if self.parametrization == "noise" else out
        return self.schedule.posterior_sample(x0, xt, t, generator=generator)

    # ------------------------------------------------------------------ training (Algorithm 1)
    def r1_penalty(self, x_prev: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""``(D(x_{t-1}, x_t, t), R)`` with
        :math:`R = \mathbb E\|\nabla_{x_{t-1}} D_\phi(x_{t-1}, x_t, t)\|^2`
        on real pairs (Eq. (6.16) without the factor :math:`\gamma/2`), differentiable in :math:`\phi`."""
        x_prev = x_prev.detach().requires_grad_(True)
        logits = self.discriminator(x_prev, xt, t.to(xt.dtype))
        (grad,) = torch.autograd.grad(logits.sum(), x_prev, create_graph=True)
        return logits, grad.flatten(1).square().sum(1).mean()

    def discriminator_step(self, x0: Tensor, ctx: StepContext) -> dict[str, float]:
        """Algorithm 1 step 5 (Eq. (6.3)) plus the lazy :math:`R_1` penalty (Eq. (6.16))."""
        gen = ctx.generator
        t = self.schedule.sample_t(len(x0), gen, x0.device)
        x_prev, xt = self.schedule.q_pair(x0, t, generator=gen)
        lazy = self.r1_gamma > 0 and ctx.step % self.r1_every == 0  # one D update per step
        if lazy:
            d_real, r1 = self.r1_penalty(x_prev, xt, t)
        else:
            d_real, r1 = self.discriminator(x_prev, xt, t.to(xt.dtype)), torch.zeros((), device=x0.device)
        with torch.no_grad():
            fake = self.denoise(xt, t, self.latent(len(x0), gen), gen)
        d_fake = self.discriminator(fake, xt, t.to(xt.dtype))
        adv = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        loss = adv + 0.5 * self.r1_gamma * r1
        logs = {"d_loss": adv.item(), "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if lazy:
            logs["r1"] = r1.item()
        logs["d_grad_norm"] = ctx.optimize("discriminator", loss)
        return logs

    def generator_step(self, x0: Tensor, ctx: StepContext) -> dict[str, float]:
        """Algorithm 1 step 6: the non-saturating generator loss (Eq. (6.5)) on fresh times and pairs."""
        gen = ctx.generator
        t = self.schedule.sample_t(len(x0), gen, x0.device)
        xt = self.schedule.q_sample(x0, t, generator=gen)
        fake = self.denoise(xt, t, self.latent(len(x0), gen), gen)
        loss = F.softplus(-self.discriminator(fake, xt, t.to(xt.dtype))).mean()
        return {"g_loss": loss.item(), "g_grad_norm": ctx.optimize("generator", loss)}

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x0 = split_batch(batch)
        return {**self.discriminator_step(x0, ctx), **self.generator_step(x0, ctx)}

    # ------------------------------------------------------------------ sampling (Algorithm 2)
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = torch.randn((n, *self.event_shape), generator=generator).to(self.device)
        for step in range(self.schedule.T, 0, -1):
            t = torch.full((n,), step, device=x.device, dtype=torch.long)
            x = self.denoise(x, t, self.latent(n, generator), generator)
        return x

    def sampling_variants(self) -> dict[str, tuple[int, Any]]:
        """``{label: (network evaluations per sample, sample(n, generator))}`` for cost/quality sweeps."""
        return {f"T={self.schedule.T}": (self.nfe, self.sample)}
