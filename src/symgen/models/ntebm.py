r"""NT-EBM (Nijkamp et al., 2022) Algorithm 1: a flow-tilted EBM learned by maximum likelihood with persistent
HMC chains in the flow's latent space (appendix A.4). Shared parts: :mod:`symgen.models.tilted_ebm`."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from symgen.models.base import StepContext
from symgen.models.tilted_ebm import TiltedEBM
from symgen.registry import MODELS
from symgen.samplers import ChainState, run_chain

__all__ = ["NTEBM"]


@MODELS.register("ntebm", help="NT-EBM: flow-tilted EBM by ML with persistent latent HMC chains (Alg. 1)")
class NTEBM(TiltedEBM):
    """NT-EBM Algorithm 1: persistent HMC chains in ``z`` (checkpointed with their adapted step size)."""

    name = "ntebm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chains: ChainState | None = None
        self.adaptation_state: dict[str, Any] | None = None

    def chain_state(self) -> dict[str, Any]:
        if self.chains is None:
            return {}
        return {"chains": self.chains.state_dict(), "adaptation": self.adaptation_state}

    def load_chain_state(self, state: dict[str, Any]) -> None:
        if not state:
            self.chains, self.adaptation_state = None, None
            return
        self.chains = ChainState.from_state_dict(state["chains"])
        self.adaptation_state = state.get("adaptation")

    def sampling_step_size(self) -> float:
        if self.chains is None:
            return super().sampling_step_size()
        return float(self.chains.step_size.mean())

    def persistent_start(self, n: int) -> ChainState | Tensor:
        r"""Alg. 1 input :math:`z_{i,0} \sim q_0` on the first call, then the chains' last state (a chain is
        restarted from :math:`q_0` with probability ``reinit_prob``)."""
        if self.chains is None or self.chains.position.shape[0] != n:
            self.adaptation_state = None
            return self.latent_noise(n)
        state = self.chains
        p = self.opts["reinit_prob"]
        if p > 0:
            fresh = torch.rand(n, device=state.position.device) < p
            mask = fresh.reshape(n, *([1] * len(self.event_shape)))
            state = ChainState(
                torch.where(mask, self.latent_noise(n), state.position), None, None, state.step_size,
                state.iteration,
            )  # fmt: skip
        return state

    def ebm_step(self, x_pos: Tensor, ctx: StepContext) -> tuple[dict[str, float], Tensor | None]:
        start = self.persistent_start(x_pos.shape[0])
        k = self.opts["steps"]
        adapt = k if self.hmc.adaptation is not None else 0
        z, trace = run_chain(  # Alg. 1 line 1: K HMC steps on Eq. (9), step size adapted throughout
            self.hmc, self.latent_log_prob, start, k, adapt_steps=adapt,
            adaptation_state=self.adaptation_state if adapt else None,
        )  # fmt: skip
        self.chains, self.adaptation_state = trace.state, trace.adaptation_state
        with torch.no_grad():
            x_neg = self.flow_forward(z)  # line 2: push forward
        loss, logs = self.ml_loss(x_pos, x_neg)  # lines 3-4, Eq. (6)
        logs["grad_norm_ebm"] = ctx.optimize("ebm", loss)
        logs["hmc_accept"] = float(trace.acceptance_prob.mean())
        logs["hmc_step_size"] = float(trace.state.step_size.mean())
        return logs, x_neg
