r"""Short-run EBMs: an energy network whose K-step Langevin flow from fixed noise is the generator.

Nijkamp, Hill, Zhu, Wu (2019) and dissertation Ch. 5 (Xiao et al., 2021): the EBM
:math:`p_\theta(x) \propto \exp f_\theta(x)` (``f = -E``, CoopFlow Eq. (1)) is trained by the
maximum-likelihood gradient (dissertation Eq. (5.1), CoopFlow Eq. (2)) with negatives drawn by a
*short-run* chain from a fixed noise distribution :math:`p_0` (no persistent chains); the chain itself is
the model that is sampled. The loss minimised is

.. math:: L(\theta) = \mathbb E_{\tilde x}[f_\theta(\tilde x)] - \mathbb E_{x \sim p_{data}}[f_\theta(x)]
          + \lambda\,(\mathbb E f_\theta(x)^2 + \mathbb E f_\theta(\tilde x)^2),

(the optional energy L2 of Du & Mordatch, 2019; gradient clipping is ``train.grad_clip``). Variants
(``model.dynamics``):

* ``noisy`` -- Langevin Eq. (5.3), ``x + s^2/2 grad f + s * noise_scale * eps`` (reduced noise, Sec. 5.5.3);
* ``noise_free`` -- gradient ascent, the Euler solver Eq. (5.8) of the gradient-flow ODE;
* ``noise_free`` + ``generator_loss: true`` -- Eq. (5.14): the W-GAN generator term
  :math:`-f_{sg(\theta)}(G_\theta(x_0))`, back-propagated through the unrolled chain (``run_chain(...,
  differentiable=True)``);
* ``ode`` (2-D) -- the ODE gradient flow Eq. (5.5)-(5.6) solved by dopri5, whose exact density is Eq. (5.7)
  (:class:`symgen.samplers.GradientFlow`); ``objective: mle`` trains the same ODE flow by maximum likelihood
  instead of the EBM objective (the comparison of Sec. 5.5.1).

Step-size convention (symgen's, ``docs/samplers.md``): ``x + s^2/2 grad log p``; the dissertation's
:math:`\eta` is ``s^2`` (its "step size 0.1" is ``step_size = sqrt(0.1)``) and its noise scale 0.1 is
``noise_scale = 0.1``.

:class:`LangevinFlow` -- the energy network, its kernels and the unrolled-chain inversion -- is the part
CoopFlow (:mod:`symgen.models.coopflow`) composes with a normalizing flow.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from symgen.densities import LogDensity, ebm_log_prob
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.registry import MODELS
from symgen.samplers import GradientDescent, GradientFlow, Langevin, run_chain

__all__ = [
    "LangevinFlow",
    "ShortRunEBM",
    "build_energy",
    "default_energy_config",
    "check_choice",
    "check_clamp",
    "split_batch",
]

DYNAMICS = ("noisy", "noise_free", "ode")
INITS = ("gaussian", "uniform")
OBJECTIVES = ("ebm", "mle")

# energy presets chosen by image shape when ``model.energy.preset`` is ``auto``
_AUTO_PRESETS = {
    (1, 8, 8): "digits8",
    (1, 28, 28): "dissertation_5_2_mnist",
    (1, 32, 32): "dissertation_5_2_mnist",
    (3, 32, 32): "dissertation_5_2_cifar",
    (3, 64, 64): "dissertation_5_2_celeba",
}


def check_choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming the config ``key``."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def check_clamp(key: str, value: Any) -> tuple[float, float] | None:
    """A ``[lo, hi]`` pair with ``lo < hi`` (``[]`` / ``None``: no clamp), else a ``ValueError`` naming it."""
    if value is None or (isinstance(value, list | tuple) and len(value) == 0):
        return None
    ok = isinstance(value, list | tuple) and len(value) == 2
    ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok or not float(value[0]) < float(value[1]):
        raise ValueError(f"{key} must be [min, max] with min < max, or [] for no clamp; got {value!r}")
    return float(value[0]), float(value[1])


def _positive(key: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{key} must be a number {bound}; got {value!r}")
    return float(value)


def _steps(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an integer >= 0 (number of Langevin steps T); got {value!r}")
    return int(value)


def split_batch(batch: Any) -> Tensor:
    """The data tensor of a batch (``x`` or ``(x, ...)``)."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, tuple | list) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    raise ValueError(f"batch must be a tensor or a tuple (x, ...); got {type(batch).__name__}")


