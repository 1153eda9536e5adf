"""High-level operations on runs: train (fresh or resumed), load, sample and evaluate.

These are what the CLI calls and what the Python API exposes::

    from symgen.runs import train, load_run, sample_run, evaluate_run
    cfg = symgen.config.resolve_config("flow", overrides=["data.name=8gaussians"])
    train(cfg, "runs/flow-8g")
    x = sample_run("runs/flow-8g", n=1000)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from symgen.batches import make_stream
from symgen.config import apply_overrides, merge
from symgen.distributed import barrier, cleanup, init_distributed
from symgen.ema import ema_weights
from symgen.init_from import apply_init_from
from symgen.models.base import DataInfo, GenerativeModel
from symgen.registry import MODELS
from symgen.report import write_run_report
from symgen.rundir import RunDir
from symgen.tensorboard import TensorBoardMissing, attach_tensorboard, require_tensorboard
from symgen.trainer import Trainer, seed_everything

__all__ = [
    "DataSplits",
    "load_data",
    "build_model",
    "train",
    "load_run",
    "sample_run",
    "evaluate_run",
    "LoadedRun",
]


@dataclass
class DataSplits:
    """Train / validation / test data of a run and the :class:`DataInfo` models are built from."""

    train: Any
    val: Any
    test: Any
    info: DataInfo


def load_data(cfg: dict[str, Any]) -> DataSplits:
    """Load the data described by ``cfg['data']`` (toy 2-D distribution or image dataset)."""
    import symgen.data as data_mod

    dcfg = cfg["data"]
    name = str(dcfg["name"])
    if name in data_mod.TOY_NAMES:
        toy = data_mod.load(name)
        test = toy.test_set(n=int(dcfg["n_test"]), seed=int(dcfg["split_seed"]) + 1)
        val = toy.test_set(n=int(dcfg["n_test"]), seed=int(dcfg["split_seed"]) + 2)
        return DataSplits(toy, val, test, DataInfo(name=toy.name, kind="toy2d", event_shape=(2,)))

    def images(split: str) -> Any:
        kwargs = {
            "split": split,
            "seed": int(dcfg["split_seed"]),
            "image_size": dcfg["image_size"],
            "root": dcfg["root"],
        }
        return data_mod.load(name, **_accepted(name, kwargs))

    if dcfg["holdout_class"] is not None:
        from symgen.data.splits import anomaly_splits

        train, val, test = anomaly_splits(
            images("all"), int(dcfg["holdout_class"]), seed=int(dcfg["split_seed"])
        )
    else:
        train, val, test = images("train"), None, images("test")
    info = DataInfo(
        name=train.name, kind="image", event_shape=tuple(train.event_shape), num_classes=train.num_classes
    )
    return DataSplits(train, val, test, info)


def _accepted(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Keep the keyword arguments the dataset's loader accepts; ``None`` values are dropped.

    A path (image folder / ``.npz``) gets the seeded train/test ``split`` like every named dataset."""
    import inspect

    from symgen.registry import DATASETS

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name not in DATASETS:  # a path: image folder / .npz reader
        return {k: v for k, v in kwargs.items() if k in ("image_size", "split", "seed")}
    params = inspect.signature(DATASETS.get(name)).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def absolute_data_paths(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with a dataset path (``data.name``) and ``data.root`` made absolute, so that the run's
    ``config.yaml`` finds its data from any working directory."""
    import os

    import symgen.data as data_mod
    from symgen.registry import DATASETS

    dcfg = dict(cfg["data"])
    name = str(dcfg["name"])
    if name not in DATASETS and name not in data_mod.TOY_NAMES and os.path.exists(name):
        dcfg["name"] = str(Path(name).expanduser().resolve())
    if dcfg.get("root") is not None and os.path.exists(str(dcfg["root"])):
        dcfg["root"] = str(Path(str(dcfg["root"])).expanduser().resolve())
    return {**cfg, "data": dcfg}


def build_model(cfg: dict[str, Any], info: DataInfo, device: torch.device) -> GenerativeModel:
    """Instantiate the model named in ``cfg['model']['name']`` on ``device``."""
    model_cls = MODELS.get(cfg["model"]["name"])
    mcfg = {k: v for k, v in cfg["model"].items() if k not in ("name", "init_from")}
    model = model_cls.from_config(mcfg, info).to(device)
    if cfg["train"].get("compile"):
        model = torch.compile(model)  # opt-in
    return model


def train(
    cfg: dict[str, Any],
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> Trainer:
    """Train the model described by ``cfg`` into the run directory ``out`` (or resume it).

    A fresh run needs a new or empty directory; ``resume`` continues the latest checkpoint with the
    settings of ``cfg`` that may change (see :func:`symgen.config.resume_changes`), after cutting
    ``metrics.jsonl`` back to the checkpoint's step. The directory is locked for the whole run.
    Returns the trainer (its ``model``, ``run`` and ``last_logs``)."""
    from symgen.config import resume_changes, validate_config
    from symgen.evaluation import make_eval_hook, make_sample_hook

    cfg = validate_config(absolute_data_paths(cfg))
    if cfg["train"].get("tensorboard"):
        require_tensorboard()  # fail before any data is loaded
    dist, device = init_distributed(cfg["device"])
    run = RunDir(out, enabled=dist.is_main)
    try:
        changed: list[str] = []
        if resume:
            run.open_existing()
            changed = resume_changes(stored_config(run), cfg)
        else:
            run.create()
        seed_everything(int(cfg["seed"]) + dist.rank)
        splits = load_data(cfg)
        model = build_model(cfg, splits.info, device)
        stream = make_stream(
            splits.train, int(cfg["data"]["batch_size"]), int(cfg["seed"]), dist.rank, dist.world_size
        )
        trainer = Trainer(
            model,
            cfg,
            stream,
            run,
            device,
            dist,
            sample_hook=make_sample_hook(splits),
            eval_hook=make_eval_hook(splits),
            progress=progress,
        )
        if resume:
            state = run.load_latest(map_location=device)
            trainer.load_state_dict(state)
            run.truncate_metrics(trainer.step)
            run.log({"kind": "resume", "step": trainer.step, **({"changed": changed} if changed else {})})
        attach_tensorboard(run, cfg, purge_step=trainer.step + 1 if resume else None)  # as truncate_metrics
        trainer.initialize()
        if not resume and cfg["model"].get("init_from"):
            cfg["model"]["init_from"] = apply_init_from(trainer.model, cfg["model"]["init_from"])
        run.save_config(cfg)
        trainer.fit()
        write_run_report(run, f"{cfg['model']['name']} on {cfg['data']['name']}", trainer.last_logs)
        barrier(dist)  # every rank leaves the group together (see symgen.distributed.barrier)
        return trainer
    finally:
        run.close()
        cleanup(dist)


def stored_config(run: RunDir) -> dict[str, Any]:
    """A run's ``config.yaml`` completed with today's defaults (keys added since it was written)."""
    from symgen.config import default_config

    stored = run.load_config()
    defaults = default_config(stored["model"]["name"])
    legacy = MODELS.get(stored["model"]["name"]).legacy_defaults
    if legacy:
        defaults = merge(defaults, {"model": legacy})
    return absolute_data_paths(merge(defaults, stored))


def resume_config(
    run_dir: str | Path, overrides: list[str], config_file: str | Path | None = None
) -> dict[str, Any]:
    """The stored config of ``run_dir``, then the keys of ``config_file``, then ``--set`` overrides.

    Whether the changed keys may change on resume is checked by :func:`train`."""
    from symgen.config import load_yaml, validate_config

    cfg = stored_config(RunDir(run_dir, enabled=False))
    if config_file is not None:
        file_cfg = load_yaml(config_file)
        name = (file_cfg.get("model") or {}).get("name", cfg["model"]["name"])
        if name != cfg["model"]["name"]:
            raise ValueError(f"config file {config_file} is for model '{name}', not '{cfg['model']['name']}'")
        cfg = merge(cfg, file_cfg)
    return validate_config(apply_overrides(cfg, overrides))


@dataclass
class LoadedRun:
    """A trained model restored from its run directory, with its config and data."""

    run: RunDir
    cfg: dict[str, Any]
    model: GenerativeModel
    data: DataSplits
    step: int
    device: torch.device


def load_run(run_dir: str | Path, device: str = "cpu", use_ema: bool = True) -> LoadedRun:
    """Restore the newest checkpoint of ``run_dir`` (EMA weights when the run kept them)."""
    from symgen.distributed import resolve_device

    dev = resolve_device(device)
    run = RunDir(run_dir, enabled=True).open_existing(lock=False)
    cfg = resume_config(run_dir, [])
    state = run.load_latest(map_location=dev)
    data = load_data(cfg)
    model = build_model(cfg, data.info, dev)
    ema = ema_weights(state) if use_ema else None
    if ema is not None:
        model.load_state_dict(ema)
    else:
        model.load_state_dict(state["model"])
    model.eval()
    return LoadedRun(run, cfg, model, data, int(state["step"]), dev)


def sample_run(
    run_dir: str | Path, n: int, out: str | Path | None = None, seed: int = 0, device: str = "cpu"
) -> Tensor:
    """Draw ``n`` samples from a trained run; write a PNG (grid for images, scatter for 2-D) when ``out``."""
    from symgen.evaluation import save_samples

    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    loaded = load_run(run_dir, device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        x = loaded.model.sample(n, generator=gen).cpu()
    if out is not None:
        save_samples(x, loaded.data, Path(out))
    return x


def evaluate_run(
    run_dir: str | Path, metrics: list[str], device: str = "cpu", seed: int = 0
) -> dict[str, float]:
    """Run the named evaluations on a trained run and append them to its ``metrics.jsonl``."""
    from symgen.config import ConfigError
    from symgen.evaluation import run_evaluations
    from symgen.registry import EVALS

    unknown = [m for m in metrics if m not in EVALS]
    if unknown:
        raise ConfigError(f"unknown evaluation(s) {unknown}; available: {', '.join(EVALS.names())}")
    loaded = load_run(run_dir, device)
    loaded.run.lock.acquire()  # evaluations append to metrics.jsonl: one writer at a time
    try:
        seed_everything(seed)
        with contextlib.suppress(TensorBoardMissing):  # not installed here: metrics.jsonl is enough
            attach_tensorboard(loaded.run, loaded.cfg)
        results = run_evaluations(
            loaded.model, loaded.cfg, loaded.data, loaded.run, metrics, loaded.step, seed
        )
        write_run_report(loaded.run, f"{loaded.cfg['model']['name']} on {loaded.cfg['data']['name']}")
    finally:
        loaded.run.close()
    return results
