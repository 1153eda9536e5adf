"""Training plans with stages, optimizer ownership, per-optimizer clipping and the epoch context."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from symgen.config import ConfigError, resolve_config
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.registry import MODELS
from symgen.rundir import RunDir
from symgen.runs import train


class _TwoPlayer(GenerativeModel):
    """Two players with alternating updates; records what the trainer showed it."""

    name = "_two_player_test"

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, 1)
        self.b = torch.nn.Linear(2, 1)
        self.seen: list[tuple[int, str | None, int, bool]] = []
        self.grads_of_b_after_a: list[Any] = []

    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {"lr": 0.05}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> _TwoPlayer:
        m = cls()
        m.lr = cfg["lr"]
        return m

    def configure_optimizers(self):
        return {
            "a": torch.optim.Adam(self.a.parameters(), lr=self.lr),
            "b": torch.optim.Adam(self.b.parameters(), lr=self.lr),
        }

    def training_step(self, batch, ctx: StepContext):
        self.seen.append((ctx.step, ctx.stage, ctx.epoch, self.b.weight.requires_grad))
        # both losses depend on both players, as in a GAN
        loss_a = (self.a(batch) * self.b(batch)).mean() + (self.a(batch) ** 2).mean()
        marker = torch.full_like(self.b.weight, 7.0)
        self.b.weight.grad = marker.clone()
        ctx.optimize("a", loss_a)
        self.grads_of_b_after_a.append(torch.equal(self.b.weight.grad, marker))
        self.b.weight.grad = None
        loss_b = ((self.a(batch) - self.b(batch)) ** 2).mean()
        ctx.optimize("b", loss_b)
        return {"la": float(loss_a.detach()), "lb": float(loss_b.detach())}

    def sample(self, n, generator=None):
        return torch.zeros(n, 2)


if _TwoPlayer.name not in MODELS:
    MODELS.add(_TwoPlayer.name, _TwoPlayer)

STAGES = "train.stages=[{name: a_only, steps: 4, optimizers: [a]}, {name: both, steps: 6, lr: {b: 0.01}}]"


def _cfg(*extra: str) -> dict:
    return resolve_config(
        _TwoPlayer.name,
        overrides=[
            "data.name=moons",
            "data.batch_size=16",
            "train.log_every=1",
            "train.ckpt_every=3",
            *extra,
        ],
    )


def test_optimizer_updates_leave_the_other_players_grad_untouched(tmp_path):
    trainer = train(_cfg("train.steps=3"), tmp_path / "r", progress=False)
    assert trainer.model.grads_of_b_after_a == [True, True, True]


def test_stages_freeze_optimizers_and_set_learning_rates(tmp_path):
    cfg = _cfg(STAGES)
    assert cfg["train"]["steps"] == 10
    trainer = train(cfg, tmp_path / "r", progress=False)
    m = trainer.model
    assert [s[1] for s in m.seen] == ["a_only"] * 4 + ["both"] * 6
    assert [s[3] for s in m.seen] == [False] * 4 + [True] * 6  # b frozen in the first stage
    ckpts = {int(p.stem.split("-")[1]): p for p in RunDir(tmp_path / "r").checkpoints()}
    state = torch.load(ckpts[10], weights_only=True)
    assert state["optimizers"]["b"]["param_groups"][0]["lr"] == 0.01
    # b's optimizer had no state change during the frozen stage: it took exactly 6 steps
    assert int(state["optimizers"]["b"]["state"][0]["step"]) == 6
    assert int(state["optimizers"]["a"]["state"][0]["step"]) == 10


def test_resume_in_the_middle_of_a_stage_is_exact(tmp_path):
    straight = train(_cfg(STAGES), tmp_path / "s", progress=False)
    cut = STAGES.replace("steps: 6", "steps: 2")
    train(_cfg(cut, "train.keep_checkpoints=0"), tmp_path / "r", progress=False)  # stops at step 6, stage 2
    resumed = train(_cfg(STAGES), tmp_path / "r", resume=True, progress=False)
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, rtol=0, atol=0)
    assert [s[1] for s in resumed.model.seen] == ["both"] * 4


def test_grad_clip_by_optimizer_and_bad_stage_specs(tmp_path):
    trainer = train(_cfg("train.steps=2", "train.grad_clip={a: 0.001}"), tmp_path / "r", progress=False)
    assert set(trainer._clip) == {"a"}
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(_cfg("train.steps=2", "train.grad_clip={c: 1.0}"), tmp_path / "r2", progress=False)
    with pytest.raises(ConfigError, match="steps"):
        _cfg("train.stages=[{name: x, steps: 0}]")
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(_cfg("train.stages=[{name: x, steps: 2, optimizers: [zz]}]"), tmp_path / "r3", progress=False)


def test_epoch_counts_passes_over_the_training_set(tmp_path):
    n = 120  # digits: 1437 training images / 100 per batch = 14 batches per epoch
    cfg = resolve_config(
        _TwoPlayer.name,
        overrides=["data.name=digits", "data.batch_size=100", f"train.steps={n}", "train.log_every=50"],
    )
    # the toy model takes (B, 2) inputs: flatten digits' first two pixels
    orig = _TwoPlayer.training_step

    def step(self, batch, ctx):
        return orig(self, batch.flatten(1)[:, :2], ctx)

    _TwoPlayer.training_step = step
    try:
        trainer = train(cfg, tmp_path / "r", progress=False)
    finally:
        _TwoPlayer.training_step = orig
    per = trainer.stream.steps_per_epoch
    assert per == len(trainer.stream.perm) // 100
    assert [s[2] for s in trainer.model.seen] == [i // per for i in range(n)]


# ------------------------------------------------------------------ persistent chains, EMA of parts


class _Persistent(_TwoPlayer):
    """Keeps 8 persistent chains (positions and per-chain step sizes) across steps."""

    name = "_persistent_test"

    def __init__(self) -> None:
        super().__init__()
        self.chains = torch.zeros(8, 2)
        self.step_size = torch.full((8,), 0.1)

    def training_step(self, batch, ctx: StepContext):
        noise = torch.randn(self.chains.shape, generator=ctx.generator)
        self.chains = self.chains + self.step_size[:, None] * (self.b(self.chains).detach() + noise)
        self.step_size = self.step_size * 1.01
        return super().training_step(batch, ctx)

    def chain_state(self):
        return {"x": self.chains.clone(), "step_size": self.step_size.clone()}

    def load_chain_state(self, state):
        self.chains, self.step_size = state["x"].clone(), state["step_size"].clone()


if _Persistent.name not in MODELS:
    MODELS.add(_Persistent.name, _Persistent)


def test_persistent_chain_state_survives_resume_exactly(tmp_path):
    base = ["data.name=moons", "data.batch_size=16", "train.log_every=1", "train.ckpt_every=3"]
    cfg = lambda n: resolve_config(_Persistent.name, overrides=[*base, f"train.steps={n}"])  # noqa: E731
    straight = train(cfg(9), tmp_path / "s", progress=False).model
    train(cfg(6), tmp_path / "r", progress=False)
    resumed = train(cfg(9), tmp_path / "r", resume=True, progress=False).model
    assert torch.equal(resumed.chains, straight.chains)
    assert torch.equal(resumed.step_size, straight.step_size)
    state = RunDir(tmp_path / "r").load_latest()
    assert torch.equal(state["chains"]["x"], straight.chains)


def test_ema_of_named_parts_only(tmp_path):
    from symgen.runs import load_run

    d = 0.5
    cfg = _cfg(
        "train.steps=4",
        f"train.ema_decay={d}",
        "train.ema_modules=[b]",
        "train.keep_checkpoints=0",
        "train.ckpt_every=1",
    )
    trainer = train(cfg, tmp_path / "r", progress=False)
    states = [torch.load(p, weights_only=True) for p in RunDir(tmp_path / "r").checkpoints()]
    assert set(states[-1]["ema"]["parts"]) == {"b"}
    for prev, cur in zip(states, states[1:]):
        ema_prev, ema_cur = prev["ema"]["parts"]["b"], cur["ema"]["parts"]["b"]
        expected = d * ema_prev["module.weight"] + (1 - d) * cur["model"]["b.weight"]
        torch.testing.assert_close(ema_cur["module.weight"], expected)
    evaluated = trainer.eval_model
    assert evaluated.a is trainer.model.a  # the other part is the live one
    assert torch.equal(evaluated.b.weight, states[-1]["ema"]["parts"]["b"]["module.weight"])
    assert trainer.model.b is not evaluated.b
    loaded = load_run(tmp_path / "r")
    assert torch.equal(loaded.model.b.weight, states[-1]["ema"]["parts"]["b"]["module.weight"])
    assert torch.equal(loaded.model.a.weight, states[-1]["model"]["a.weight"])
    with pytest.raises(ValueError, match="no part 'c'"):
        train(
            _cfg("train.steps=1", "train.ema_decay=0.5", "train.ema_modules=[c]"),
            tmp_path / "x",
            progress=False,
        )


# ------------------------------------------------------------------ init_from


def test_init_from_loads_a_part_and_records_the_source(tmp_path):
    src = train(_cfg("train.steps=5"), tmp_path / "src", progress=False).model
    cfg = _cfg("train.steps=1", "model.lr=1e-12", f"model.init_from={{a: {tmp_path / 'src'}}}")
    new = train(cfg, tmp_path / "new", progress=False).model
    torch.testing.assert_close(new.a.weight, src.a.weight, rtol=0, atol=1e-9)
    assert not torch.allclose(new.b.weight, src.b.weight)
    stored = RunDir(tmp_path / "new").load_config()["model"]["init_from"]
    assert stored == {"a": {"run": str((tmp_path / "src").resolve()), "step": 5, "source": "a"}}
    # the whole source model into a part, and a mismatch naming both shapes
    with pytest.raises(ValueError, match=r"\(1, 2\).*\(1, 2\)|does not match"):
        train(
            _cfg("train.steps=1", f"model.init_from={{a: {{run: {tmp_path / 'src'}, source: ''}}}}"),
            tmp_path / "bad",
            progress=False,
        )
    wide = RunDir(tmp_path / "wide").create()  # a source whose part 'a' has another shape
    wide.save_config({"model": {"name": _TwoPlayer.name}})
    wide.save_checkpoint(3, {"step": 3, "model": {"a.weight": torch.zeros(1, 3), "a.bias": torch.zeros(1)}})
    wide.close()
    with pytest.raises(ValueError, match=r"weight: this model \(1, 2\) vs .*wide \(1, 3\)"):
        train(
            _cfg("train.steps=1", f"model.init_from={{a: {tmp_path / 'wide'}}}"),
            tmp_path / "bad2",
            progress=False,
        )


# ------------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_flow_trains_and_stays_close_to_fp32(tmp_path, precision):
    def run(p: str) -> dict:
        cfg = resolve_config(
            "flow",
            overrides=[
                "data.name=moons",
                "data.batch_size=64",
                "train.steps=20",
                "train.log_every=20",
                f"train.precision={p}",
            ],
        )
        trainer = train(cfg, tmp_path / p, progress=False)
        return trainer.last_logs

    ref, low = run("fp32"), run(precision)
    loss = next(k for k in ref if "nll" in k or "loss" in k)
    assert np.isfinite(low[loss])
    assert abs(low[loss] - ref[loss]) < 0.5
    state = RunDir(tmp_path / precision).load_latest()
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    assert (state["grad_scaler"] is not None) == (precision == "fp16")


def test_bf16_lfbm_steps_are_finite(tmp_path):
    cfg = resolve_config(
        "lfbm",
        "configs/lfbm/digits.yaml",
        overrides=["train.steps=3", "train.log_every=1", "train.precision=bf16", "data.batch_size=16"],
    )
    trainer = train(cfg, tmp_path / "r", progress=False)
    assert all(np.isfinite(v) for v in trainer.last_logs.values())
    with pytest.raises(ConfigError, match="train.precision"):
        resolve_config("flow", overrides=["train.precision=fp8"])


# ------------------------------------------------------------------ light core imports


@pytest.mark.parametrize("module", ["symgen.samplers", "symgen.flows", "symgen.densities", "symgen"])
def test_importing_the_core_is_light(module, subprocess_env):
    import subprocess
    import sys

    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('sklearn', 'matplotlib', 'torchmetrics') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from symgen.registry import MODELS\n"
        "assert 'lfbm' in MODELS  # registration happens on first read\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_chains_stay_fp32_inside_an_autocast_step():
    from symgen.samplers import Langevin, run_chain

    w = torch.randn(4, 4)
    seen: list[torch.dtype] = []

    def log_prob(x):
        y = x @ w  # autocast runs matmuls in bf16
        seen.append(y.dtype)
        return -(y.float() ** 2).sum(-1)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        run_chain(Langevin(step_size=0.1), log_prob, torch.randn(3, 4), 3)
        assert set(seen) == {torch.float32}
        seen.clear()
        run_chain(Langevin(step_size=0.1), log_prob, torch.randn(3, 4), 3, autocast=True)
        assert set(seen) == {torch.bfloat16}