def default_energy_config() -> dict[str, Any]:
    """The ``model.energy`` section shared by the short-run EBM and CoopFlow."""
    return {
        # images: a preset of symgen.nets.ENERGY_PRESETS (auto: by image shape), ``args`` override its kwargs
        "preset": "auto",
        "args": {},
        # 2-D data: MLP of dissertation Sec. 5.5.3 (5 fully connected layers of 256 units, swish)
        "hidden": 256,
        "layers": 4,
        "activation": "swish",
    }


def build_energy(cfg: dict[str, Any], data: DataInfo, auto_presets: dict | None = None) -> nn.Module:
    """The negative energy ``f_theta`` for ``data``: an MLP for 2-D points, a conv preset for images."""
    from symgen.nets import ENERGY_PRESETS, LatentEnergy, build_energy_net

    if data.kind != "image":
        return LatentEnergy(
            int(math.prod(data.event_shape)), int(cfg["hidden"]), int(cfg["layers"]), str(cfg["activation"])
        )
    preset = cfg["preset"]
    if preset == "auto":
        table = {**_AUTO_PRESETS, **(auto_presets or {})}
        preset = table.get(tuple(data.event_shape))
        if preset is None:
            raise ValueError(
                f"model.energy.preset: no automatic preset for images of shape {data.event_shape}; "
                f"choose one of {sorted(ENERGY_PRESETS)}"
            )
    if preset not in ENERGY_PRESETS:
        raise ValueError(
            f"model.energy.preset must be auto or one of {sorted(ENERGY_PRESETS)}; got {preset!r}"
        )
    return build_energy_net({"preset": preset, **dict(cfg["args"])}, data.event_shape)


