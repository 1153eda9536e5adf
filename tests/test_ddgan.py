"""DDGAN and the DDPM baseline: R1, optimizer ownership, parametrisations, sampling, config errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from symgen.config import resolve_config
from symgen.models.base import DataInfo
from symgen.models.ddgan import DDGAN
from symgen.models.ddpm import DDPM
from symgen.runs import train

TOY = DataInfo("25gaussians", "toy2d", (2,))
DIGITS = DataInfo("digits", "image", (1, 8, 8))
SMALL_MLP = {
    "hidden": 16,
    "layers": 2,
    "activation": "lrelu",
    "time_dim": 8,
    "z_emb_dim": 8,
    "mapping_layers": 2,
}


def _ddgan(data: DataInfo = TOY, **over) -> DDGAN:
    cfg = DDGAN.default_config()
    cfg.update({"nz": 2, "net": "mlp", "mlp": dict(SMALL_MLP)}, **over)
    return DDGAN.from_config(cfg, data)


class _LinearD(nn.Module):
    """D(x_prev, x_t, t) = w . x_prev + v . x_t: its gradient in x_prev is w for every input."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -1.2]))
        self.v = nn.Parameter(torch.tensor([2.0, 0.5]))

    def forward(self, x_prev, xt, t):
        return x_prev @ self.w + xt @ self.v


def test_r1_equals_squared_gradient_norm_on_real_inputs() -> None:
    torch.manual_seed(0)
    model = _ddgan()
    x_prev, xt, t = torch.randn(6, 2), torch.randn(6, 2), torch.tensor([1, 2, 3, 4, 1, 2])
    _, r1 = model.r1_penalty(x_prev, xt, t)
    # per-example autograd of the discriminator, one input at a time
    norms = []
    for i in range(6):
        xi = x_prev[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model.discriminator(xi, xt[i : i + 1], t[i : i + 1].float()).sum(), xi)
        norms.append(g.square().sum())
    torch.testing.assert_close(r1, torch.stack(norms).mean())
    # closed form for a linear discriminator: ||w||^2, and R1 is differentiable in the parameters
    model.discriminator = _LinearD()
    _, r1 = model.r1_penalty(x_prev, xt, t)
    torch.testing.assert_close(r1, torch.tensor(0.3**2 + 1.2**2))
    (gw,) = torch.autograd.grad(r1, model.discriminator.w)
    torch.testing.assert_close(gw, 2 * model.discriminator.w.detach())


def _cfg(model: str, *extra: str) -> dict:
    return resolve_config(
        model,
        overrides=[
            "data.name=25gaussians",
            "data.batch_size=32",
            "model.net=mlp",
            "model.mlp={hidden: 16, layers: 2, activation: lrelu, time_dim: 8}",
            "train.log_every=1",
            "train.n_samples=16",
            *extra,
        ],
    )


def test_generator_step_leaves_discriminator_grads_untouched(tmp_path) -> None:
    trainer = train(_cfg("ddgan", "model.nz=2", "train.steps=1"), tmp_path / "r", progress=False)
    model, ctx = trainer.model, trainer._context()
    x0 = torch.randn(32, 2)
    markers = {n: torch.full_like(p, 7.0) for n, p in model.discriminator.named_parameters()}
    for n, p in model.discriminator.named_parameters():
        p.grad = markers[n].clone()
    d_before = {n: p.detach().clone() for n, p in model.discriminator.named_parameters()}
    g_before = {n: p.detach().clone() for n, p in model.generator.named_parameters()}
    model.generator_step(x0, ctx)
    for n, p in model.discriminator.named_parameters():
        assert torch.equal(p.grad, markers[n]), n
        assert torch.equal(p.detach(), d_before[n]), n
    assert any(not torch.equal(p.detach(), g_before[n]) for n, p in model.generator.named_parameters())
    # and the discriminator step leaves the generator's .grad alone
    for p in model.generator.parameters():
        p.grad = None
    model.discriminator_step(x0, ctx)
    assert all(p.grad is None for p in model.generator.parameters())


