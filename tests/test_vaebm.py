import math

import pytest
import torch
import yaml
from torch import nn

from symgen.cli import main
from symgen.init_from import apply_init_from
from symgen.models.base import DataInfo
from symgen.models.vaebm import VAEBM
from symgen.registry import MODELS

TOY = DataInfo("toy", "toy2d", (2,))
DIGITS = DataInfo("digits", "image", (1, 8, 8))


def build(data: DataInfo = TOY, **changes) -> VAEBM:
    cfg = VAEBM.default_config()
    cfg["vae"] = {"name": "vae", "latent_dim": 2, "beta": 4.0}
    cfg["vae_mlp"] = {"hidden": 16, "layers": 1}
    cfg["energy"] = {**cfg["energy"], "hidden": 16, "layers": 1}
    cfg.update(changes)
    return VAEBM.from_config(cfg, data)


def exact_vae_log_likelihood(model: VAEBM, x: torch.Tensor, n: int = 400, half: float = 7.0) -> torch.Tensor:
    """log p(x) = log int N(x; G(z), sigma^2 I) N(z; 0, I) dz by the midpoint rule on a z-grid."""
    h = 2 * half / n
    t = -half + h * (torch.arange(n, dtype=torch.float64) + 0.5)
    z = torch.cartesian_prod(t, t)
    with torch.no_grad():
        g = model.vae.decode(z.float()).double()
    s2 = model.vae.decoder_sigma**2
    log_pz = -0.5 * z.pow(2).sum(-1) - math.log(2 * math.pi)
    d2 = (x.double()[:, None, :] - g[None]).pow(2).sum(-1)
    log_px_z = -0.5 * d2 / s2 - math.log(2 * math.pi * s2)
    return torch.logsumexp(log_px_z + log_pz, 1) + 2 * math.log(h)


def test_iwae_bound_increases_with_samples_and_stays_below_quadrature():
    torch.manual_seed(0)
    model = build().eval()
    x = torch.randn(64, 2) * 1.5
    exact = exact_vae_log_likelihood(model, x).mean().item()
    bounds = []
    for k in (1, 10, 100, 2000):
        torch.manual_seed(1)
        bounds.append(model.vae.iwae_log_likelihood(x, k).mean().item())
    assert bounds[0] < bounds[1] < bounds[2] < bounds[3], bounds
    assert bounds[3] <= exact + 0.01, (bounds, exact)
    assert exact - bounds[3] < exact - bounds[0]


