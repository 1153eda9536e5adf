"""Tests of the latent-variable model family (LFBM, ABP, LEBM, LFBM-VAE) against closed forms.

Ground truths: a linear generator ``g(z) = W z + b`` with a Gaussian prior has the Gaussian posterior
``N(mu, S)`` with ``S = (I + W^T W / sigma^2)^-1`` and ``mu = S W^T (x - b) / sigma^2`` (Bayesian linear
regression), and the gradient of the posterior log-density is Eq. (8)'s
``grad l(z) + W^T (m * (x - g(z))) / sigma^2``.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from symgen.models.base import DataInfo, StepContext
from symgen.models.inference import AmortizedInference, FlowPosterior, MCMCInference
from symgen.models.latent import ABP, LEBM, LFBM, LFBMVAE, LatentModel
from symgen.models.priors import EBMPrior, FlowPrior, GaussianPrior, build_prior
from symgen.nets import build_encoder, build_generator
from symgen.registry import MODELS

DIGITS = DataInfo("digits", "image", (1, 8, 8), 10)


class LinearGenerator(nn.Module):
    """``z -> W z + b`` reshaped to images ``(B, 1, H, W)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, hw: tuple[int, int]) -> None:
        super().__init__()
        self.weight, self.bias, self.hw = nn.Parameter(weight), nn.Parameter(bias), hw

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.weight.T + self.bias).view(z.shape[0], 1, *self.hw)


def linear_model(prior: nn.Module, sigma: float, inference: MCMCInference | None = None, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(4, prior.latent_dim, generator=gen) * 0.7
    bias = torch.randn(4, generator=gen) * 0.1
    model = LatentModel(
        LinearGenerator(weight, bias, (2, 2)), prior, (1, 2, 2), sigma,
        inference or MCMCInference(), lr={"generator": 1e-3, "prior": 1e-3},
    )  # fmt: skip
    return model, weight, bias


def exact_posterior(weight, bias, sigma, x_flat):
    d = weight.shape[1]
    cov = torch.linalg.inv(torch.eye(d, dtype=weight.dtype) + weight.T @ weight / sigma**2)
    mean = (x_flat - bias) @ weight @ cov / sigma**2
    return mean, cov


class RecordingContext(StepContext):
    """A StepContext that steps real Adam optimizers and records the losses it was given."""

    def __init__(self, model: LatentModel, seed: int = 0) -> None:
        super().__init__(step=0, device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed))
        self.opts = model.configure_optimizers()
        self.losses: dict[str, torch.Tensor] = {}

    def optimize(self, name: str, loss: torch.Tensor) -> float:
        self.losses[name] = loss.detach().clone()
        opt = self.opts[name]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 0.0


# --------------------------------------------------------------------------- posterior density (Eq. 8)


@pytest.mark.parametrize("masked", [False, True])
def test_posterior_gradient_matches_eq8_closed_form(masked):
    torch.manual_seed(0)
    prior = FlowPrior(3, "glow_vector", depth=2, width=16)
    model, weight, bias = linear_model(prior, sigma=0.3)
    x = torch.randn(5, 1, 2, 2)
    mask = (torch.rand(5, 1, 2, 2) > 0.4).float() if masked else None
    z = torch.randn(5, 3, requires_grad=True)
    (grad,) = torch.autograd.grad(model.posterior_log_prob(x, mask)(z).sum(), z)

    zd = z.detach().requires_grad_(True)
    (prior_grad,) = torch.autograd.grad(prior.log_prob(zd).sum(), zd)
    resid = (x - model.generator(zd)).reshape(5, 4).detach()
    if mask is not None:
        resid = resid * mask.reshape(5, 4)
    closed = prior_grad + resid @ weight / 0.3**2  # grad l(z) + W^T (m (x - g(z))) / sigma^2
    torch.testing.assert_close(grad, closed, rtol=1e-5, atol=1e-5)