class LangevinFlow(nn.Module):
    r"""A T-step Langevin flow toward the EBM :math:`\exp f_\theta` (CoopFlow Sec. 3.1; dissertation Eq. 5.4).

    ``run(x0)`` is :math:`x_T = F_\theta(x_0)` by ``run_chain`` with the training kernel (CoopFlow Eq. (3) /
    dissertation Eq. (5.3) or (5.8)) or, with ``test=True``, the sampling kernel; ``invert`` finds the start
    :math:`x_0^*` whose noise-free chain best reproduces ``x`` (CoopFlow Sec. 5.3; Nijkamp et al., 2019).

    Arguments:
        energy: ``f_theta``, ``(B, *event) -> (B,)``.
        kernel: the training kernel (``Langevin`` or ``GradientDescent``).
        steps: ``T`` of training.
        test_kernel, test_steps: the kernel and ``T`` used by ``sample`` (``None``: the training ones).
        recon_kernel: the noise-free kernel of ``invert`` (``None``: ``test_kernel`` must be noise-free).
    """

    def __init__(
        self,
        energy: nn.Module,
        kernel: Langevin,
        steps: int,
        test_kernel: Langevin | None = None,
        test_steps: int | None = None,
        recon_kernel: Langevin | None = None,
    ) -> None:
        super().__init__()
        self.energy = energy
        self.kernel, self.steps = kernel, int(steps)
        self.test_kernel = test_kernel or kernel
        self.test_steps = self.steps if test_steps is None else int(test_steps)
        self.recon_kernel = recon_kernel or self.test_kernel

    def log_prob(self, x: Tensor) -> Tensor:
        r"""Unnormalised EBM log-density :math:`f_\theta(x)`, ``(B,)`` (CoopFlow Eq. (1))."""
        return ebm_log_prob(self.energy)(x)

    def density(self) -> LogDensity:
        return ebm_log_prob(self.energy)

    def run(
        self,
        x0: Tensor,
        *,
        test: bool = False,
        differentiable: bool = False,
        kernel: Langevin | None = None,
        steps: int | None = None,
    ) -> Tensor:
        """``x_T`` after ``T`` steps from ``x0`` (``T = 0``: ``x0`` itself); the graph is kept only when
        ``differentiable`` (otherwise memory is flat in ``T``)."""
        k = kernel or (self.test_kernel if test else self.kernel)
        n = steps if steps is not None else (self.test_steps if test else self.steps)
        if n == 0:
            return x0
        x, _ = run_chain(k, self.density(), x0, n, differentiable=differentiable, record=False)
        return x

    def contrastive_loss(self, x_data: Tensor, x_model: Tensor, energy_l2: float) -> tuple[Tensor, dict]:
        r"""CoopFlow Eq. (2) / dissertation Eq. (5.1) as a loss: :math:`\bar f(\tilde x) - \bar f(x)`
        (+ ``energy_l2`` times the mean squared ``f`` of both sets)."""
        f_data = self.log_prob(x_data)
        f_model = self.log_prob(x_model.detach())
        loss = f_model.mean() - f_data.mean()
        if energy_l2 > 0:
            loss = loss + energy_l2 * (f_data.square().mean() + f_model.square().mean())
        logs = {"f_data": f_data.mean().item(), "f_model": f_model.mean().item(), "ebm_loss": loss.item()}
        return loss, logs

    def frozen_log_prob(self, x: Tensor) -> Tensor:
        r""":math:`f_{sg(\theta)}(x)`: the energy with detached parameters (gradient flows to ``x`` only)."""
        params = {k: v.detach() for k, v in self.energy.named_parameters()}
        buffers = dict(self.energy.named_buffers())
        return torch.func.functional_call(self.energy, {**params, **buffers}, (x,)).reshape(x.shape[0])

    def invert(
        self, x: Tensor, x0: Tensor, mask: Tensor | None = None, steps: int = 200, lr: float = 0.05
    ) -> tuple[Tensor, Tensor]:
        r"""Reconstruction by the unrolled chain (CoopFlow Sec. 5.3; Nijkamp et al., 2019):
        :math:`x_0^* = \arg\min_{x_0} \|M \odot (x - F_\theta(x_0))\|^2` by ``steps`` Adam steps from ``x0``
        through the noise-free chain (``recon_kernel``, ``test_steps``). Returns ``(x0*, F(x0*))``."""
        start = x0.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([start], lr=lr)
        for _ in range(steps):
            out = self.run(start, kernel=self.recon_kernel, steps=self.test_steps, differentiable=True)
            resid = out - x if mask is None else (out - x) * mask
            loss = resid.square().flatten(1).sum(1).sum()  # per-example sums: each start moves on its own
            (grad,) = torch.autograd.grad(loss, start)
            start.grad = grad
            opt.step()
        final = start.detach()
        return final, self.run(final, kernel=self.recon_kernel, steps=self.test_steps).detach()


def build_kernels(
    dynamics: str,
    step_size: float,
    noise_scale: float,
    test_step_size: float,
    test_noise: bool,
    grad_clip: float | None,
    drift_clip: float | None,
    clamp: tuple[float, float] | None,
) -> tuple[Langevin, Langevin, Langevin]:
    """``(train, test, recon)`` kernels: noisy Langevin (Eq. (5.3)) or gradient ascent (Eq. (5.8))."""
    common = {"grad_clip": grad_clip, "drift_clip": drift_clip, "clamp": clamp}
    if dynamics == "noisy":
        train: Langevin = Langevin(step_size, noise_scale=noise_scale, **common)
    else:
        train = GradientDescent(step_size, **common)
    recon = GradientDescent(test_step_size, **common)
    if test_noise and dynamics == "noisy":
        test: Langevin = Langevin(test_step_size, noise_scale=noise_scale, **common)
    else:
        test = recon
    return train, test, recon


