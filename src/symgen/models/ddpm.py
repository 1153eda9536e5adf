r"""DDPM baseline (Ho et al., 2020; dissertation Sec. 2.4) on DDGAN's trunk, with a strided sampler.

The noise-prediction network :math:`\epsilon_\theta(x_t, t)` (DDGAN's generator trunk without a latent,
:func:`symgen.models.ddgan.build_trunk`) is trained by the simple loss
:math:`\mathbb E_{t, x_0, \epsilon}\|\epsilon - \epsilon_\theta(\sqrt{\bar\alpha_t}x_0 + \sqrt{1-\bar\alpha_t}
\epsilon, t)\|^2` (Eq. (2.61) with unit weights) on the discretised VP SDE with ``T = 1000`` steps (DDPM's
linear :math:`\beta` from 1e-4 to 0.02, :func:`symgen.diffusion.vp_schedule`). Sampling (Eq. (2.62),
equivalently
Eqs. (6.7)-(6.11)) predicts :math:`x_0` by Eq. (6.9) and draws from the posterior :math:`q(x_{t-1}|x_t, x_0)`
with :math:`\sigma_t^2 = \tilde\beta_t`; with ``sample_steps = S < T`` it does so on the schedule respaced
to ``S`` evenly spaced levels (:meth:`symgen.diffusion.DiffusionSchedule.respace`; Sec. 2.4.4, Nichol &
Dhariwal 2021), ``S`` network evaluations per sample.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from symgen.diffusion import DiffusionSchedule
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.ddgan import (
    _integer,
    _number,
    build_trunk,
    check_schedule,
    cosine_schedulers,
    default_net_config,
)
from symgen.models.short_run_ebm import split_batch
from symgen.registry import MODELS

__all__ = ["DDPM"]


@MODELS.register("ddpm", help="DDPM baseline: epsilon prediction, many steps, strided sampler (Sec. 2.4)")
class DDPM(GenerativeModel):
    """DDPM with DDGAN's trunk (see the module docstring)."""

    name = "ddpm"

    def __init__(
        self,
        schedule: DiffusionSchedule,
        net: nn.Module,
        event_shape: tuple[int, ...],
        sample_steps: int | None = None,
        sweep_steps: tuple[int, ...] = (),
        clip_x0: bool = False,
        lr: float = 2e-4,
        lr_decay_steps: int | None = None,
        lr_min: float = 1e-5,
    ) -> None:
        super().__init__()
        self.schedule, self.net, self.event_shape = schedule, net, tuple(event_shape)
        self.sample_steps = self._check_steps("model.sample_steps", sample_steps or schedule.T)
        self.sweep_steps = tuple(self._check_steps("model.sweep_steps", s) for s in sweep_steps)
        self.clip_x0, self.lr = bool(clip_x0), float(lr)
        self.lr_decay_steps, self.lr_min = lr_decay_steps, float(lr_min)

    def _check_steps(self, key: str, steps: Any) -> int:
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.schedule.T:
            raise ValueError(
                f"{key} must be integers in 1..{self.schedule.T} (model.num_steps); got {steps!r}"
            )
        return int(steps)

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "num_steps": 1000,  # T of training (DDPM)
            "beta_min": 0.1,  # discretised VP SDE: T = 1000 gives DDPM's linear 1e-4 .. 0.02
            "beta_max": 20.0,
            "sample_steps": None,  # S of the strided sampler (null: num_steps)
            "sweep_steps": [],  # step counts of the quality-vs-time evaluation (sampling_tradeoff)
            **default_net_config(),
            "clip_x0": False,  # clamp the predicted x0 to [-1, 1] while sampling (DDPM's image sampler)
            "lr": 2.0e-4,  # Adam (DDPM CIFAR-10)
            "lr_decay_steps": None,  # cosine decay over this many updates (null: constant)
            "lr_min": 1.0e-5,
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> DDPM:
        schedule = check_schedule(cfg)
        decay = cfg["lr_decay_steps"]
        sweep = cfg["sweep_steps"]
        if not isinstance(sweep, list | tuple):
            raise ValueError(f"model.sweep_steps must be a list of step counts; got {sweep!r}")
        return cls(
            schedule, build_trunk(cfg, data, 0), data.event_shape, cfg["sample_steps"], tuple(sweep),
            bool(cfg["clip_x0"]), _number("model.lr", cfg["lr"]),
            None if decay is None else _integer("model.lr_decay_steps", decay, 1),
            _number("model.lr_min", cfg["lr_min"], strict=False),
        )  # fmt: skip

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.Adam(self.net.parameters(), lr=self.lr)}

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        return cosine_schedulers(optimizers, self.lr_decay_steps, self.lr_min)

    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x0 = split_batch(batch)
        t = self.schedule.sample_t(len(x0), ctx.generator, x0.device)
        eps = torch.randn(x0.shape, generator=ctx.generator).to(x0)
        xt = self.schedule.q_sample(x0, t, noise=eps)
        loss = (self.net(xt, t.to(xt.dtype)) - eps).square().flatten(1).sum(1).mean() / x0[0].numel()
        return {"loss": loss.item(), "grad_norm": ctx.optimize("net", loss)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int | None = None) -> Tensor:
        """Ancestral sampling with ``steps`` (default ``model.sample_steps``) network evaluations."""
        sched = self.schedule if (steps or self.sample_steps) == self.schedule.T else None
        sched = sched or self.schedule.respace(self._check_steps("steps", steps or self.sample_steps))
        x = torch.randn((n, *self.event_shape), generator=generator).to(self.device)
        for i in range(sched.T, 0, -1):
            t = torch.full((n,), i, device=x.device, dtype=torch.long)
            label = sched.times[i - 1].to(x.dtype).expand(n).to(x.device)
            x0 = sched.predict_x0(x, t, self.net(x, label))
            if self.clip_x0:
                x0 = x0.clamp(-1, 1)
            x = sched.posterior_sample(x0, x, t, generator=generator)
        return x

    @property
    def nfe(self) -> int:
        return self.sample_steps

    def sampling_variants(self) -> dict[str, tuple[int, Any]]:
        """``{label: (network evaluations per sample, sample(n, generator))}``: ``model.sweep_steps`` (or the
        default step count) for cost/quality sweeps."""
        steps = self.sweep_steps or (self.sample_steps,)
        return {f"{s} steps": (s, partial(self.sample, steps=s)) for s in steps}