class Quadratic(nn.Module):
    """f(x) = -(x - m)^T P (x - m) / 2."""

    def __init__(self, m: torch.Tensor, P: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("m", m)
        self.register_buffer("P", P)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x - self.m
        return -0.5 * (d @ self.P * d).sum(-1)


def linear_gaussian_vaebm(**changes) -> tuple[VAEBM, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear decoder G(z) = A z + b, Gaussian prior, quadratic tilt: the tilted x-density is Gaussian with
    precision C^-1 + P, C = A A^T + sigma^2 I. Returns the model, C, b, and the tilted mean and covariance."""
    torch.manual_seed(0)
    model = build(**changes)
    lin = nn.Linear(2, 2)
    A, b = torch.tensor([[1.0, 0.3], [-0.2, 0.7]]), torch.tensor([0.5, -1.0])
    with torch.no_grad():
        lin.weight.copy_(A)
        lin.bias.copy_(b)
    model.vae.decoder = lin
    m, P = torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    model.energy = Quadratic(m, P)
    C = A @ A.T + model.vae.decoder_sigma**2 * torch.eye(2)
    cov = torch.linalg.inv(torch.linalg.inv(C) + P)
    mean = cov @ (torch.linalg.solve(C, b) + P @ m)
    model.opts["step_size"] = 0.1
    return model, C, b, mean, cov


def test_eps_space_langevin_matches_data_space_sampling_linear_gaussian():
    """Langevin in (eps_z, eps_x) pushed forward (Eq. 4.19) and Langevin in x on log N(x; b, C) + f(x) both
    match the tilted Gaussian's moments."""
    model, C, b, mean, cov = linear_gaussian_vaebm()
    x_eps = model.push_forward(model.langevin(model.noise(4000), 600))

    from symgen.samplers import Langevin, run_chain

    def data_log_prob(x: torch.Tensor) -> torch.Tensor:
        d = x - b
        return -0.5 * (d @ torch.linalg.inv(C) * d).sum(-1) + model.neg_energy(x)

    x_data, _ = run_chain(Langevin(0.05), data_log_prob, torch.randn(4000, 2), 1500, record=False)
    for x in (x_eps, x_data.detach()):
        torch.testing.assert_close(x.mean(0), mean, atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(x.T), cov, atol=0.05, rtol=0.1)


def test_mala_kernel_samples_the_tilted_density_where_unadjusted_langevin_is_biased():
    """kernel: mala (the Langevin proposal plus an MH test) pushed forward matches the tilted Gaussian at a
    step size (s = 0.8) at which the unadjusted kernel's covariance is far off (the bias of
    docs/models/vaebm.md, "Diagnosis")."""
    covs = {}
    for kernel in ("mala", "langevin"):
        lang = {"steps": 20, "step_size": 0.1, "noise_scale": 1.0, "kernel": kernel}
        model, _, _, mean, cov = linear_gaussian_vaebm(langevin=lang)
        model.opts["step_size"] = 0.8
        x = model.push_forward(model.langevin(model.noise(4000), 300))
        covs[kernel] = torch.cov(x.T)
        if kernel == "mala":
            torch.testing.assert_close(x.mean(0), mean, atol=0.03, rtol=0)
    torch.testing.assert_close(covs["mala"], cov, atol=0.03, rtol=0.1)
    assert ((covs["langevin"] - cov).abs() / cov.abs()).max() > 0.3
    with pytest.raises(ValueError, match="model.langevin.kernel"):
        build(langevin={"steps": 2, "step_size": 0.1, "noise_scale": 1.0, "kernel": "hmc"})
    with pytest.raises(ValueError, match="model.langevin.noise_scale"):
        build(langevin={"steps": 2, "step_size": 0.1, "noise_scale": 0.5, "kernel": "mala"})


def test_training_steps_and_persistent_chains(tmp_path):
    out = tmp_path / "run"
    args = ["train", "vaebm", "--data", "25gaussians_vaebm", "--out", str(out), "--quiet"]
    sets = [
        "model.vae_mlp.hidden=16", "model.energy.hidden=16", "model.langevin.steps=3",
        "model.persistent.enabled=true", "model.sample.steps=3", "model.decoder_update=0.1",
        "train.stages=[{name: vae, steps: 4, optimizers: [vae]},"
        " {name: ebm, steps: 3, optimizers: [ebm, decoder]}]",
        "train.n_samples=16", "train.log_every=1",
    ]  # fmt: skip
    assert main(args + sum((["--set", s] for s in sets), [])) == 0
    text = (out / "metrics.jsonl").read_text()
    assert "vae_loss" in text and "f_model" in text and "decoder_loss" in text


def test_bad_vae_part_and_init_from_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="model.vae.name"):
        build(vae={"name": "glf", "latent_dim": 2})
    model = build(DIGITS, vae={"name": "vae", "latent_dim": 4})
    with pytest.raises(ValueError, match="model.init_from.vae"):
        apply_init_from(model, {"vae": str(tmp_path / "missing")})
    (tmp_path / "glf").mkdir()
    (tmp_path / "glf" / "config.yaml").write_text(yaml.safe_dump({"model": {"name": "glf"}}))
    with pytest.raises(ValueError, match="model.init_from.vae.*'glf' run"):
        apply_init_from(model, {"vae": str(tmp_path / "glf")})


def test_images_build_the_registered_vae_and_sample():
    torch.manual_seed(0)
    model = build(DIGITS, vae={"name": "vae_flow_prior", "latent_dim": 4})
    assert type(model.vae) is MODELS.get("vae_flow_prior")
    assert model.transport.dim == 4 + 64
    model.opts["sample_steps"] = 2
    assert model.sample(3).shape == (3, 1, 8, 8)
    assert model.latent_log_prob(model.noise(5)).shape == (5,)


def _resume_cfg(steps: int) -> dict:
    from symgen.config import resolve_config

    return resolve_config("vaebm", overrides=[
        "data.name=25gaussians_vaebm", "data.batch_size=16", "model.vae_mlp.hidden=8",
        "model.energy.hidden=8", "model.energy.layers=1", "model.langevin.steps=2",
        "model.persistent.enabled=true", "model.langevin.kernel=mala",
        "model.persistent.reinit_prob=0.3", "model.sample.steps=2", "train.log_every=1", "train.ckpt_every=3",
        "train.n_samples=8", "model.tasks.iwae_samples=2",
        f"train.stages=[{{name: vae, steps: 2, optimizers: [vae]}}, {{name: ebm, steps: {steps - 2}, "
        "optimizers: [ebm]}]",
    ])  # fmt: skip


def test_persistent_chains_survive_resume_exactly(tmp_path):
    from symgen.runs import train

    straight = train(_resume_cfg(9), tmp_path / "s", progress=False).model
    first = train(_resume_cfg(6), tmp_path / "r", progress=False).model
    assert first.chains is not None and not torch.equal(first.chains, straight.chains)
    resumed = train(_resume_cfg(9), tmp_path / "r", resume=True, progress=False).model
    assert torch.equal(resumed.chains, straight.chains)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    fresh = build(persistent={"enabled": True, "reinit_prob": 0.0})
    fresh.load_chain_state(straight.chain_state())
    assert torch.equal(fresh.start(16), straight.chains)  # reinit_prob 0: the chains continue as they are
    with pytest.raises(ValueError, match="chains must have shape"):
        fresh.load_chain_state({"chains": torch.zeros(4, 3)})
