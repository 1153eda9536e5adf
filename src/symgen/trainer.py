"""The one training loop every model uses.

The model supplies ``training_step(batch, ctx)`` (any number of optimizers, inner MCMC loops); the
trainer supplies everything else: device placement, seeding, gradient all-reduce across ranks,
gradient clipping, optional EMA, logging to ``metrics.jsonl`` with a progress bar, periodic
checkpoint / sample / evaluation hooks, exact resume, a checkpoint on Ctrl-C, and a clean stop with the
last good checkpoint kept when a loss or gradient becomes non-finite.
"""

from __future__ import annotations

import math
import random
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from symgen.batches import BatchStream
from symgen.checkpoint import rng_state, set_rng_state
from symgen.distributed import DistInfo, allreduce_gradients, broadcast_module, gather_objects
from symgen.ema import EMA
from symgen.models.base import GenerativeModel, StepContext
from symgen.precision import Precision
from symgen.rundir import RunDir
from symgen.stages import Stage, parse_stages, stage_at

__all__ = ["Trainer", "DivergenceError", "seed_everything"]


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


Hook = Callable[["Trainer"], None]


class Trainer:
    """Runs ``model.training_step`` for ``cfg['train']['steps']`` steps with checkpoints and hooks.

    Arguments:
        model: the model, already on ``device``.
        cfg: the resolved config (its ``train`` section drives the loop).
        stream: the minibatch stream.
        run: the run directory (writes are disabled on non-main ranks).
        dist: rank layout; gradients are averaged over ranks when ``dist.world_size > 1``.
        sample_hook / eval_hook: called every ``sample_every`` / ``eval_every`` steps and at the end.
    """

    def __init__(
        self,
        model: GenerativeModel,
        cfg: dict[str, Any],
        stream: BatchStream,
        run: RunDir,
        device: torch.device,
        dist: DistInfo | None = None,
        sample_hook: Hook | None = None,
        eval_hook: Hook | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.cfg, self.stream, self.run = model, cfg, stream, run
        self.tcfg = cfg["train"]
        self.device = device
        self.dist = dist or DistInfo()
        self.sample_hook, self.eval_hook = sample_hook, eval_hook
        self.progress = progress and self.dist.is_main
        self.optimizers = model.configure_optimizers()
        if not isinstance(self.optimizers, dict) or not self.optimizers:
            raise TypeError("configure_optimizers() must return a non-empty dict name -> Optimizer")
        self.schedulers = model.configure_schedulers(self.optimizers)
        unknown = set(self.schedulers) - set(self.optimizers)
        if unknown:
            names = sorted(self.optimizers)
            raise KeyError(f"schedulers {sorted(unknown)} name no optimizer; optimizers: {names}")
        self.stages = parse_stages(self.tcfg.get("stages"), list(self.optimizers))
        self._clip = _clip_by_optimizer(self.tcfg.get("grad_clip"), list(self.optimizers))
        self.stage: Stage | None = None
        self._grad_norms: dict[str, float] = {}  # pre-clip gradient norm of each optimizer's last update
        self.precision = Precision(self.tcfg.get("precision", "fp32"), device)
        self.step = 0
        self.ema = EMA(model, self.tcfg.get("ema_decay"), self.tcfg.get("ema_modules") or [])
        self.generator = torch.Generator(device="cpu").manual_seed(int(cfg["seed"]) + 7919 * self.dist.rank)
        self.last_logs: dict[str, float] = {}

    # ------------------------------------------------------------------ state
    @property
    def eval_model(self) -> GenerativeModel:
        """The model used for sampling and evaluation (the EMA copy when enabled)."""
        return self.ema.model() if self.ema.enabled else self.model  # type: ignore[return-value]

    def _rank_state(self) -> dict[str, Any]:
        """What differs between data-parallel ranks: the batch stream, the random generators and the
        model's persistent MCMC chains (:meth:`GenerativeModel.chain_state`)."""
        return {
            "stream": self.stream.state_dict(),
            "generator": self.generator.get_state(),
            "rng": rng_state(),
            "chains": self.model.chain_state(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly; a collective call under torchrun (every rank's stream and
        random state is gathered so that each rank resumes its own)."""
        local = self._rank_state()
        return {
            "step": self.step,
            "config": self.cfg,
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: sch.state_dict() for k, sch in self.schedulers.items()},
            "ema": self.ema.state_dict(),
            "grad_scaler": self.precision.state_dict(),
            **local,
            "world_size": self.dist.world_size,
            "ranks": gather_objects(local, self.dist),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; learning rates and scheduler settings of the *current* config are applied
        on top of the restored optimizer state (resume with ``--set model.lr=...``)."""
        self.model.load_state_dict(state["model"])
        missing = set(self.optimizers) ^ set(state["optimizers"])
        if missing:
            raise ValueError(f"checkpoint optimizers {sorted(state['optimizers'])} do not match model's")
        step = int(state["step"])
        for k, opt in self.optimizers.items():
            fresh = [g["lr"] for g in opt.param_groups]
            for stage in self.stages:  # base rates set by the stages started so far
                if stage.start <= step and k in stage.lr:
                    fresh = [stage.lr[k]] * len(fresh)
            opt.load_state_dict(state["optimizers"][k])
            _apply_learning_rates(opt, fresh)
        for k, sch in self.schedulers.items():
            sch.load_state_dict(_with_settings_of(sch.state_dict(), state["schedulers"][k]))
        if state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.precision.load_state_dict(state.get("grad_scaler"))
        saved_world = int(state.get("world_size", self.dist.world_size))  # absent: older checkpoints
        if saved_world != self.dist.world_size:
            raise ValueError(
                f"the checkpoint was written by a {saved_world}-process job; resume it with "
                f"{saved_world} processes (this job has {self.dist.world_size}) so that every rank "
                "continues its own batches"
            )
        own = state["ranks"][self.dist.rank] if state.get("ranks") else state
        self.stream.load_state_dict(own["stream"])
        self.generator.set_state(own["generator"])
        set_rng_state(own["rng"])
        self.model.load_chain_state(own.get("chains") or {})
        self.step = int(state["step"])

    def save(self, pending: bool = False) -> None:
        """Checkpoint the current step (main rank writes; atomic; never a non-finite model).

        ``pending``: the checkpoint becomes the latest only once the next step's loss is finite."""
        self._check_parameters()
        state = self.state_dict()
        self.run.save_checkpoint(self.step, state, keep=int(self.tcfg["keep_checkpoints"]), pending=pending)

    # ------------------------------------------------------------------ step
    def _optimize(self, name: str, loss: Tensor) -> float:
        """Back-propagate ``loss`` into optimizer ``name``'s own parameters only (other optimizers'
        ``.grad`` stay untouched), average over ranks, clip, step; a no-op for a frozen optimizer."""
        if name not in self.optimizers:
            raise KeyError(f"unknown optimizer '{name}'; the model configured {sorted(self.optimizers)}")
        if not torch.isfinite(loss.detach()).all():
            raise DivergenceError(
                f"non-finite loss for optimizer '{name}' at step {self.step + 1}: {loss.item()}"
            )
        if self.stage is not None and not self.stage.updates(name):
            return 0.0
        opt = self.optimizers[name]
        params = [p for g in opt.param_groups for p in g["params"] if p.requires_grad]
        opt.zero_grad(set_to_none=True)
        scaler = self.precision.scaler
        if params and loss.requires_grad:
            (scaler.scale(loss) if scaler is not None else loss).backward(inputs=params)
        allreduce_gradients(params, self.dist)
        if scaler is not None:
            scaler.unscale_(opt)
        clip = self._clip.get(name)
        if clip:
            norm = torch.nn.utils.clip_grad_norm_(params, float(clip))
        else:
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
        if scaler is not None:  # fp16: an overflow skips this update and lowers the loss scale
            scaler.step(opt)
        elif not torch.isfinite(norm):
            opt.zero_grad(set_to_none=True)
            raise DivergenceError(f"non-finite gradient for optimizer '{name}' at step {self.step + 1}")
        else:
            opt.step()
        if name in self.schedulers:
            self.schedulers[name].step()
        self._grad_norms[name] = float(norm)
        return float(norm)

    def _context(self) -> StepContext:
        return StepContext(
            step=self.step,
            device=self.device,
            generator=self.generator,
            world_size=self.dist.world_size,
            _optimize=self._optimize,
            stage=self.stage.name if self.stage is not None else None,
            steps_per_epoch=self.stream.steps_per_epoch,
        )

    def _enter_stage(self) -> None:
        """Switch to the stage of the next step: freeze the optimizers it does not update and, at the
        stage's first step, set the base learning rates it names."""
        stage = stage_at(self.stages, self.step)
        if stage is None or stage is self.stage:
            return
        self.stage = stage
        owned = {
            id(p)
            for k, o in self.optimizers.items()
            if stage.updates(k)
            for g in o.param_groups
            for p in g["params"]
        }
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                for p in group["params"]:
                    p.requires_grad_(id(p) in owned)
        if self.step == stage.start:
            for k, lr in stage.lr.items():
                sch = self.schedulers.get(k)
                for i, group in enumerate(self.optimizers[k].param_groups):
                    group["lr"] = lr
                    if "initial_lr" in group:
                        group["initial_lr"] = lr
                    if sch is not None:
                        sch.base_lrs[i] = lr
        self.run.log({"kind": "stage", "step": self.step, "stage": stage.name})

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, Tensor):
            return batch.to(self.device, non_blocking=True)
        if isinstance(batch, tuple | list):
            return type(batch)(self._to_device(b) for b in batch)
        return batch

    # ------------------------------------------------------------------ loop
    def initialize(self) -> None:
        """Data-dependent initialisation on the first batch (fresh runs), then sync ranks."""
        if self.step == 0:
            first = self._to_device(next(iter([self.stream.__next__()])))
            self.model.initialize(first)
        broadcast_module(self.model, self.dist)

    def fit(self) -> dict[str, float]:
        """Train until ``train.steps``; returns the last logged scalars."""
        total = int(self.tcfg["steps"])
        log_every, ckpt_every = int(self.tcfg["log_every"]), int(self.tcfg["ckpt_every"])
        sample_every, eval_every = int(self.tcfg["sample_every"]), int(self.tcfg["eval_every"])
        bar = _progress(total, self.step, self.progress)
        try:
            self._loop(total, log_every, ckpt_every, sample_every, eval_every, bar)
        except DivergenceError:
            self.run.discard()  # a pending checkpoint whose next loss was non-finite is not kept
            raise
        finally:
            if bar is not None:
                bar.close()
        self.save()
        if self.sample_hook:
            self.sample_hook(self)
        if self.eval_hook:
            self.eval_hook(self)
        return self.last_logs

    def _loop(
        self, total: int, log_every: int, ckpt_every: int, sample_every: int, eval_every: int, bar: Any
    ) -> None:
        t0, seen = time.perf_counter(), 0
        keep = int(self.tcfg["keep_checkpoints"])
        with _StopRequest() as stop:
            while self.step < total:
                if stop.requested:
                    self.save()
                    self.run.log({"kind": "interrupted", "step": self.step})
                    raise KeyboardInterrupt(f"interrupted at step {self.step}; checkpoint saved")
                self._enter_stage()
                batch = self._to_device(next(self.stream))
                self.model.train()
                logs = self._training_step(batch)
                self.run.promote(keep)  # the parameters of the pending checkpoint gave a finite loss
                self.step += 1
                seen += _batch_len(batch)
                self.ema.update()
                if self.step % log_every == 0 or self.step == total:
                    self._check_parameters()
                    rate = seen / max(time.perf_counter() - t0, 1e-9)
                    norms = {f"grad_norm/{k}": v for k, v in self._grad_norms.items()}
                    self.last_logs = {**logs, **norms, "examples_per_s": rate * self.dist.world_size}
                    self.run.log({"kind": "train", "step": self.step, **self.last_logs})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in list(logs.items())[:3]})
                if ckpt_every and self.step % ckpt_every == 0 and self.step != total:
                    self.save(pending=True)
                if sample_every and self.sample_hook and self.step % sample_every == 0 and self.step != total:
                    self.sample_hook(self)
                if eval_every and self.eval_hook and self.step % eval_every == 0 and self.step != total:
                    self.eval_hook(self)

    def _training_step(self, batch: Any) -> dict[str, float]:
        """``model.training_step`` with every way of diverging turned into :class:`DivergenceError`:
        non-finite losses, gradients or logged scalars, a flow's ``NonFiniteError``, and any error raised
        while the parameters are already non-finite."""
        from symgen.flows.base import NonFiniteError

        try:
            with self.precision.autocast():
                logs = self.model.training_step(batch, self._context())
            self.precision.update()
        except DivergenceError:
            raise
        except NonFiniteError as exc:
            raise DivergenceError(f"non-finite values at step {self.step + 1}: {exc}") from exc
        except Exception as exc:
            bad = self._nonfinite_parameter()
            if bad is not None:
                raise DivergenceError(
                    f"parameter '{bad}' became non-finite by step {self.step + 1} "
                    f"({type(exc).__name__}: {exc})"
                ) from exc
            raise
        self._check_finite(logs)
        return logs

    def _check_finite(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            if isinstance(v, float | int) and not math.isfinite(v):
                raise DivergenceError(f"non-finite '{k}' = {v} at step {self.step + 1}")

    def _nonfinite_parameter(self) -> str | None:
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                return name
        return None

    def _check_parameters(self) -> None:
        """Refuse to log or checkpoint non-finite parameters (losses and gradients are checked every step)."""
        bad = self._nonfinite_parameter()
        if bad is not None:
            raise DivergenceError(f"parameter '{bad}' became non-finite by step {self.step}")


def _clip_by_optimizer(clip: Any, names: list[str]) -> dict[str, float]:
    """``train.grad_clip`` (a number for every optimizer, or a mapping by optimizer name) as a mapping."""
    if clip is None:
        return {}
    if isinstance(clip, dict):
        unknown = sorted(set(clip) - set(names))
        if unknown:
            raise ValueError(
                f"train.grad_clip names unknown optimizer(s) {unknown}; the model has {sorted(names)}"
            )
        return {k: float(v) for k, v in clip.items() if v is not None}
    return {k: float(clip) for k in names}


def _apply_learning_rates(opt: torch.optim.Optimizer, fresh: list[float]) -> None:
    """Rescale each restored parameter group so that its base learning rate is ``fresh`` (the current
    config's), keeping the progress of any schedule: ``lr <- lr * fresh / base``."""
    for group, new in zip(opt.param_groups, fresh, strict=True):
        base = group.get("initial_lr", group["lr"])
        if new != base:
            group["lr"] = group["lr"] * (new / base) if base else new
            if "initial_lr" in group:
                group["initial_lr"] = new


_SCHEDULE_PROGRESS = ("last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "_is_initial")


def _with_settings_of(fresh: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """A scheduler state with the progress of ``saved`` and the settings (decay rates, milestones, base
    learning rates) of ``fresh``, the scheduler built from the current config."""
    merged = dict(fresh)
    for key in _SCHEDULE_PROGRESS:
        if key in saved:
            merged[key] = saved[key]
    if "_last_lr" in saved and "base_lrs" in saved and "base_lrs" in fresh:
        merged["_last_lr"] = [
            last * (new / old) if old and new != old else last
            for last, new, old in zip(saved["_last_lr"], fresh["base_lrs"], saved["base_lrs"], strict=True)
        ]
    return merged


def _batch_len(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return len(batch)
    if isinstance(batch, tuple | list) and batch:
        return _batch_len(batch[0])
    return 0


def _progress(total: int, start: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", dynamic_ncols=True, leave=True, mininterval=0.5)


class _StopRequest:
    """Turns the first SIGINT/SIGTERM into a request honoured at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
