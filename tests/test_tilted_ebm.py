"""Tests of the flow-tilted EBMs (NT-EBM, NCE-EBM, Glow + EBM) against closed forms.

Ground truths: with a linear flow and a quadratic energy the tilted density is Gaussian in closed form
(:class:`LinearQuadraticTilt`), so latent HMC pushed forward and data-space HMC must both match its moments;
NCE with a quadratic correction of a standard-normal "flow" recovers the exact log density ratio of a
Gaussian; persistent chains resume bit-for-bit from a checkpoint.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from symgen.config import resolve_config
from symgen.models.base import DataInfo, StepContext
from symgen.models.glow_ebm import GlowEBM
from symgen.models.nce_ebm import NCEEBM
from symgen.models.ntebm import NTEBM
from symgen.models.tilted_ebm import LinearQuadraticTilt
from symgen.runs import train
from symgen.samplers import HMC, run_chain

TOY = DataInfo("8gaussians", "toy2d", (2,))


def _cfg(cls, **changes):
    cfg = cls.default_config()
    cfg["energy"].update(hidden=8, layers=1)
    cfg["flow_args"] = {"transforms": 1, "hidden_features": [8]}
    for key, value in changes.items():
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return cfg


class _Affine:
    """The distribution of ``x = A z + b``, ``z ~ N(0, I)`` (forward / inverse / log_prob of symgen flows)."""

    def __init__(self, t: LinearQuadraticTilt) -> None:
        self.t = t

    def forward(self, z):
        return self.t.push_forward(z), torch.full(z.shape[:1], float(self.t._log_det_a))

    def log_prob(self, x):
        d = x - self.t.b
        q = -0.5 * ((d @ self.t._prec_q) * d).sum(-1)
        return q - float(self.t._log_det_a) - x.shape[-1] / 2 * math.log(2 * math.pi)


class AffineFlow(nn.Module):
    event_shape = (2,)

    def __init__(self, t: LinearQuadraticTilt) -> None:
        super().__init__()
        self.t = t

    def forward(self):
        return _Affine(self.t)


class Quadratic(nn.Module):
    def __init__(self, t: LinearQuadraticTilt) -> None:
        super().__init__()
        self.t = t

    def forward(self, x):
        return self.t.neg_energy(x)


class Ctx(StepContext):
    def __init__(self, model, lr=None):
        super().__init__(0, torch.device("cpu"), torch.Generator().manual_seed(0))
        self.opts = {"ebm": torch.optim.Adam(model.ebm_parameters(), lr=lr or 1e-3)}

    def optimize(self, name, loss):
        self.opts[name].zero_grad()
        loss.backward(inputs=[p for g in self.opts[name].param_groups for p in g["params"]])
        self.opts[name].step()
        return 0.0


def _moments(x):
    return x.mean(0), torch.cov(x.T)


def test_latent_hmc_pushed_forward_matches_data_space_hmc_and_the_closed_form():
    torch.manual_seed(0)
    t = LinearQuadraticTilt.default(2, dtype=torch.float32)
    model = NTEBM.from_config(_cfg(NTEBM, **{"sample.steps": 300, "sample.adapt_steps": 100}), TOY)
    model.flow, model.energy = AffineFlow(t), Quadratic(t)
    z = torch.randn(7, 2)  # the model's Eq. (9) / Eq. (7) are the closed form's
    torch.testing.assert_close(model.latent_log_prob(z), t.latent_log_prob(z))
    x = t.push_forward(z)
    diff = model.log_prob(x) - t.data_log_prob(x)
    torch.testing.assert_close(diff, diff[:1].expand(7))  # equal up to the normaliser

    latent = model.sample(2000, torch.Generator().manual_seed(1))  # latent HMC, pushed forward
    _, trace = run_chain(HMC(0.15, 3), model.log_prob, latent.new_zeros(2000, 2), 300, adapt_steps=100)
    data = trace.state.position
    sd = t.cov.diagonal().sqrt()
    for name, samples in (("latent", latent), ("data", data)):
        mean, cov = _moments(samples)
        assert ((mean - t.mean).abs() / sd).max() < 0.12, name
        torch.testing.assert_close(cov, t.cov, rtol=0.12, atol=0.05 * float(sd.max() ** 2))
    m_l, c_l = _moments(latent)
    m_d, c_d = _moments(data)
    assert ((m_l - m_d).abs() / sd).max() < 0.15
    torch.testing.assert_close(c_l, c_d, rtol=0.15, atol=0.05 * float(sd.max() ** 2))


class _Identity:
    def forward(self, z):
        return z, torch.zeros(z.shape[0])

    def log_prob(self, x):
        return -0.5 * x.square().sum(-1) - 0.5 * math.log(2 * math.pi)


class IdentityFlow(nn.Module):
    event_shape = (1,)

    def forward(self):
        return _Identity()


class QuadraticCorrection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.zeros(()))
        self.c = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        x = x[:, 0]
        return self.a * x * x + self.c * x


def test_nce_recovers_the_log_density_ratio_in_1d():
    # data N(1, 0.5^2), noise q = N(0, 1): log p/q = -1.5 x^2 + 4 x + k0, k0 = log 2 - 2 (Eq. (10), rho = 1/2)
    torch.manual_seed(0)
    info = DataInfo("gauss1d", "toy2d", (1,))
    model = NCEEBM.from_config(_cfg(NCEEBM, flow_args={"transforms": 1, "hidden_features": [4]}), info)
    model.flow, model.energy = IdentityFlow(), QuadraticCorrection()
    ctx = Ctx(model, lr=0.05)
    for _ in range(600):
        model.training_step(1.0 + 0.5 * torch.randn(512, 1), ctx)
    assert model.energy.a.item() == pytest.approx(-1.5, abs=0.15)
    assert model.energy.c.item() == pytest.approx(4.0, abs=0.3)
    assert model.bias.item() == pytest.approx(math.log(2) - 2, abs=0.2)


def _base(steps):
    return [
        "data.name=8gaussians",
        "data.batch_size=16",
        "model.energy.hidden=8",
        "model.energy.layers=1",
        "model.flow_args={transforms: 1, hidden_features: [8]}",
        "model.hmc.steps=2",
        "model.hmc.reinit_prob=0.2",
        "model.sample.steps=2",
        "model.sample.adapt_steps=1",
        "train.log_every=1",
        "train.ckpt_every=3",
        f"train.stages=[{{name: pretrain, steps: 2, optimizers: [flow]}}, {{name: ebm, steps: {steps - 2}, "
        "optimizers: [ebm]}]",
    ]


def test_persistent_chains_and_adapted_step_sizes_survive_resume_exactly(tmp_path):
    cfg = lambda n: resolve_config("ntebm", overrides=_base(n))  # noqa: E731
    straight = train(cfg(9), tmp_path / "s", progress=False).model
    first = train(cfg(6), tmp_path / "r", progress=False).model
    assert not torch.equal(first.chains.position, straight.chains.position)
    resumed = train(cfg(9), tmp_path / "r", resume=True, progress=False).model
    assert torch.equal(resumed.chains.position, straight.chains.position)
    assert torch.equal(resumed.chains.step_size, straight.chains.step_size)
    assert resumed.chains.iteration == straight.chains.iteration == 7 * 2
    assert torch.equal(resumed.adaptation_state["step_size"], straight.adaptation_state["step_size"])
    assert not torch.equal(straight.chains.step_size, torch.full((16,), 0.15))  # it did adapt
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"hmc.target_accept": 1.2}, "model.hmc.target_accept"),
        ({"hmc.target_accept": 0.0}, "model.hmc.target_accept"),
        ({"hmc.n_leapfrog": 0}, "model.hmc.n_leapfrog"),
        ({"hmc.steps": 0}, "model.hmc.steps"),
        ({"hmc.adaptation": "fancy"}, "model.hmc.adaptation"),
        ({"hmc.reinit_prob": 2.0}, "model.hmc.reinit_prob"),
        ({"sample.adapt_steps": 500}, "model.sample.adapt_steps"),
        ({"lr": {"critic": 1e-3}}, "accepted: flow, ebm"),
    ],
)
def test_bad_settings_name_the_key(changes, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        NTEBM.from_config(_cfg(NTEBM, **changes), TOY)


def test_glow_ebm_bad_langevin_settings_name_the_key():
    with pytest.raises(ValueError, match=r"model\.langevin\.steps"):
        GlowEBM.from_config(_cfg(GlowEBM, **{"langevin.steps": 0}), TOY)


def test_flow_run_on_data_of_another_event_shape_is_rejected(tmp_path):
    from symgen.init_from import apply_init_from

    flow_cfg = resolve_config(
        "flow",
        overrides=["data.name=digits", "train.steps=1", "model.flow_args={levels: 1, depth: 1, width: 8}"],
    )
    train(flow_cfg, tmp_path / "flow", progress=False)
    model = NTEBM.from_config(_cfg(NTEBM), TOY)
    with pytest.raises(ValueError, match=r"model\.init_from\.flow.*\(1, 8, 8\).*\(2,\)"):
        apply_init_from(model, {"flow": str(tmp_path / "flow")})


def test_each_family_trains_one_step_and_samples():
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    for cls in (NTEBM, NCEEBM, GlowEBM):
        extra = {"langevin.steps": 2, "langevin.test_steps": 2} if cls is GlowEBM else {}
        model = cls.from_config(
            _cfg(cls, **{"hmc.steps": 2, "sample.steps": 2, "sample.adapt_steps": 1}, **extra), TOY
        )
        before = [p.detach().clone() for p in model.flow.parameters()]
        logs = model.training_step(x, Ctx(model))
        assert all(math.isfinite(v) for v in logs.values())
        assert all(torch.equal(a, b) for a, b in zip(before, model.flow.parameters()))  # frozen flow
        assert model.sample(5).shape == (5, 2)
        assert set(model.named_samples(4)) == {"flow", cls.label}


def test_joint_flow_takes_the_tilted_models_ml_gradient():
    torch.manual_seed(0)
    model = NTEBM.from_config(_cfg(NTEBM, **{"hmc.steps": 2, "joint_flow": True}), TOY)
    opts = model.configure_optimizers()
    seen = {}

    def optimize(name, loss):
        seen[name] = loss
        return 0.0

    x = torch.randn(16, 2)
    model.initialize(x)  # the standardisation of the flow's input, fitted to the first batch
    model.training_step(x, StepContext(0, torch.device("cpu"), torch.Generator(), _optimize=optimize))
    assert set(seen) == {"ebm", "flow"} and opts
    x_neg = model.flow_forward(model.chains.position)  # the negatives of this step
    expected = model.flow_log_prob(x_neg).mean() - model.flow_log_prob(x).mean()
    torch.testing.assert_close(seen["flow"].detach(), expected.detach())
