"""High-level operations on runs: train (fresh or resumed), load, sample and evaluate.

These are what the CLI calls and what the Python API exposes::

    from symgen.runs import train, load_run, sample_run, evaluate_run
    cfg = symgen.config.resolve_config("flow", overrides=["data.name=8gaussians"])
    train(cfg, "runs/flow-8g")
    x = sample_run("runs/flow-8g", n=1000)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from symgen.batches import make_stream
from symgen.config import apply_overrides, merge
from symgen.distributed import cleanup, init_distributed
from symgen.models.base import DataInfo, GenerativeModel
from symgen.registry import MODELS
from symgen.rundir import RunDir
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
        from symgen.tasks.anomaly import anomaly_splits

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
    """Keep the keyword arguments the dataset's loader accepts; ``None`` values are dropped."""
    import inspect

    from symgen.registry import DATASETS

    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if name not in DATASETS:  # a path: image folder / .npz reader
        return {k: v for k, v in kwargs.items() if k == "image_size"}
    params = inspect.signature(DATASETS.get(name)).parameters
    return {k: v for k, v in kwargs.items() if k in params}


def build_model(cfg: dict[str, Any], info: DataInfo, device: torch.device) -> GenerativeModel:
    """Instantiate the model named in ``cfg['model']['name']`` on ``device``."""
    model_cls = MODELS.get(cfg["model"]["name"])
    mcfg = {k: v for k, v in cfg["model"].items() if k != "name"}
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

    Returns the trainer (its ``model``, ``run`` and ``last_logs``)."""
    from symgen.evaluation import make_eval_hook, make_sample_hook

    dist, device = init_distributed(cfg["device"])
    try:
        run = RunDir(out, enabled=dist.is_main)
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
            run.log({"kind": "resume", "step": trainer.step})
        run.save_config(cfg)
        trainer.initialize()
        trainer.fit()
        run.write_report(f"{cfg['model']['name']} on {cfg['data']['name']}", trainer.last_logs)
        return trainer
    finally:
        cleanup(dist)


def resume_config(run_dir: str | Path, overrides: list[str]) -> dict[str, Any]:
    """The stored config of ``run_dir`` with ``--set`` overrides applied (validated against defaults)."""
    from symgen.config import default_config

    stored = RunDir(run_dir, enabled=False).load_config()
    cfg = merge(default_config(stored["model"]["name"]), stored)
    return apply_overrides(cfg, overrides)


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
    run = RunDir(run_dir, enabled=True)
    cfg = resume_config(run_dir, [])
    dev = torch.device(device)
    state = run.load_latest(map_location=dev)
    data = load_data(cfg)
    model = build_model(cfg, data.info, dev)
    if use_ema and state.get("ema") is not None:
        ema = {k[len("module.") :]: v for k, v in state["ema"].items() if k.startswith("module.")}
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
    from symgen.evaluation import run_evaluations

    loaded = load_run(run_dir, device)
    seed_everything(seed)
    results = run_evaluations(loaded.model, loaded.cfg, loaded.data, loaded.run, metrics, loaded.step, seed)
    loaded.run.write_report(f"{loaded.cfg['model']['name']} on {loaded.cfg['data']['name']}")
    return results