def test_ddgan_trains_with_ema_and_cosine_decay(tmp_path) -> None:
    cfg = _cfg(
        "ddgan", "model.nz=2", "train.steps=4", "model.lr_decay_steps=4", "model.r1_every=2",
        "train.ema_decay=0.9", "train.ema_modules=[generator]",
    )  # fmt: skip
    trainer = train(cfg, tmp_path / "r", progress=False)
    assert trainer.ema.enabled and set(trainer.ema.parts) == {"generator"}
    sched = trainer.schedulers["generator"]
    assert sched.get_last_lr()[0] == pytest.approx(cfg["model"]["lr_min"])
    x = trainer.eval_model.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 2) and torch.isfinite(x).all()


@pytest.mark.parametrize("param", ["posterior", "direct", "noise"])
@pytest.mark.parametrize("nz", [0, 3])
def test_parametrisations_and_no_latent(param: str, nz: int) -> None:
    torch.manual_seed(0)
    model = _ddgan(parametrization=param, nz=nz)
    xt, t = torch.randn(5, 2), torch.tensor([1, 2, 3, 4, 4])
    z = model.latent(5)
    assert (z is None) == (nz == 0)
    out = model.generator(xt, t.float(), z)
    x_prev = model.denoise(xt, t, z, torch.Generator().manual_seed(1))
    if param == "direct":
        torch.testing.assert_close(x_prev, out)
    else:  # t = 1: the posterior is a point mass at the predicted x0
        x0 = out if param == "posterior" else model.schedule.predict_x0(xt, t, out)
        torch.testing.assert_close(x_prev[0], x0[0])
    assert model.sample(7).shape == (7, 2) and model.nfe == 4


def test_posterior_parametrisation_samples_the_gaussian_posterior() -> None:
    """Eq. (6.12): given x_t and z, x_{t-1} is N(mu_tilde(x_t, G(x_t, z, t)), beta_tilde_t)."""
    torch.manual_seed(0)
    model = _ddgan()
    n = 20000
    xt = torch.tensor([[0.3, -0.4]]).expand(n, 2)
    z = torch.tensor([[0.5, 1.0]]).expand(n, 2)
    t = torch.full((n,), 3)
    with torch.no_grad():
        x_prev = model.denoise(xt, t, z)
        mean, var = model.schedule.posterior(model.generator(xt, t.float(), z), xt, t)
    torch.testing.assert_close(x_prev.mean(0), mean[0], atol=0.02, rtol=0)
    torch.testing.assert_close(x_prev.var(0), var[0].expand(2), atol=0, rtol=0.05)


def test_image_networks_shapes() -> None:
    unet = {"base_channels": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
            "dropout": 0.0, "z_emb_dim": 16, "mapping_layers": 2}  # fmt: skip
    disc = {"stem": 8, "blocks": [[8, False], [16, True]], "time_dim": 8}
    model = _ddgan(DIGITS, net="unet", unet=unet, disc=disc, nz=4, output_tanh=True)
    x = model.sample(3)
    assert x.shape == (3, 1, 8, 8) and x.abs().max() <= 1
    logits = model.discriminator(x, torch.randn_like(x), torch.tensor([1.0, 2.0, 3.0]))
    assert logits.shape == (3,)
    ddpm = DDPM.from_config({**DDPM.default_config(), "net": "mlp", "mlp": dict(SMALL_MLP)}, DIGITS)
    assert ddpm.sample(2, steps=5).shape == (2, 1, 8, 8)


def test_ddpm_trains_and_strided_sampler(tmp_path) -> None:
    cfg = _cfg(
        "ddpm", "model.num_steps=100", "model.sweep_steps=[100, 10]", "train.steps=3", "data.n_test=200"
    )
    trainer = train(cfg, tmp_path / "r", progress=False)
    model = trainer.model
    calls = []
    model.net.register_forward_hook(lambda m, i, o: calls.append(i[1][0].item()))
    model.sample(4, steps=10)
    assert len(calls) == 10 and calls[0] == 100.0 and calls[-1] == 10.0
    variants = model.sampling_variants()
    assert {k: v[0] for k, v in variants.items()} == {"100 steps": 100, "10 steps": 10}
    from symgen.runs import evaluate_run

    res = evaluate_run(tmp_path / "r", ["sampling_tradeoff"])
    assert set(res) == {"sec_per_1k_s100", "mmd2_s100", "sec_per_1k_s10", "mmd2_s10"}
    assert (tmp_path / "r" / "plots" / "quality_vs_time.png").is_file()


