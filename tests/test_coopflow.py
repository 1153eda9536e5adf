"""Tests of the short-run EBM and CoopFlow families against closed forms and finite differences.

Ground truths: with ``T = 0`` CoopFlow's generator is the flow itself; the generator term of dissertation
Eq. (5.14) differentiated through the unrolled chain equals its finite-difference derivative; the ODE flow's
density (Eq. (5.7)) integrates to one; the EBM gradient of Eq. (2) / (5.1) on a quadratic energy with exact
model samples drives the precision to the data's (the Gaussian MLE).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import yaml

from symgen.models.base import DataInfo, StepContext
from symgen.models.coopflow import CoopFlow
from symgen.models.short_run_ebm import LangevinFlow, ShortRunEBM
from symgen.samplers import GradientDescent

TOY = DataInfo("spiral", "toy2d", (2,))
DIGITS = DataInfo("digits", "image", (1, 8, 8), 10)


def _cfg(cls, **changes):
    cfg = cls.default_config()
    for key, value in changes.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return cfg


def tiny_coopflow(**changes) -> CoopFlow:
    base = {"energy.hidden": 8, "energy.layers": 1, "flow_args": {"transforms": 2, "hidden_features": [8]}}
    return CoopFlow.from_config(_cfg(CoopFlow, **{**base, **changes}), TOY)


def tiny_srebm(**changes) -> ShortRunEBM:
    return ShortRunEBM.from_config(
        _cfg(ShortRunEBM, **{"energy.hidden": 8, "energy.layers": 1, **changes}), TOY
    )


class Ctx(StepContext):
    def __init__(self, model, step=0, stage=None, steps_per_epoch=None):
        super().__init__(step, torch.device("cpu"), torch.Generator().manual_seed(0), stage=stage,
                         steps_per_epoch=steps_per_epoch)  # fmt: skip
        self.opts = model.configure_optimizers()
        self.calls: list[str] = []

    def optimize(self, name, loss):
        self.calls.append(name)
        self.opts[name].zero_grad()
        loss.backward(inputs=[p for g in self.opts[name].param_groups for p in g["params"]])
        self.opts[name].step()
        return 0.0


def test_coopflow_with_t0_returns_the_flows_samples():
    torch.manual_seed(0)
    model = tiny_coopflow(**{"langevin.steps": 0})
    x = model.sample(64, generator=torch.Generator().manual_seed(3))
    z = torch.randn((64, 2), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, _ = model.flow().forward(z)
    torch.testing.assert_close(x, expected)
    # and a T > 0 model moves them
    moved = tiny_coopflow(**{"langevin.steps": 5, "langevin.step_size": 0.5})
    moved.load_state_dict(model.state_dict())
    assert not torch.allclose(moved.sample(64, torch.Generator().manual_seed(3)), expected)


def test_coopflow_step_follows_algorithm_1_and_stages():
    torch.manual_seed(0)
    model = tiny_coopflow(**{"langevin.steps": 3})
    x = torch.randn(32, 2)
    ctx = Ctx(model)
    logs = model.training_step(x, ctx)
    assert ctx.calls == ["flow", "ebm"]  # flow on the revised samples first, then the EBM (official order)
    assert {"flow_nll", "ebm_loss", "f_data", "f_model", "revision_mse"} <= set(logs)
    pre = Ctx(model, stage="pretrain")
    logs = model.training_step(x, pre)
    assert pre.calls == ["flow"] and "flow_nll_data" in logs  # CoopFlow(Pre): flow MLE on data


def test_test_step_multiplier_and_official_image_clamps():
    cfg = _cfg(CoopFlow, flow_args={"levels": 1, "depth": 1, "width": 8})
    model = CoopFlow.from_config(cfg, DIGITS)
    train, test = model.langevin.kernel.options, model.langevin.test_kernel.options
    assert test["step_size"] == pytest.approx(0.03 * 1.3333333)
    assert train["drift_clip"] == 0.1 and train["clamp"] == (-1.0, 1.0)
    assert test["clamp"] == (-1.0, 1.0)
    assert model.langevin.kernel.noise_scale == 0.0  # noise off by default (Sec. A.2)


def test_noise_decay_of_eq10_follows_epochs():
    model = tiny_coopflow(**{"langevin.noise": "decayed", "langevin.noise_decay_epochs": 4.0})
    k = model.train_kernel(Ctx(model, step=20, steps_per_epoch=10))  # epoch 2
    assert k.noise_scale == pytest.approx((1 - 2 / 4) ** 20)
    assert model.train_kernel(Ctx(model, step=50, steps_per_epoch=10)).noise_scale == 0.0  # epoch 5 >= K
    with pytest.raises(ValueError, match="model.langevin.noise"):
        model.train_kernel(Ctx(model, step=1))  # infinite toy stream: no epochs


def _gen_term(net, fixed, x0, steps, step_size):
    """-mean f_fixed(G_net(x0)) with G the noise-free chain on ``net`` (no autograd through it)."""
    flow = LangevinFlow(net, GradientDescent(step_size), steps)
    x = flow.run(x0)
    return -fixed(x).mean()


def test_unrolled_generator_loss_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = tiny_srebm(**{"energy.hidden": 4, "steps": 3, "step_size": 0.7}).double()
    x0 = torch.randn(5, 2, dtype=torch.float64)
    x_gen = model.langevin.run(x0, differentiable=True)
    gen = -model.langevin.frozen_log_prob(x_gen).mean()  # Eq. (5.14), third term
    params = list(model.energy.parameters())
    grads = torch.autograd.grad(gen, params, allow_unused=True)  # the read-out bias does not move x
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    fixed = copy.deepcopy(model.energy)
    h = 1e-6
    for p_idx, (p, g) in enumerate(zip(params, grads)):
        for i in range(min(p.numel(), 4)):
            values = []
            for sign in (1, -1):
                net = copy.deepcopy(model.energy)
                with torch.no_grad():
                    list(net.parameters())[p_idx].view(-1)[i] += sign * h
                values.append(float(_gen_term(net, fixed, x0, 3, 0.7)))
            fd = (values[0] - values[1]) / (2 * h)
            assert g.view(-1)[i].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)
    assert any(g.abs().sum() > 0 for g in grads)


def test_generator_loss_step_adds_eq_5_14_term():
    torch.manual_seed(0)
    model = tiny_srebm(**{"steps": 2, "generator_loss": True})
    logs = model.training_step(torch.randn(16, 2), Ctx(model))
    assert "generator_loss" in logs and logs["loss"] == pytest.approx(
        logs["ebm_loss"] + logs["generator_loss"]
    )


def test_ode_flow_density_integrates_to_one():
    torch.manual_seed(0)
    model = tiny_srebm(dynamics="ode", **{"energy.hidden": 16})
    n, lo, hi = 80, -7.0, 7.0
    step = (hi - lo) / n
    c = lo + step * (torch.arange(n) + 0.5)
    grid = torch.stack(torch.meshgrid(c, c, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        lp = model.ode_log_prob(grid)
    assert float(lp.exp().sum() * step * step) == pytest.approx(1.0, abs=5e-3)


def test_ebm_loss_sign_fits_gaussian_precision():
    """f(x) = -a x^2 / 2 on N(0, 0.5^2) data with exact model samples N(0, 1/a): the Eq. (2) loss, minimised,
    drives a to the MLE 1 / 0.5^2 = 4 from either side (a wrong sign would drive it away)."""

    class Quadratic(torch.nn.Module):
        def __init__(self, a):
            super().__init__()
            self.log_a = torch.nn.Parameter(torch.tensor(math.log(a)))

        def forward(self, x):
            return -0.5 * self.log_a.exp() * x.square().sum(1)

    gen = torch.Generator().manual_seed(0)
    for a0 in (0.5, 20.0):
        net = Quadratic(a0)
        flow = LangevinFlow(net, GradientDescent(0.1), 0)
        opt = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(400):
            x_data = 0.5 * torch.randn(512, 1, generator=gen)
            x_model = torch.randn(512, 1, generator=gen) / net.log_a.exp().sqrt().detach()
            loss, _ = flow.contrastive_loss(x_data, x_model, 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert float(net.log_a.exp()) == pytest.approx(4.0, rel=0.15)


def test_short_run_ebm_learns_a_shifted_gaussian_mean():
    """Noise-free chains toward exp f move samples where the data are: after training the samples' mean
    follows the data mean (a sign error would push them away)."""
    torch.manual_seed(0)
    model = tiny_srebm(**{"steps": 10, "step_size": 0.5, "lr": 0.01, "energy.hidden": 16})
    ctx = Ctx(model)
    for _ in range(150):
        model.training_step(torch.randn(128, 2) * 0.3 + torch.tensor([2.0, -1.0]), ctx)
    mean = model.sample(500, torch.Generator().manual_seed(1)).mean(0)
    assert torch.allclose(mean, torch.tensor([2.0, -1.0]), atol=0.4)


def test_image_flow_fits_dequantised_revised_samples():
    """Revised image samples clamped at -1 / 1 reach the flow dequantised like data (official code): each
    value replaced by a uniform draw in its ``n_bits`` bin, never the degenerate clamp boundary."""
    torch.manual_seed(0)
    cfg = _cfg(
        CoopFlow, flow_args={"levels": 1, "depth": 1, "width": 8}, n_bits=4, **{"energy.preset": "digits8"}
    )
    cfg["langevin"].update(steps=2, step_size=3.0)  # big steps: many pixels end on the clamp
    model = CoopFlow.from_config(cfg, DIGITS)
    seen, revised = [], []
    run, fit = model.langevin.run, model.flow_log_prob
    model.langevin.run = lambda *a, **k: revised.append(run(*a, **k)) or revised[-1]  # type: ignore[method-assign]
    model.flow_log_prob = lambda v: seen.append(v.detach()) or fit(v)  # type: ignore[method-assign]
    model.training_step(torch.rand(16, 1, 8, 8) * 2 - 1, Ctx(model))
    x_tilde, y = revised[0], seen[0]
    assert (x_tilde.abs() == 1).any()
    assert not (y.abs() == 1).any()
    assert ((y - x_tilde).abs() <= 2 / 16 + 1e-6).all()  # within one bin of width 2 / 2^n_bits
    from symgen.flows.dequant import to_levels

    assert torch.equal(to_levels(y, 4), to_levels(x_tilde, 4))


def test_lr_warmup_ramps_every_optimizer_linearly():
    model = tiny_coopflow(lr_warmup=4, lr={"flow": 1e-3, "ebm": 2e-3})
    opts = model.configure_optimizers()
    scheds = model.configure_schedulers(opts)
    assert set(scheds) == {"flow", "ebm"}
    seen = []
    for _ in range(6):
        seen.append(opts["ebm"].param_groups[0]["lr"])
        opts["ebm"].step()
        scheds["ebm"].step()
    assert seen == pytest.approx([2e-3 * k / 4 for k in (1, 2, 3, 4)] + [2e-3, 2e-3])
    assert tiny_coopflow(lr_warmup=0).configure_schedulers(opts) == {}
    with pytest.raises(ValueError, match=r"model\.lr_warmup"):
        tiny_coopflow(lr_warmup=-1)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"langevin.steps": -1}, "model.langevin.steps"),
        ({"langevin.clamp": [1.0, -1.0]}, "model.langevin.clamp"),
        ({"langevin.noise": "loud"}, "model.langevin.noise"),
        ({"lr": {"flow": 1e-3, "critic": 1e-3}}, "accepted: flow, ebm"),
    ],
)
def test_coopflow_bad_settings_name_the_key(changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        tiny_coopflow(**changes)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"steps": -2}, "model.steps"),
        ({"clamp": [0.5, 0.5]}, "model.clamp"),
        ({"dynamics": "sde"}, "model.dynamics"),
        ({"objective": "mle"}, "model.objective"),
    ],
)
def test_short_run_ebm_bad_settings_name_the_key(changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        tiny_srebm(**changes)


def test_flow_with_other_event_shape_is_rejected():
    from symgen.flows import build_flow
    from symgen.samplers import GradientDescent as GD

    flow = build_flow("realnvp", event_shape=(3,))
    lf = LangevinFlow(torch.nn.Linear(2, 1), GD(0.1), 1)
    with pytest.raises(ValueError, match=r"model\.flow.*\(3,\).*\(2,\)"):
        CoopFlow(flow, lf, "toy2d", (2,))


def test_init_from_a_run_of_another_model_kind_is_rejected(tmp_path):
    from symgen.init_from import apply_init_from

    run = tmp_path / "lfbm-run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "lfbm"}}))
    with pytest.raises(ValueError, match=r"model\.init_from\.flow.*'lfbm'.*flow, coopflow"):
        apply_init_from(tiny_coopflow(), {"flow": str(run)})


def test_reconstruction_through_the_unrolled_chain_beats_the_start():
    torch.manual_seed(0)
    model = tiny_srebm(**{"steps": 5, "step_size": 0.3, "tasks.recon_steps": 60, "tasks.recon_lr": 0.1})
    x = torch.randn(8, 2)
    x0 = model.initial_noise(8, torch.Generator().manual_seed(0))
    start_err = (model.decode(x0) - x).square().mean()
    _, rec = model.encode(x, generator=torch.Generator().manual_seed(0))
    assert (rec - x).square().mean() < 0.2 * start_err
