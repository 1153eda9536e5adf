"""Exponential moving averages of a model's parameters, of the whole model or of named parts.

``train.ema_decay: d`` keeps ``ema_k = d * ema_{k-1} + (1 - d) * w_k`` after every step (torch's
``AveragedModel`` with ``get_ema_multi_avg_fn``); ``train.ema_modules: [generator]`` restricts it to
those sub-modules (DDGAN keeps an EMA of its generator only). Sampling and evaluation use
:meth:`EMA.model`: the model with the averaged parts swapped in (the live model is not changed).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

__all__ = ["EMA", "swap_parts", "ema_weights"]


def swap_parts(model: nn.Module, parts: dict[str, nn.Module]) -> nn.Module:
    """A shallow copy of ``model`` whose sub-modules at the dotted paths of ``parts`` are replaced (the
    modules on each path are copied, everything else is shared with ``model``)."""
    root = copy.copy(model)
    root._modules = dict(model._modules)
    for path, new in parts.items():
        *parents, leaf = path.split(".")
        node = root
        for name in parents:
            child = copy.copy(node._modules[name])
            child._modules = dict(child._modules)
            node._modules[name] = child
            node = child
        node._modules[leaf] = new
    return root


class EMA:
    """EMA of ``model`` (``modules`` empty) or of its parts ``modules``; disabled when ``decay`` is None."""

    def __init__(self, model: nn.Module, decay: float | None, modules: Sequence[str] = ()) -> None:
        self.live = model
        self.enabled = bool(decay)
        self.parts: dict[str, AveragedModel] = {}
        if not self.enabled:
            if modules:
                raise ValueError("train.ema_modules needs train.ema_decay")
            return
        avg = get_ema_multi_avg_fn(float(decay))
        for name in modules or [""]:
            if name:
                try:
                    part = model.get_submodule(name)
                except AttributeError:
                    names = [n for n, _ in model.named_children()]
                    raise ValueError(
                        f"train.ema_modules: no part '{name}' in the model; its parts: {names}"
                    ) from None
            else:
                part = model
            self.parts[name] = AveragedModel(part, multi_avg_fn=avg)

    def update(self) -> None:
        for name, avg in self.parts.items():
            avg.update_parameters(self.live.get_submodule(name) if name else self.live)

    def model(self) -> nn.Module:
        """The model used for sampling and evaluation: the averaged model or parts swapped in."""
        if "" in self.parts:
            return self.parts[""].module
        return swap_parts(self.live, {k: v.module for k, v in self.parts.items()})

    def state_dict(self) -> dict[str, Any] | None:
        """``None`` when off; the whole model's ``AveragedModel`` state (keys ``module.*``), or
        ``{"parts": {name: state}}`` for named parts."""
        if not self.enabled:
            return None
        if "" in self.parts:
            return self.parts[""].state_dict()
        return {"parts": {k: v.state_dict() for k, v in self.parts.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if "" in self.parts:
            self.parts[""].load_state_dict(state)
        else:
            for k, v in self.parts.items():
                v.load_state_dict(state["parts"][k])


def ema_weights(state: dict[str, Any]) -> dict[str, Any] | None:
    """The model state dict with a checkpoint's EMA weights in place (``None`` when it kept no EMA)."""
    ema = state.get("ema")
    if ema is None:
        return None
    if "parts" not in ema:
        return {k[len("module.") :]: v for k, v in ema.items() if k.startswith("module.")}
    weights = dict(state["model"])
    for part, sd in ema["parts"].items():
        for k, v in sd.items():
            if k.startswith("module."):
                weights[f"{part}.{k[len('module.') :]}"] = v
    return weights