def test_masked_posterior_ignores_masked_pixels():
    torch.manual_seed(1)
    model, _, _ = linear_model(GaussianPrior(3), sigma=0.5, inference=MCMCInference(test_steps=50))
    x = torch.randn(6, 1, 2, 2)
    mask = torch.ones(6, 1, 2, 2)
    mask[:, :, 0, 1] = 0
    x_other = x.clone()
    x_other[:, :, 0, 1] = torch.randn(6, 1) * 10  # arbitrary values where the mask hides the pixel
    z = torch.randn(6, 3)
    torch.testing.assert_close(
        model.posterior_log_prob(x, mask)(z), model.posterior_log_prob(x_other, mask)(z)
    )
    z_a = model.infer(x, mask, test=True, generator=torch.Generator().manual_seed(3))
    z_b = model.infer(x_other, mask, test=True, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(z_a, z_b)
    # ... while without the mask the hidden pixel does change the inferred latents
    z_c = model.infer(x_other, None, test=True, generator=torch.Generator().manual_seed(3))
    assert (z_c - z_a).abs().max() > 1e-2


def test_long_run_langevin_recovers_exact_gaussian_posterior():
    """ULA with s = 0.1 on a posterior with precision eigenvalues in [2.4, 3.5].

    The chains contract at rate ~ s^2 lambda_min / 2 = 1.2% per step (500 steps: start forgotten to 0.3%)
    and ULA's stationary covariance is off by a factor ~ 1 / (1 - s^2 lambda / 4): <= 0.9%.
    """
    torch.manual_seed(2)
    sigma, n_chains = 1.0, 2000
    spec = MCMCInference(kind="langevin", steps=500, step_size=0.1, noise=True)
    model, weight, bias = linear_model(GaussianPrior(2), sigma, spec, seed=5)
    weight = torch.tensor(
        [[1.0, 1.0], [1.0, -0.6], [0.2, 0.5], [0.0, -0.5]]
    )  # precision eigenvalues ~2.4, 3.5
    model.generator.weight.data.copy_(weight)
    x = torch.tensor([0.8, -0.4, 1.2, 0.3]).view(1, 1, 2, 2)
    z = model.infer(x.expand(n_chains, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    mean, cov = exact_posterior(weight.detach(), bias.detach(), sigma, x.view(1, 4))
    emp_cov = torch.cov(z.T)
    se = (torch.diagonal(cov) / n_chains).sqrt()
    assert ((z.mean(0) - mean[0]).abs() < 5 * se + 0.01).all(), (z.mean(0), mean)
    # covariance: relative MC error sqrt(2/N) ~ 2.2%, plus <= 1% discretisation bias
    torch.testing.assert_close(emp_cov, cov, rtol=0.1, atol=0.02)


def test_noise_free_test_chain_reaches_posterior_mode():
    torch.manual_seed(3)
    spec = MCMCInference(test_steps=800, test_step_size=0.2, test_noise=False)
    model, weight, bias = linear_model(GaussianPrior(3), 0.5, spec)
    x = torch.randn(4, 1, 2, 2)
    z = model.infer(x, test=True)
    mean, _ = exact_posterior(weight.detach(), bias.detach(), 0.5, x.view(4, 4))
    torch.testing.assert_close(z, mean, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------- Algorithm 1


def test_training_step_follows_algorithm_1():
    """The losses handed to the optimizers are Eq. (6) and Eq. (7) at the chain's latents."""
    torch.manual_seed(4)
    prior = FlowPrior(3, "glow_vector", depth=2, width=16)
    model, _, _ = linear_model(prior, 0.3, MCMCInference(steps=5))
    x = torch.randn(8, 1, 2, 2)
    ctx = RecordingContext(model, seed=11)
    reference = model.infer(x, generator=torch.Generator().manual_seed(11))  # same RNG stream as the step
    # The prior's standardisation is re-fitted to the first posterior latents before Eq. (6) is evaluated.
    fitted = copy.deepcopy(prior)
    fitted.flow.standardizer.fit(reference)
    expected_prior = -fitted.log_prob(reference).mean().detach()
    resid = (x - model.generator(reference)).pow(2).flatten(1).sum(1)
    expected_gen = (resid / (2 * 0.3**2)).mean().detach()
    logs = model.training_step(x, ctx)
    torch.testing.assert_close(ctx.losses["prior"], expected_prior)
    torch.testing.assert_close(ctx.losses["generator"], expected_gen)
    assert logs["loss"] == pytest.approx(float(expected_prior + expected_gen), rel=1e-5)
    torch.testing.assert_close(prior.flow.standardizer.loc, reference.mean(0))


def test_training_step_with_mask_ignores_hidden_pixels():
    torch.manual_seed(5)
    model, _, _ = linear_model(GaussianPrior(3), 0.3, MCMCInference(steps=5))
    x = torch.randn(8, 1, 2, 2)
    mask = torch.ones(8, 1, 2, 2)
    mask[:, :, 1, 0] = 0
    x2 = x.clone()
    x2[:, :, 1, 0] = 5.0
    c1, c2 = RecordingContext(model, 7), RecordingContext(model, 7)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.training_step((x, mask), c1)
    model.load_state_dict(state)
    model.training_step((x2, mask), c2)
    torch.testing.assert_close(c1.losses["generator"], c2.losses["generator"])


def test_ebm_prior_update_is_contrastive():
    """Minimising the LEBM loss raises f at posterior latents relative to prior samples (Eq. (12) setting)."""
    torch.manual_seed(6)
    prior = EBMPrior(2, hidden=16, layers=1, steps=5, step_size=0.3)
    z_post = torch.randn(64, 2) * 0.3 + torch.tensor([2.0, 0.0])  # posterior mass away from N(0, I)
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(prior.parameters(), lr=0.05)
    gap0 = None
    for _ in range(20):
        loss, logs = prior.loss(z_post, gen)
        gap = logs["ebm_f_pos"] - logs["ebm_f_neg"]
        gap0 = gap if gap0 is None else gap0
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert gap > gap0 + 0.1, (gap0, gap)
    # the unnormalised log density is f(z) + log N(z; 0, I)
    z = torch.randn(5, 2)
    expected = prior.f(z) - 0.5 * z.pow(2).sum(1) - math.log(2 * math.pi)
    torch.testing.assert_close(prior.log_prob(z), expected)


def test_flow_prior_sampling_is_exact_pushforward():
    torch.manual_seed(7)
    prior = FlowPrior(3, "glow_vector", depth=2, width=16)
    z0 = torch.randn(6, 3)
    z = prior.from_base(z0)
    torch.testing.assert_close(prior.to_base(z), z0, rtol=1e-4, atol=1e-4)
    # change of variables: log p(z) = log N(z0) - log|det dz/dz0|
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda u: prior.from_base(u[None])[0], u) for u in z0]
    )
    expected = -0.5 * z0.pow(2).sum(1) - 1.5 * math.log(2 * math.pi) - torch.linalg.slogdet(jac)[1]
    torch.testing.assert_close(prior.log_prob(z), expected, rtol=1e-4, atol=1e-4)
    same = prior.sample(4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, prior.sample(4, torch.Generator().manual_seed(1)))


def test_flow_posterior_log_density_by_change_of_variables():
    """LFBM-VAE's log q(z|x) (Eqs. (22)-(23)) against an autograd Jacobian of the flow."""
    torch.manual_seed(8)
    from symgen.flows import build_flow

    enc = build_encoder("mlp8", 3, (1, 8, 8), width=16)
    post = FlowPosterior(enc, build_flow("glow_vector", event_shape=(3,), depth=2, width=16))
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    z, log_q = post.rsample_and_log_prob(x, torch.Generator().manual_seed(0))
    mu, log_sigma = enc(x)
    flow = post.flow()
    z0 = flow.inverse(z)[0]
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda u: flow.forward(u[None])[0][0], u) for u in z0]
    )
    log_q0 = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(z0).sum(1)
    torch.testing.assert_close(log_q, log_q0 - torch.linalg.slogdet(jac)[1], rtol=1e-4, atol=1e-4)


