"""A normalizing flow trained by maximum likelihood: the plain baseline every paper starts from.

For 2-D data the flow is a vector flow (zuko RealNVP by default); for images it is the image Glow of
:mod:`symgen.flows.glow`, trained on uniformly dequantised data and reported in bits per dimension.
Loss: ``-mean log p(x)`` (change of variables, e.g. Eq. (1) of the CoopFlow paper).

Vector flows standardise their input by default (``model.standardize``): an affine map fitted to the first
training batch (:func:`symgen.flows.standardized`), whose log-determinant keeps ``log p(x)`` the density of
the raw data. Image flows ignore the option (their data are already in [-1, 1]).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

import torch
from torch import Tensor

from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.registry import FLOWS, MODELS, closest

__all__ = ["FlowModel", "check_flow_args", "flow_data", "flow_from_config", "flow_samples", "initialize_flow"]


def check_flow_args(flow_name: str, args: dict[str, Any]) -> None:
    """Reject keys of ``model.flow_args`` that the flow's constructor does not accept."""
    params = inspect.signature(FLOWS.get(flow_name)).parameters
    valid = [k for k in params if k not in ("self", "event_shape")]
    for key in args:
        if key not in valid:
            raise ValueError(
                f"unknown config key 'model.flow_args.{key}' for flow '{flow_name}'"
                f"{closest(key, valid)}; valid: {', '.join(valid)}"
            )


@MODELS.register("flow", help="normalizing flow by maximum likelihood (vector flow for 2-D, Glow for images)")
class FlowModel(GenerativeModel):
    """Maximum-likelihood normalizing flow on 2-D points or images."""

    name = "flow"

    def __init__(
        self,
        flow: torch.nn.Module,
        kind: str,
        event_shape: tuple[int, ...],
        lr: float,
        weight_decay: float,
        n_bits: int,
        lr_decay: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 < lr_decay <= 1.0:
            raise ValueError(f"model.lr_decay must be in (0, 1], got {lr_decay}")
        self.lr_decay = lr_decay
        self.flow = flow
        self.kind = kind
        self.event_shape = tuple(event_shape)
        self.lr, self.weight_decay, self.n_bits = lr, weight_decay, n_bits

    legacy_defaults: ClassVar[dict[str, Any]] = {"standardize": False}  # runs written before issue 17

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "flow": "auto",  # registered flow name; auto = realnvp for 2-D data, glow for images
            "flow_args": {},  # constructor arguments of the flow (checked against its signature)
            "lr": 1e-3,
            "weight_decay": 0.0,
            "lr_decay": 1.0,  # learning rate multiplied by this after every step (1.0: constant)
            "n_bits": 8,  # images: bits of the discrete data (uniform dequantisation, bits/dim)
            "standardize": True,  # vector flows: affine normalisation fitted to the first batch (not images)
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> FlowModel:

        flow = flow_from_config(cfg, data)
        return cls(
            flow,
            data.kind,
            data.event_shape,
            float(cfg["lr"]),
            float(cfg["weight_decay"]),
            int(cfg["n_bits"]),
            float(cfg["lr_decay"]),
        )

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"flow": torch.optim.AdamW(self.flow.parameters(), lr=self.lr, weight_decay=self.weight_decay)}

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        if self.lr_decay == 1.0:
            return {}
        return {"flow": torch.optim.lr_scheduler.ExponentialLR(optimizers["flow"], gamma=self.lr_decay)}

    def _prepare(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return flow_data(x, self.kind == "image", self.n_bits, generator)

    def initialize(self, batch: Tensor) -> None:
        initialize_flow(self.flow, self._prepare(batch))

    def log_prob(self, x: Tensor) -> Tensor:
        """``log p(x)`` under the flow (per example)."""
        return self.flow().log_prob(x)

    def training_step(self, batch: Tensor, ctx: StepContext) -> dict[str, float]:
        x = self._prepare(batch)
        nll = -self.log_prob(x).mean()
        gnorm = ctx.optimize("flow", nll)
        logs = {"nll": nll.item(), "grad_norm": gnorm}
        if self.kind == "image":
            logs["bpd"] = self._bpd(-nll.detach())
        return logs

    def _bpd(self, log_prob: Tensor) -> float:
        from symgen.flows import bits_per_dim

        return float(bits_per_dim(log_prob, self.event_shape, self.n_bits).mean())

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, max_redraws: int = 10) -> Tensor:
        """Ancestral samples ``x = g(z)``, ``z ~ N(0, I)``.

        An image flow's inverse divides by its bounded coupling scales, so a latent far in the tails can
        overflow; such rows (rare) are redrawn up to ``max_redraws`` times before giving up.
        Images are clamped to ``[-1, 1]``.
        """
        dist = self.flow()
        x = self._draw(dist, n)
        for _ in range(max_redraws):
            bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
            if not bad.any():
                break
            x[bad] = self._draw(dist, int(bad.sum()))
        else:
            raise FloatingPointError(
                f"flow samples stayed non-finite after {max_redraws} redraws; "
                "the flow has diverged (check its last checkpoint's log_prob)"
            )
        return x.clamp(-1, 1) if self.kind == "image" else x

    def _draw(self, dist: Any, n: int) -> Tensor:
        from symgen.flows import unchecked

        with unchecked(self.flow):
            return dist.sample((n,))

    @torch.no_grad()
    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """Held-out negative log-likelihood (nats per example; bits/dim for images)."""
        lp = torch.cat([self.log_prob(self._prepare(chunk)) for chunk in data.split(512)])
        out = {"test_nll": float(-lp.mean())}
        if self.kind == "image":
            out["test_bpd"] = self._bpd(lp)
        return out


