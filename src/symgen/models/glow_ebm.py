r"""Glow + EBM (dissertation Sec. 4.3.1, Eq. (4.8)-(4.10), Table 4.2): the flow-tilted EBM learned by
maximum likelihood with short-run Langevin chains in the flow's latent space (shared parts:
:mod:`symgen.models.tilted_ebm`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from symgen.models.base import StepContext
from symgen.models.short_run_ebm import _positive
from symgen.models.tilted_ebm import TiltedEBM, _int
from symgen.registry import MODELS
from symgen.samplers import Langevin, run_chain

__all__ = ["GlowEBM"]


@MODELS.register("glow_ebm", help="Glow + EBM: flow-tilted EBM by ML, short-run latent Langevin (Eq. 4.10)")
class GlowEBM(TiltedEBM):
    r"""Dissertation Sec. 4.3.1: negatives by ``K`` Langevin steps (Eq. (4.10)) in ``z`` from :math:`q_0`.

    Step convention: symgen's :math:`z + \tfrac{s^2}{2}\nabla\log p + s\,\omega`; Eq. (4.10)'s
    :math:`\epsilon` is :math:`s^2` (its 0.01 is ``step_size: 0.1``)."""

    name = "glow_ebm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        lcfg = self.opts["langevin"]
        self.langevin_steps = _int("model.langevin.steps", lcfg["steps"], 1)
        self.langevin_test_steps = _int("model.langevin.test_steps", lcfg["test_steps"], 1)
        self.langevin = Langevin(_positive("model.langevin.step_size", lcfg["step_size"]))

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = super().default_config()
        cfg["langevin"] = {"steps": 60, "step_size": 0.1, "test_steps": 100}  # Sec. 4.4.1: eps = 0.01
        cfg["energy_l2"] = 0.1  # Sec. 4.4.1: energy regularisation 0.1
        cfg["betas"] = {"ebm": [0.9, 0.999], "flow": [0.9, 0.999]}
        cfg["lr"] = {"ebm": 5e-5, "flow": 1e-3}
        return cfg

    @classmethod
    def extra_options(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"langevin": dict(cfg["langevin"])}

    def short_run(self, n: int, steps: int, generator: torch.Generator | None = None) -> Tensor:
        """Eq. (4.10): ``steps`` Langevin steps on Eq. (4.8) from :math:`z_0 \\sim q_0`; returns ``z``."""
        z0 = self.latent_noise(n, generator)
        gen = generator if generator is not None and generator.device == z0.device else None
        z, _ = run_chain(self.langevin.replace(generator=gen), self.latent_log_prob, z0, steps, record=False)
        return z

    def ebm_step(self, x_pos: Tensor, ctx: StepContext) -> tuple[dict[str, float], Tensor | None]:
        z = self.short_run(x_pos.shape[0], self.langevin_steps)
        with torch.no_grad():
            x_neg = self.flow_forward(z)
        loss, logs = self.ml_loss(x_pos, x_neg)  # Eq. (4.9)
        logs["grad_norm_ebm"] = ctx.optimize("ebm", loss)
        return logs, x_neg

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """The short-run sampler the model was trained with (``langevin.test_steps`` steps from q0)."""
        z = self.short_run(n, self.langevin_test_steps, generator)
        with torch.no_grad():
            return self.flow_forward(z).detach()
