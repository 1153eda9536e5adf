"""Trainer behaviour: exact resume, Ctrl-C checkpoint, divergence stop, run-directory contents."""

import json
import signal
import subprocess
import time
from typing import Any

import pytest
import torch

from symgen.checkpoint import load_checkpoint
from symgen.config import resolve_config
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.registry import MODELS
from symgen.rundir import RunDir
from symgen.runs import train
from symgen.trainer import DivergenceError

FAST = ["data.batch_size=64", "train.log_every=10", "train.ckpt_every=50", "model.lr_decay=0.998"]


def _params(run_dir) -> dict[str, torch.Tensor]:
    return RunDir(run_dir, enabled=False).load_latest()["model"]


def test_cli_resume_continues_exactly(tmp_path, symgen_cmd, subprocess_env):
    """200 steps + resume to 400 == 400 steps straight (same seed), and the log says where it resumed.

    The learning rate decays every step, so the scheduler state must survive the resume too."""
    a, b = tmp_path / "a", tmp_path / "b"
    sets = sum((["--set", s] for s in FAST), [])
    base = symgen_cmd + ["train", "flow", "--data", "spiral", "--quiet"] + sets
    subprocess.run(base + ["--set", "train.steps=200", "--out", str(a)], check=True, env=subprocess_env)
    assert RunDir(a).load_latest()["step"] == 200
    subprocess.run(
        base + ["--set", "train.steps=400", "--out", str(a), "--resume"], check=True, env=subprocess_env
    )
    subprocess.run(base + ["--set", "train.steps=400", "--out", str(b)], check=True, env=subprocess_env)
    lr = RunDir(a).load_latest()["optimizers"]["flow"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(1e-3 * 0.998**400, rel=1e-9)
    records = RunDir(a).read_metrics()
    assert {"kind": "resume", "step": 200}.items() <= next(
        r for r in records if r["kind"] == "resume"
    ).items()
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps[-1] == 400 and steps == sorted(steps) and len(steps) == len(set(steps))
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], rtol=0, atol=0)


def test_run_directory_contents(tmp_path):
    cfg = resolve_config("flow", overrides=FAST + ["train.steps=30", "data.name=moons", "train.n_samples=50"])
    train(cfg, tmp_path / "r", progress=False)
    run = RunDir(tmp_path / "r")
    assert (run.path / "config.yaml").is_file() and (run.path / "report.md").is_file()
    assert run.load_latest()["step"] == 30
    assert list((run.path / "images").glob("samples-*.png"))
    recs = run.read_metrics()
    assert all(isinstance(json.loads(json.dumps(r)), dict) for r in recs)
    assert "samples-" in (run.path / "report.md").read_text()
    stored = run.load_config()
    assert stored["train"]["steps"] == 30 and stored["data"]["name"] == "moons"


def test_sigint_leaves_loadable_checkpoint(tmp_path, symgen_cmd, subprocess_env):
    out = tmp_path / "r"
    cmd = symgen_cmd + [
        "train",
        "flow",
        "--data",
        "spiral",
        "--quiet",
        "--out",
        str(out),
        "--set",
        "train.steps=1000000",
        "--set",
        "train.log_every=5",
        "--set",
        "train.ckpt_every=100000",
    ]
    proc = subprocess.Popen(cmd, env=subprocess_env, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    state = RunDir(out).load_latest()
    assert state["step"] >= 10
    assert any(r["kind"] == "interrupted" for r in RunDir(out).read_metrics())
    load_checkpoint(RunDir(out).latest_checkpoint())


class _Diverging(GenerativeModel):
    """Test model whose loss becomes NaN at step ``bad_step``."""

    name = "_diverging_test"

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"bad_step": 3}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> "_Diverging":
        m = cls()
        m.bad_step = cfg["bad_step"]
        return m

    def configure_optimizers(self):
        return {"w": torch.optim.SGD(self.parameters(), lr=0.1)}

    def training_step(self, batch, ctx: StepContext):
        loss = ((batch - self.w) ** 2).mean()
        if ctx.step + 1 >= self.bad_step:
            loss = loss * float("nan")
        ctx.optimize("w", loss)
        return {"loss": float(loss.detach())}

    def sample(self, n, generator=None):
        return self.w.detach().expand(n, 2).clone()


if "_diverging_test" not in MODELS:
    MODELS.add("_diverging_test", _Diverging)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = resolve_config(
        "_diverging_test", overrides=["train.ckpt_every=1", "train.steps=10", "data.name=moons"]
    )
    with pytest.raises(DivergenceError, match="step 3"):
        train(cfg, tmp_path / "r", progress=False)
    run = RunDir(tmp_path / "r")
    state = run.load_latest()
    # the parameters after step 2 gave the non-finite loss of step 3: the checkpoint kept is step 1's,
    # the last whose parameters *and* loss were finite; step 2's is deleted, not left behind
    assert state["step"] == 1
    assert [p.name for p in run.checkpoints()] == ["step-0000001.pt"]
    assert torch.isfinite(state["model"]["w"]).all()


def test_ema_follows_its_recursion_and_is_used_for_loading(tmp_path):
    """ema_k = d * ema_{k-1} + (1 - d) * w_k between consecutive checkpoints; load_run returns the EMA."""
    from symgen.checkpoint import load_checkpoint
    from symgen.runs import load_run

    d = 0.8
    cfg = resolve_config(
        "_diverging_test",
        overrides=[
            "train.ckpt_every=1",
            "train.keep_checkpoints=0",
            "train.steps=4",
            "data.name=moons",
            f"train.ema_decay={d}",
            "model.bad_step=1000",
        ],
    )
    train(cfg, tmp_path / "r", progress=False)
    states = [load_checkpoint(p) for p in RunDir(tmp_path / "r").checkpoints()]
    assert [s["step"] for s in states] == [1, 2, 3, 4]
    for prev, cur in zip(states, states[1:]):
        expected = d * prev["ema"]["module.w"] + (1 - d) * cur["model"]["w"]
        torch.testing.assert_close(cur["ema"]["module.w"], expected)
    assert not torch.allclose(states[-1]["ema"]["module.w"], states[-1]["model"]["w"])
    loaded = load_run(tmp_path / "r")
    torch.testing.assert_close(loaded.model.w.detach(), states[-1]["ema"]["module.w"])