def flow_samples(flow: torch.nn.Module, z: Tensor, image: bool) -> Tensor:
    r""":math:`x = g_\alpha(z)` of a flow module with its non-finite guard off (a latent far in the tails may
    overflow; callers redraw or reject such rows); images: non-finite values set to 0, then clamped to
    ``[-1, 1]`` (the domain of the EBMs that revise or tilt flow samples: CoopFlow, NT-EBM)."""
    from symgen.flows import unchecked

    with unchecked(flow):
        x, _ = flow().forward(z)
    return x.nan_to_num(0.0).clamp(-1, 1) if image else x


def flow_data(x: Tensor, image: bool, n_bits: int, generator: torch.Generator | None = None) -> Tensor:
    """Data as a flow models it: images uniformly dequantised to ``n_bits`` (:func:`symgen.flows.dequantize`),
    other data unchanged."""
    if not image:
        return x
    from symgen.flows import dequantize

    return dequantize(x, n_bits, generator=generator)


@torch.no_grad()
def initialize_flow(flow: torch.nn.Module, x: Tensor) -> None:
    """Data-dependent initialisation (ActNorm, standardisation) of a flow that has one, on the batch ``x``."""
    init = getattr(flow, "initialize", None)
    if init is not None:
        init(x)


def flow_from_config(cfg: dict[str, Any], data: DataInfo) -> torch.nn.Module:
    """The flow of a ``model:`` section with keys ``flow`` (a registered name; ``auto``: glow for images,
    realnvp otherwise), ``flow_args`` (checked against the flow's signature) and ``standardize`` (vector data:
    an affine normalisation fitted to the first batch)."""
    from symgen.flows import build_flow, standardized

    image = data.kind == "image"
    name = cfg["flow"] if cfg["flow"] != "auto" else ("glow" if image else "realnvp")
    args = dict(cfg["flow_args"])
    check_flow_args(name, args)
    flow = build_flow(name, event_shape=data.event_shape, **args)
    if not isinstance(cfg["standardize"], bool):
        raise ValueError(f"model.standardize must be true or false, got {cfg['standardize']!r}")
    return standardized(flow) if cfg["standardize"] and not image else flow
