"""Every shipped config resolves, builds its model at its dataset's shape and takes one finite training step.

The paper configs need data on disk and a GPU for real runs; here they run one step on random images
of the right shape on the CPU, so a config that cannot build or train fails in CI.
"""

import json
from pathlib import Path

import pytest
import torch
import yaml

from symgen.config import resolve_config
from symgen.models.base import DataInfo, StepContext
from symgen.reproduce import load_experiment
from symgen.runs import build_model

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "svhn": (3, 32, 32),
    "cifar10": (3, 32, 32),
    "celeba": (3, 64, 64),
    "spiral": (2,),
    "8gaussians": (2,),
    "swissroll": (2,),
    "9gaussians": (2,),
    "25gaussians_vaebm": (2,),
    "folder": (3, 256, 256),
}
# image sizes a config's one test step runs at instead of its data.image_size: the 256-pixel DDGAN configs
# (CelebA-HQ, LSUN Church; fully convolutional nets) step at 64x64, a sixteenth of the cost
TEST_IMAGE_SIZE = {"folder": 64}
# one step of a paper config must stay cheap on the CPU: short Langevin flows (the chain length is not
# what these tests check; tests/test_coopflow.py does)
FAST = {
    "coopflow": ["model.langevin.steps=2"],
    "short_run_ebm": ["model.steps=2"],
    "ntebm": ["model.hmc.steps=1"],
    "glow_ebm": ["model.langevin.steps=2"],
    "vaebm": ["model.langevin.steps=2"],
    # DDGAN's paper U-Nets at a quarter of their base width (levels and discriminator as configured)
    "ddgan": ["model.unet.base_channels=32"],
}
CONFIGS = sorted((ROOT / "configs").glob("*/*.yaml"))
CONFIGS = [c for c in CONFIGS if c.parent.name != "experiments"]


def _model_name(path: Path) -> str:
    name = (yaml.safe_load(path.read_text()).get("model") or {}).get("name")
    if name:
        return name
    if path.parent.name == "glf":  # shared by the whole GLF family (symgen.models.glf)
        return "glf"
    return "lfbm_vae" if path.stem.endswith("_vae") else "lfbm"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_builds_and_trains_one_step(path):
    torch.manual_seed(0)
    cfg = resolve_config(_model_name(path), path, ["device=cpu", *FAST.get(_model_name(path), [])])
    shape = SHAPES[cfg["data"]["name"]]
    if len(shape) == 3 and cfg["data"].get("image_size"):
        size = TEST_IMAGE_SIZE.get(cfg["data"]["name"], int(cfg["data"]["image_size"]))
        shape = (shape[0], size, size)
    info = DataInfo(
        name=cfg["data"]["name"],
        kind="image" if len(shape) == 3 else "toy2d",
        event_shape=shape,
        num_classes=10 if len(shape) == 3 else None,
    )
    model = build_model(cfg, info, torch.device("cpu"))
    x = torch.rand(4, *shape) * 2 - 1
    model.initialize(x)
    opts = model.configure_optimizers()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}

    def optimize(name: str, loss: torch.Tensor) -> float:
        assert torch.isfinite(loss), f"{path.name}: non-finite loss for {name}"
        opts[name].zero_grad()
        loss.backward()
        opts[name].step()
        return 0.0

    logs = model.training_step(
        x, StepContext(0, torch.device("cpu"), torch.Generator().manual_seed(0), _optimize=optimize)
    )
    assert logs and all(torch.isfinite(torch.tensor(float(v))) for v in logs.values())
    changed = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert changed, f"{path.name}: no parameter changed after one step"


@pytest.mark.parametrize(
    "path", sorted((ROOT / "configs" / "experiments").glob("*.yaml")), ids=lambda p: p.stem
)
def test_experiment_runs_resolve(path):
    exp = load_experiment(path.stem)
    for run in exp["runs"]:
        sets = [f"{k}={json.dumps(v)}" for k, v in (run.get("set") or {}).items()]  # as reproduce does
        resolve_config(run["model"], ROOT / run["config"] if run.get("config") else None, sets)