@MODELS.register(
    "short_run_ebm", help="short-run EBM: K-step Langevin / gradient / ODE flow from noise (Ch. 5)"
)
class ShortRunEBM(GenerativeModel):
    """Short-run EBM of Nijkamp et al. (2019) and dissertation Ch. 5 (see the module docstring)."""

    name = "short_run_ebm"

    def __init__(
        self,
        langevin: LangevinFlow,
        kind: str,
        event_shape: tuple[int, ...],
        dynamics: str = "noise_free",
        init: str = "gaussian",
        init_scale: float = 1.0,
        ode: dict[str, Any] | None = None,
        objective: str = "ebm",
        generator_loss: bool = False,
        energy_l2: float = 0.0,
        lr: float = 5e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        tasks: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.langevin = langevin
        self.energy = langevin.energy
        self.kind, self.event_shape = kind, tuple(event_shape)
        self.dynamics = check_choice("model.dynamics", dynamics, DYNAMICS)
        self.init = check_choice("model.init", init, INITS)
        self.init_scale = _positive("model.init_scale", init_scale)
        self.objective = check_choice("model.objective", objective, OBJECTIVES)
        self.ode = dict(ode or {})
        if self.objective == "mle" and self.dynamics != "ode":
            raise ValueError(
                "model.objective: mle needs model.dynamics: ode (the only variant with a density)"
            )
        if generator_loss and self.dynamics == "ode":
            raise ValueError("model.generator_loss needs model.dynamics noise_free or noisy (unrolled chain)")
        if self.dynamics == "ode" and kind == "image":
            raise ValueError("model.dynamics: ode is for 2-D data (Sec. 5.3: exact traces); use noise_free")
        self.generator_loss = bool(generator_loss)
        self.energy_l2 = _positive("model.energy_l2", energy_l2, allow_zero=True)
        self.lr, self.betas = float(lr), tuple(betas)
        self.tasks = dict(tasks or {})

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "energy": default_energy_config(),
            "dynamics": "noise_free",  # noisy (Eq. 5.3) | noise_free (Eq. 5.8) | ode (Eq. 5.5-5.7, 2-D)
            "steps": 40,  # K (dissertation MNIST: 40; CIFAR-10 / CelebA: 60)
            "step_size": 0.31623,  # s, x + s^2/2 grad f: the dissertation's eta = 0.1 is s = sqrt(0.1)
            "noise_scale": 0.1,  # noisy dynamics: noise s * noise_scale * eps (dissertation: 0.1)
            "test_steps": None,  # sampling chain (null: steps)
            "test_step_size": None,  # (null: step_size)
            "grad_clip": None,  # element-wise clip of grad f in the chain
            "drift_clip": None,  # element-wise clip of the update s^2/2 grad f
            "clamp": None,  # [min, max] of the chain state (null / []: none)
            "init": "gaussian",  # p0: gaussian (dissertation) | uniform in [-init_scale, init_scale]
            "init_scale": 1.0,
            # ode dynamics: torchdiffeq solver of the gradient flow (dissertation Sec. 5.5.3)
            # (step_size: fixed-step solvers such as rk4 / euler; null for adaptive ones)
            "ode": {
                "t_end": 0.2,
                "method": "dopri5",
                "rtol": 1e-5,
                "atol": 1e-5,
                "trace": "exact",
                "step_size": None,
            },
            "objective": "ebm",  # ebm (Eq. 5.1) | mle (ODE flow by maximum likelihood of Eq. 5.7)
            "generator_loss": False,  # Eq. 5.14: + W-GAN generator term through the unrolled chain
            "energy_l2": 0.0,  # lambda of the energy L2 penalty
            "lr": 5e-4,
            "betas": [0.9, 0.999],
            # evaluation options (recon_mse / inpaint_mse / interpolation_latent / toy panels)
            "tasks": {
                "max_images": 1000,
                "batch_size": 500,
                "inpaint_size": 0.625,
                "inpaint_completions": 2,
                "recon_steps": 200,  # Adam steps over x0 through the unrolled chain (CoopFlow Sec. 5.3)
                "recon_lr": 0.05,
                "grid_resolution": 64,  # 2-D density panels / kl_grid_parts (ODE densities are costly)
            },
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> ShortRunEBM:
        dynamics = check_choice("model.dynamics", cfg["dynamics"], DYNAMICS)
        steps = _steps("model.steps", cfg["steps"])
        test_steps = steps if cfg["test_steps"] is None else _steps("model.test_steps", cfg["test_steps"])
        step = _positive("model.step_size", cfg["step_size"])
        test_step = (
            step
            if cfg["test_step_size"] is None
            else _positive("model.test_step_size", cfg["test_step_size"])
        )
        noise = _positive("model.noise_scale", cfg["noise_scale"], allow_zero=True)
        grad_clip = None if cfg["grad_clip"] is None else _positive("model.grad_clip", cfg["grad_clip"])
        drift_clip = None if cfg["drift_clip"] is None else _positive("model.drift_clip", cfg["drift_clip"])
        clamp = check_clamp("model.clamp", cfg["clamp"])
        train_k, test_k, recon_k = build_kernels(
            dynamics, step, noise, test_step, True, grad_clip, drift_clip, clamp
        )
        energy = build_energy(cfg["energy"], data)
        flow = LangevinFlow(energy, train_k, steps, test_k, test_steps, recon_k)
        betas = cfg["betas"]
        if not (isinstance(betas, list | tuple) and len(betas) == 2):
            raise ValueError(f"model.betas must be [beta1, beta2]; got {betas!r}")
        return cls(
            flow, data.kind, data.event_shape, dynamics, cfg["init"], cfg["init_scale"], dict(cfg["ode"]),
            cfg["objective"], bool(cfg["generator_loss"]), cfg["energy_l2"], _positive("model.lr", cfg["lr"]),
            (float(betas[0]), float(betas[1])), dict(cfg["tasks"]),
        )  # fmt: skip

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ebm": torch.optim.Adam(self.energy.parameters(), lr=self.lr, betas=self.betas)}

    # ------------------------------------------------------------------ parts
    def log_prob(self, x: Tensor) -> Tensor:
        r"""The EBM's unnormalised log-density :math:`f_\theta(x)` (not the density of the samples)."""
        return self.langevin.log_prob(x)

    def initial_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``x_0 ~ p_0``: ``init_scale * N(0, I)`` or ``U(-init_scale, init_scale)`` (never persistent)."""
        shape = (n, *self.event_shape)
        if self.init == "gaussian":
            x = torch.randn(shape, generator=generator)
        else:
            x = torch.rand(shape, generator=generator) * 2 - 1
        return (x * self.init_scale).to(self.device)

    def ode_flow(self, differentiable: bool = False) -> GradientFlow:
        """The gradient-flow ODE of dissertation Eq. (5.5)-(5.7) on ``f_theta``."""
        o = self.ode
        return GradientFlow(
            self.log_prob, t_end=float(o["t_end"]), method=str(o["method"]), rtol=float(o["rtol"]),
            atol=float(o["atol"]), trace=str(o["trace"]), differentiable=differentiable,
            options=None if o.get("step_size") is None else {"step_size": float(o["step_size"])},
        )  # fmt: skip

    def ode_log_prob(self, x: Tensor, differentiable: bool = False) -> Tensor:
        """Exact log-density of the ODE flow's samples, Eq. (5.7), with ``p_0`` the Gaussian ``init``."""
        if self.init != "gaussian":
            raise ValueError("the ODE flow density needs model.init: gaussian (p_0 of Eq. 5.7)")
        scale = self.init_scale
        d = math.prod(self.event_shape)

        def base(x0: Tensor) -> Tensor:
            z = x0 / scale
            return -0.5 * z.flatten(1).square().sum(1) - 0.5 * d * math.log(2 * math.pi) - d * math.log(scale)

        return self.ode_flow(differentiable).log_prob(x, base_log_prob=base)

    def generate(self, x0: Tensor, test: bool = True) -> Tensor:
        """The generator ``x = G_theta(x_0)``: the chain (or the ODE flow) from ``x0``."""
        if self.dynamics == "ode":
            return self.ode_flow().forward(x0)
        return self.langevin.run(x0, test=test)

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x = split_batch(batch)
        if self.objective == "mle":
            nll = -self.ode_log_prob(x, differentiable=True).mean()
            return {"nll": nll.item(), "grad_norm": ctx.optimize("ebm", nll)}
        x0 = self.initial_noise(x.shape[0])
        if self.dynamics == "ode":
            x_neg = self.ode_flow().forward(x0)
            x_gen = None
        elif self.generator_loss:
            x_gen = self.langevin.run(x0, differentiable=True)
            x_neg = x_gen.detach()
        else:
            x_gen, x_neg = None, self.langevin.run(x0)
        loss, logs = self.langevin.contrastive_loss(x, x_neg, self.energy_l2)
        if x_gen is not None:  # Eq. (5.14): + E_sg(G_theta(x0)) = - f_sg(G_theta(x0))
            gen = -self.langevin.frozen_log_prob(x_gen).mean()
            loss = loss + gen
            logs["generator_loss"] = gen.item()
        logs["loss"] = loss.item()
        logs["grad_norm"] = ctx.optimize("ebm", loss)
        return logs

    # ------------------------------------------------------------------ sampling and tasks
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = self.generate(self.initial_noise(n, generator)).detach()
        return x.clamp(-1, 1) if self.kind == "image" else x

    def reconstruct(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``F(x0*)`` with ``x0*`` found through the unrolled noise-free chain from ``x0 ~ p_0``."""
        return self.encode(x, mask, generator)[1]

    def encode(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """``(x0*, F(x0*))``: the chain's latent of ``x`` and the reconstruction (Nijkamp et al., 2019)."""
        if self.dynamics == "ode":
            return self.ode_flow().reverse(x), x
        x0 = self.initial_noise(x.shape[0], generator)
        return self.langevin.invert(
            x, x0, mask, int(self.tasks.get("recon_steps", 200)), float(self.tasks.get("recon_lr", 0.05))
        )

    def decode(self, latent: Tensor) -> Tensor:
        """``G_theta(x0)`` for latents returned by :meth:`encode` (noise-free chain)."""
        if self.dynamics == "ode":
            return self.generate(latent)
        return self.langevin.run(latent, kernel=self.langevin.recon_kernel, steps=self.langevin.test_steps)

    def named_densities(self) -> dict[str, Any]:
        """2-D panels / ``kl_grid_parts``: the EBM's ``exp f`` and, for ODE dynamics, the flow's Eq. (5.7)."""
        out: dict[str, Any] = {"ebm": self.log_prob}
        if self.dynamics == "ode" and self.init == "gaussian":
            out["ode"] = self.ode_log_prob
        return out

    def named_samples(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        return {"short-run EBM": self.sample(n, generator)}

    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """``test_nll`` of the ODE flow (Eq. (5.7), nats); other dynamics have no tractable density."""
        if self.dynamics != "ode":
            raise ValueError(
                "test_nll needs model.dynamics: ode (a short-run chain with noise or discrete steps has no "
                "tractable density); use mmd2 / fd_clf / kl_grid_parts"
            )
        lp = torch.cat([self.ode_log_prob(c).detach() for c in data.split(1000)])
        return {"test_nll": float(-lp.mean())}
