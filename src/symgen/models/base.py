"""The model contract every symgen model family implements, and the step context the trainer hands it.

A model is an ``nn.Module`` that knows how to build itself from its config section, which optimizers it
needs, how to do one training step on a batch (possibly with several optimizers and inner MCMC loops),
and how to sample. Everything else (device placement, seeding, clipping, EMA, data-parallel gradient
averaging, checkpoints, logging) belongs to :class:`symgen.trainer.Trainer`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["DataInfo", "GenerativeModel", "StepContext"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to build itself.

    Attributes:
        name: dataset name (``"digits"``, ``"spiral"``, a path...).
        kind: ``"toy2d"`` or ``"image"``.
        event_shape: shape of one example, ``(2,)`` or ``(C, H, W)``.
        num_classes: number of labels, or ``None``.
    """

    name: str
    kind: str
    event_shape: tuple[int, ...]
    num_classes: int | None = None


@dataclass
class StepContext:
    """Services the trainer offers to ``GenerativeModel.training_step``.

    ``optimize(name, loss)`` zero-grads, back-propagates into the parameters of optimizer ``name`` only,
    averages gradients across data-parallel ranks, clips them and steps that optimizer (and its
    scheduler). ``stage`` names the current stage of a staged training plan (``None`` without one);
    ``epoch`` counts passes over the training set (``steps_per_epoch`` batches each; ``None`` for
    infinite toy streams, where ``epoch`` stays 0).
    """

    step: int
    device: torch.device
    generator: torch.Generator
    world_size: int = 1
    _optimize: Callable[[str, Tensor], float] | None = field(default=None, repr=False)
    stage: str | None = None
    steps_per_epoch: int | None = None

    @property
    def epoch(self) -> int:
        """Completed passes over the training data before this step."""
        return self.step // self.steps_per_epoch if self.steps_per_epoch else 0

    def optimize(self, name: str, loss: Tensor) -> float:
        """Minimise ``loss`` by one step of the optimizer ``name``; returns the pre-clip gradient norm."""
        if self._optimize is None:
            raise RuntimeError("StepContext.optimize is only available inside Trainer")
        return self._optimize(name, loss)


class GenerativeModel(nn.Module):
    """Base class of every model family (one file per family under ``symgen/models``).

    Subclasses set ``name`` and implement :meth:`default_config`, :meth:`from_config`,
    :meth:`configure_optimizers`, :meth:`training_step` and :meth:`sample`.
    """

    name: ClassVar[str] = ""
    #: ``{part: (model names...)}``: the kinds of runs ``model.init_from`` may load each part from
    #: (checked before training; a part not listed accepts any run with matching parameters).
    init_from_kinds: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: values of ``model`` config keys added after runs were first written, that reproduce those runs
    #: (a stored ``config.yaml`` without the key gets this value instead of today's default)
    legacy_defaults: ClassVar[dict[str, Any]] = {}

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        """Defaults of the ``model:`` config section (every allowed key must appear here)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> GenerativeModel:
        """Build the model from its resolved ``model:`` config section."""
        raise NotImplementedError

    def initialize(self, batch: Tensor) -> None:  # noqa: B027 - optional hook
        """Optional data-dependent initialisation (e.g. ActNorm) on the first batch, before training."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers, e.g. ``{"prior": ..., "generator": ...}``."""
        raise NotImplementedError

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        """Optional learning-rate schedulers keyed by optimizer name, stepped after each of its updates."""
        return {}

    def training_step(self, batch: Tensor, ctx: StepContext) -> dict[str, float]:
        """One training step on ``batch``; call ``ctx.optimize`` for each update; return scalars to log."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``n`` samples in data space, shape ``(n, *event_shape)``."""
        raise NotImplementedError

    def chain_state(self) -> dict[str, Any]:
        """MCMC state kept across training steps (persistent chains: positions, per-chain step sizes,
        adaptation state), as tensors and plain data. The trainer checkpoints it per data-parallel rank,
        so each rank resumes its own chains. Default: none."""
        return {}

    def load_chain_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what :meth:`chain_state` returned (called on resume, on every rank)."""

    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """Model-specific metrics on held-out ``data`` (e.g. test log-likelihood); default: none."""
        return {}

    @property
    def device(self) -> torch.device:
        p = next(self.parameters(), None)
        return p.device if p is not None else torch.device("cpu")
