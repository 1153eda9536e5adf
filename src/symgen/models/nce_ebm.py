r"""NCE-EBM (NT-EBM Sec. 3.5, Eq. (10)): the flow-tilted EBM learned by noise-contrastive estimation against
its flow, sampled by latent HMC like NT-EBM. Shared parts: :mod:`symgen.models.tilted_ebm`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from symgen.models.base import StepContext
from symgen.models.short_run_ebm import _positive
from symgen.models.tilted_ebm import TiltedEBM
from symgen.registry import MODELS

__all__ = ["NCEEBM"]


@MODELS.register("nce_ebm", help="NCE-EBM: flow-tilted EBM by noise-contrastive estimation (NT-EBM Eq. 10)")
class NCEEBM(TiltedEBM):
    r"""NT-EBM Sec. 3.5: logistic regression with logit :math:`b + f_\theta(x)` of data (positives) against
    :math:`q_\alpha` samples (negatives, ``noise_ratio`` per positive); sampled like NT-EBM."""

    name = "nce_ebm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bias = nn.Parameter(torch.zeros(()))  # b = log(rho / (1 - rho)) - log Z(theta), Eq. (10)
        self.noise_ratio = _positive("model.noise_ratio", self.opts["noise_ratio"])

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        cfg = super().default_config()
        cfg["lr"] = {"ebm": 1e-5, "flow": 1e-3}  # A.4: 1e-5 for NCE-EBM
        cfg["noise_ratio"] = 1.0  # negatives per positive, (1 - rho) / rho
        return cfg

    @classmethod
    def extra_options(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        return {"noise_ratio": cfg["noise_ratio"]}

    def ebm_parameters(self) -> list[nn.Parameter]:
        return [*self.energy.parameters(), self.bias]

    def logit(self, x: Tensor) -> Tensor:
        r"""Eq. (10): :math:`\log P(+|x) / P(-|x) = b + f_\theta(x)`."""
        return self.bias + self.neg_energy(x)

    def ebm_step(self, x_pos: Tensor, ctx: StepContext) -> tuple[dict[str, float], Tensor | None]:
        n_neg = max(1, round(self.noise_ratio * x_pos.shape[0]))
        x_neg = self.flow_sample(n_neg)
        lp, ln = self.logit(x_pos), self.logit(x_neg)
        loss = (F.softplus(-lp).sum() + F.softplus(ln).sum()) / (lp.shape[0] + ln.shape[0])
        acc = ((lp > 0).float().sum() + (ln <= 0).float().sum()) / (lp.shape[0] + ln.shape[0])
        logs = {"nce_loss": loss.item(), "nce_accuracy": acc.item(), "nce_bias": self.bias.item()}
        logs["grad_norm_ebm"] = ctx.optimize("ebm", loss)
        return logs, None