def test_ddpm_recovers_a_gaussian_with_the_optimal_denoiser() -> None:
    """With the exact noise predictor E[eps | x_t] of N(m, s^2) data, 1000-step ancestral sampling gives
    N(m, s^2); the strided sampler keeps the mean but, with the posterior variance beta_tilde of the large
    steps, shrinks the spread (the Gaussian-step error that DDGAN's multimodal steps avoid, Sec. 6.1)."""
    m, s = 0.5, 0.3
    model = DDPM.from_config({**DDPM.default_config(), "net": "mlp", "mlp": dict(SMALL_MLP)}, TOY)
    ab = model.schedule.alphas_bar

    class Exact(nn.Module):
        def forward(self, xt, t, z=None):
            a = ab[t.long()].view(-1, 1)
            return (1 - a).sqrt() * (xt - a.sqrt() * m) / (a * s**2 + 1 - a)

    model.net = Exact()
    stds = []
    for steps in (1000, 100, 10):
        x = model.sample(20000, torch.Generator().manual_seed(0), steps=steps)
        assert float(x.mean()) == pytest.approx(m, abs=0.01)
        stds.append(float(x.std()))
    assert stds[0] == pytest.approx(s, rel=0.03)
    assert stds[0] > stds[1] > stds[2]


def test_bad_config_names_the_key() -> None:
    for key, value, match in [
        ("num_steps", 0, "model.num_steps"),
        ("beta_min", 30.0, "model.beta_min must be < model.beta_max"),
        ("r1_every", 0, "model.r1_every"),
        ("parametrization", "eps", "model.parametrization"),
        ("nz", -1, "model.nz"),
    ]:
        with pytest.raises(ValueError, match=match):
            _ddgan(**{key: value})
    with pytest.raises(ValueError, match="model.sample_steps"):
        DDPM.from_config({**DDPM.default_config(), "num_steps": 10, "sample_steps": 20, "net": "mlp"}, TOY)


def test_mode_coverage_metric_closed_forms() -> None:
    from symgen.data.toy2d import twentyfive_gaussians
    from symgen.tasks.mode_coverage import mode_coverage

    data = twentyfive_gaussians()
    x = data.sample(2500, generator=torch.Generator().manual_seed(0)).float()
    out = mode_coverage(x, data.means, data.std)
    assert out["modes_covered"] == 25 and out["high_quality"] > 0.98 and out["mode_kl"] < 0.02
    one = data.means[:1].expand(2500, 2) + 0.5 * data.std
    out = mode_coverage(one, data.means, data.std)
    assert out["modes_covered"] == 1 and out["high_quality"] == 1.0
    assert out["mode_kl"] == pytest.approx(torch.log(torch.tensor(25.0)).item())
    far = torch.full((100, 2), 10.0)
    assert mode_coverage(far, data.means, data.std)["high_quality"] == 0.0


def test_adamlp_trunk_uses_time_and_latent() -> None:
    torch.manual_seed(0)
    model = _ddgan(DIGITS, net="adamlp", nz=4)
    xt, t = torch.randn(3, 1, 8, 8), torch.tensor([1.0, 2.0, 3.0])
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    out = model.generator(xt, t, z1)
    assert out.shape == xt.shape
    assert not torch.allclose(out, model.generator(xt, t, z2))
    assert not torch.allclose(out, model.generator(xt, t + 1, z1))
    ddpm = DDPM.from_config({**DDPM.default_config(), "net": "adamlp", "mlp": dict(SMALL_MLP)}, DIGITS)
    assert ddpm.net.mapping is None and ddpm.sample(2, steps=3).shape == (2, 1, 8, 8)


def test_timed_draw_batches_and_times_the_quality_draw() -> None:
    from symgen.tasks.sampling_tradeoff import timed_draw

    sizes: list[int] = []

    def sample(k: int, generator: torch.Generator) -> torch.Tensor:
        sizes.append(k)
        return torch.randn(k, 2, generator=generator)

    x, seconds = timed_draw(sample, 2500, torch.Generator().manual_seed(1), batch=1000)
    assert sizes == [16, 1000, 1000, 500] and x.shape == (2500, 2) and seconds > 0
    # the draw uses the caller's generator (reproducible), not the warm-up's
    y, _ = timed_draw(sample, 2500, torch.Generator().manual_seed(1), batch=1000)
    assert torch.equal(x, y)