class ExactPosteriorEncoder(nn.Module):
    """Encoder returning the exact posterior N(mu, diag s^2) of a linear model with orthogonal W columns."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, sigma: float) -> None:
        super().__init__()
        self.weight, self.bias, self.sigma = weight, bias, sigma
        self.latent_dim = weight.shape[1]
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, cov = exact_posterior(self.weight, self.bias, self.sigma, x.reshape(len(x), -1))
        return mean + 0 * self.dummy, 0.5 * torch.diagonal(cov).log().expand_as(mean)


def test_vae_elbo_equals_log_marginal_with_exact_posterior():
    """Eq. (24): with q(z|x) the exact posterior, the ELBO is log p(x) = log N(x; b, W W^T + sigma^2 I)."""
    torch.manual_seed(9)
    sigma = 0.5
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0]])  # W^T W diagonal
    bias = torch.tensor([0.1, -0.2, 0.3, 0.0])
    post = FlowPosterior(ExactPosteriorEncoder(weight, bias, sigma), None)
    model = LatentModel(
        LinearGenerator(weight.clone(), bias.clone(), (2, 2)), GaussianPrior(2), (1, 2, 2), sigma,
        AmortizedInference(post, MCMCInference()), lr={"generator": 1e-3, "prior": 1e-3, "encoder": 1e-3},
    )  # fmt: skip
    x = torch.randn(32, 1, 2, 2)
    ctx = RecordingContext(model)
    model.training_step(x, ctx)
    marginal = torch.distributions.MultivariateNormal(bias, weight @ weight.T + sigma**2 * torch.eye(4))
    torch.testing.assert_close(
        -ctx.losses["vae"], marginal.log_prob(x.view(32, 4)).mean(), rtol=1e-4, atol=1e-4
    )


# --------------------------------------------------------------------------- configs and registry


@pytest.mark.parametrize(
    ("name", "prior_cls", "encoder"),
    [
        ("lfbm", FlowPrior, False),
        ("abp", GaussianPrior, False),
        ("lebm", EBMPrior, False),
        ("lfbm_vae", FlowPrior, True),
    ],
)
def test_registered_models_differ_only_in_prior_and_inference(name, prior_cls, encoder):
    cls = MODELS.get(name)
    cfg = cls.default_config()
    base = LatentModel.default_config()
    diff = {k for k in base if cfg[k] != base[k]}
    assert diff <= {"prior", "inference"}
    model = cls.from_config(cfg, DIGITS)
    assert isinstance(model.prior, prior_cls) and (model.posterior is not None) == encoder
    assert isinstance(model, {"lfbm": LFBM, "abp": ABP, "lebm": LEBM, "lfbm_vae": LFBMVAE}[name])
    assert cfg["inference"]["steps"] == 20 and cfg["inference"]["step_size"] == 0.1 and cfg["sigma"] == 0.3


def test_bad_config_values_raise_clear_errors():
    with pytest.raises(ValueError, match="model.prior.kind"):
        build_prior({"kind": "gmm"}, 4)
    with pytest.raises(ValueError, match="model.inference.kind"):
        MCMCInference(kind="gibbs")
    with pytest.raises(ValueError, match="generator arch"):
        build_generator("dcgan", 8, (1, 8, 8))
    with pytest.raises(ValueError, match="32x32"):
        build_generator("dcgan32", 8, (1, 8, 8))


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("dcgan32", (3, 32, 32)),
        ("dcgan32_cifar", (3, 32, 32)),
        ("dcgan64", (3, 64, 64)),
        ("mnist28", (1, 28, 28)),
        ("digits8", (1, 8, 8)),
    ],
)
def test_generators_map_latents_to_images(arch, shape):
    gen = build_generator(arch, 5, shape, ngf=4)
    out = gen(torch.randn(2, 5))
    assert out.shape == (2, *shape) and out.abs().max() <= 1
    assert build_generator("auto", 5, shape, ngf=4).__class__ is gen.__class__ or arch == "dcgan32_cifar"


# --------------------------------------------------------------------------- shipped configs

CONFIGS = {  # file -> (models it serves, event shape of its data)
    "digits": (("lfbm", "abp", "lebm", "lfbm_vae"), (1, 8, 8)),
    "svhn": (("lfbm", "abp", "lebm"), (3, 32, 32)),
    "cifar10": (("lfbm", "abp", "lebm"), (3, 32, 32)),
    "celeba64": (("lfbm", "abp", "lebm"), (3, 64, 64)),
    "mnist_anomaly": (("lfbm", "abp", "lebm"), (1, 28, 28)),
    "celeba64_recovery": (("lfbm", "abp", "lebm"), (3, 64, 64)),
    "svhn_vae": (("lfbm_vae",), (3, 32, 32)),
    "cifar10_vae": (("lfbm_vae",), (3, 32, 32)),
    "celeba64_vae": (("lfbm_vae",), (3, 64, 64)),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_shipped_configs_resolve_and_build(name):
    from pathlib import Path

    from symgen.config import resolve_config

    path = Path(__file__).resolve().parents[1] / "configs" / "lfbm" / f"{name}.yaml"
    models, shape = CONFIGS[name]
    for model_name in models:
        cfg = resolve_config(model_name, path)
        assert cfg["model"]["name"] == model_name
    mcfg = cfg["model"]
    if name == "digits":  # the whole model; for the paper configs the (large) generator is enough
        model = MODELS.get(models[0]).from_config({k: v for k, v in mcfg.items() if k != "name"}, DIGITS)
        gen = model.generator
    else:
        gen = build_generator(mcfg["generator"]["arch"], mcfg["latent_dim"], shape, mcfg["generator"]["ngf"])
    assert gen(torch.zeros(2, mcfg["latent_dim"])).shape == (2, *shape)


def test_experiment_files_resolve():
    from symgen.config import resolve_config
    from symgen.reproduce import _overrides, load_experiment

    for name in ("lfbm-digits", "lfbm-anomaly-digits", "lfbm-recovery-digits"):
        exp = load_experiment(name)
        for run in exp["runs"]:
            resolve_config(run["model"], run["config"], _overrides(run.get("set")))


def test_ebm_prior_gets_its_own_learning_rates_and_gelu():
    """One shared config: the flow/Gaussian models use lr.prior / lr.generator, the EBM prior lr.ebm_prior
    (official LEBM: 2e-5) and lr.ebm_generator when set (official LEBM SVHN: 1e-4)."""
    lr = {"generator": 1e-3, "prior": 1e-3, "encoder": 1e-3, "ebm_prior": 2e-5, "ebm_generator": None}
    rates = {}
    for cls in (LFBM, LEBM):
        cfg = cls.default_config()
        cfg["lr"] = dict(lr)
        opts = cls.from_config(cfg, DIGITS).configure_optimizers()
        rates[cls.name] = {k: o.param_groups[0]["lr"] for k, o in opts.items()}
    assert rates["lfbm"] == {"generator": 1e-3, "prior": 1e-3}
    assert rates["lebm"] == {"generator": 1e-3, "prior": 2e-5}
    cfg = LEBM.default_config()
    cfg["lr"] = {**lr, "ebm_generator": 1e-4}
    model = LEBM.from_config(cfg, DIGITS)
    assert {k: o.param_groups[0]["lr"] for k, o in model.configure_optimizers().items()} == {
        "generator": 1e-4, "prior": 2e-5,
    }  # fmt: skip
    assert any(isinstance(m, nn.GELU) for m in model.prior.modules())
    assert LEBM.default_config()["lr"]["ebm_prior"] == 2e-5


def test_xavier_normal_generator_init_matches_the_official_scheme():
    from symgen.nets.generators import init_generator

    torch.manual_seed(0)
    net = build_generator("dcgan32", 16, (3, 32, 32), 8)
    init_generator(net, "xavier_normal")
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            fan_in = m.weight.shape[1] * m.weight[0, 0].numel()  # torch's fans of a transposed conv weight
            fan_out = m.weight.shape[0] * m.weight[0, 0].numel()
            expected = math.sqrt(2.0 / (fan_in + fan_out))
            assert float(m.weight.detach().std()) == pytest.approx(expected, rel=0.1)
    with pytest.raises(ValueError, match="generator init"):
        init_generator(net, "orthogonal")


def test_inference_refuses_options_its_kernel_does_not_take():
    """MALA and HMC are always stochastic: a noise switch would be silently ignored, so it is refused."""
    for kind in ("mala", "hmc"):
        with pytest.raises(ValueError, match=f"model.inference.test_noise .*{kind}"):
            MCMCInference(kind=kind, test_noise=False)
    with pytest.raises(ValueError, match="sampler_args.clamp is not an option of the hmc kernel"):
        MCMCInference(kind="hmc", sampler_args=(("clamp", (-1.0, 1.0)),))
    assert MCMCInference(kind="hmc", sampler_args=(("n_leapfrog", 3),)).kernel(test=True) is not None
