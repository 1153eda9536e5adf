"""Input standardisation of vector flows and the bounded-domain warning (issue #17).

Ground truths: the change of variables of an affine map (log p(x) = log p_inner((x - mu)/sigma) - sum log
sigma), numerical integration on a grid (the density of the raw data integrates to one), and the exact
2 log 10 shift of a 2-D density when the data are scaled by 10 (same seed, same batches: the standardised
inputs coincide, so the trained flows do too).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from symgen.data.toy2d import spiral
from symgen.flows import OutOfDomainWarning, Standardize, build_flow, standardized
from symgen.models.base import DataInfo, StepContext
from symgen.models.flow import FlowModel
from symgen.models.priors import FlowPrior, build_prior

TOY = DataInfo(name="spiral", kind="toy2d", event_shape=(2,))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _fitted(name: str, kw: dict, x: torch.Tensor, seed: int = 0):  # noqa: ANN202
    """A standardised flow fitted to ``x`` with perturbed parameters (float64, eval mode)."""
    torch.manual_seed(seed)
    flow = standardized(build_flow(name, event_shape=(x.shape[1],), **kw)).double()
    flow.initialize(x)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow.eval()


# --------------------------------------------------------------------------- the layer and the wrapper


def test_standardize_fits_moments_and_its_log_det_is_exact():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64) * torch.tensor([10.0, 0.1, 3.0]).double() + 7
    layer = Standardize(3).double()
    z0, ladj0 = layer.inverse(x[:4])  # train mode, not fitted: the first pass fits on its batch ...
    layer = Standardize(3).double().eval()
    assert torch.equal(layer.inverse(x)[0], x)  # ... eval mode never fits: identity
    layer.fit(x)
    z, ladj = layer.inverse(x)
    assert torch.allclose(z.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std(0, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda t: layer.inverse(t[None])[0][0], x[0])
    assert torch.allclose(ladj, torch.linalg.slogdet(jac)[1].expand(500), atol=1e-12)
    assert torch.allclose(ladj, -x.std(0, correction=0).log().sum().expand(500), atol=1e-12)
    x2, ladj_fwd = layer.forward(z)
    assert torch.allclose(x2, x, atol=1e-12) and torch.allclose(ladj_fwd, -ladj)
    assert torch.allclose(z0.std(0, correction=0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(ladj0, -x[:4].std(0, correction=0).log().sum().expand(4), atol=1e-12)


def test_constant_features_are_only_centred_and_bad_batches_are_rejected():
    layer = Standardize(2)
    x = torch.stack([torch.full((8,), 3.0), torch.arange(8.0)], 1)
    layer.fit(x)
    assert layer.scale[0] == 1.0 and layer.loc[0] == 3.0
    with pytest.raises(ValueError, match="at least 2"):
        layer.fit(torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        layer.fit(torch.randn(4, 3))
    with pytest.raises(ValueError, match="event_shape"):
        standardized(build_flow("glow", event_shape=(1, 4, 4), levels=1, depth=1, width=4))
    with pytest.raises(TypeError, match="flow must be"):
        standardized(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_log_prob_is_inner_density_of_standardised_data_minus_log_scale():
    x = torch.randn(256, 2, dtype=torch.float64) * 10 + torch.tensor([30.0, -5.0]).double()
    flow = _fitted("realnvp", {"transforms": 2, "hidden_features": (16, 16)}, x)
    std = flow.standardizer
    u = (x[:7] - std.loc) / std.scale
    zu, ladj_inner = flow.inner.inverse(u)
    inner_lp = torch.distributions.Normal(0.0, 1.0).log_prob(zu).sum(1) + ladj_inner
    assert torch.allclose(flow().log_prob(x[:7]), inner_lp - std.scale.log().sum(), atol=1e-10)


@pytest.mark.parametrize("name,kw", [("nsf", {"transforms": 2, "hidden_features": (16,), "bins": 4}),
                                     ("glow_vector", {"depth": 2, "width": 8})])  # fmt: skip
def test_standardised_density_of_scaled_data_integrates_to_one(name, kw):
    # Data at scale 10 around (20, -10): the density lives on a grid ~10x wider than the unit-scale one.
    x = torch.randn(512, 2, dtype=torch.float64) * torch.tensor([10.0, 6.0]).double()
    x = x + torch.tensor([20.0, -10.0]).double()
    dist = _fitted(name, kw, x)()
    gx = torch.linspace(20 - 120, 20 + 120, 481, dtype=torch.float64)
    gy = torch.linspace(-10 - 72, -10 + 72, 481, dtype=torch.float64)
    xx, yy = torch.meshgrid(gx, gy, indexing="ij")
    with torch.no_grad():
        p = dist.log_prob(torch.stack([xx, yy], -1)).exp()
    integral = float(p.sum() * (gx[1] - gx[0]) * (gy[1] - gy[0]))
    assert abs(integral - 1.0) < 5e-3


# --------------------------------------------------------------------------- the flow model


def _train_nsf(x_train: torch.Tensor, x_test: torch.Tensor, standardize: bool, steps: int = 80) -> float:
    """Test NLL of an NSF flow model trained ``steps`` steps (batch 128) with fixed seeds."""
    torch.manual_seed(0)
    cfg = FlowModel.default_config() | {
        "flow": "nsf",
        "flow_args": {"transforms": 2, "hidden_features": [32, 32], "bins": 8},
        "lr": 3e-3,
        "standardize": standardize,
    }
    model = FlowModel.from_config(cfg, TOY)
    g = torch.Generator().manual_seed(1)
    batches = [x_train[torch.randint(len(x_train), (128,), generator=g)] for _ in range(steps)]
    model.initialize(batches[0])
    opt = model.configure_optimizers()["flow"]

    def optimize(name: str, loss: torch.Tensor) -> float:
        opt.zero_grad()
        loss.backward()
        opt.step()
        return 0.0

    model.train()
    for i, b in enumerate(batches):
        model.training_step(b, StepContext(i, torch.device("cpu"), g, _optimize=optimize))
    return model.eval().evaluate(x_test, ["test_nll"])["test_nll"]


def test_nsf_test_nll_on_data_scaled_by_10_shifts_by_2_log_10():
    data = spiral()
    x_train, x_test = data.sample(4000, torch.Generator().manual_seed(0)), data.test_set(2000)
    nll = _train_nsf(x_train, x_test, standardize=True)
    nll10 = _train_nsf(10 * x_train, 10 * x_test, standardize=True)
    # log p_10(10 x) = log p(x) - 2 log 10 for the true density; the standardised flow reproduces it. The
    # two runs see the same standardised batches up to float rounding, which training amplifies: measured
    # |error| 1e-4 at this budget (lr 3e-3, 80 steps), ~0.01-0.1 after 100-200 steps at lr 5e-3, about
    # the seed-to-seed spread of the NLL. A missing log-determinant would be off by 2 log 10 = 4.6.
    assert nll < 3.0  # it did learn (untrained: 3.8)
    assert abs(nll10 - nll - 2 * math.log(10)) < 0.05, (nll, nll10)
    # Without standardisation the spline flow leaves the data outside [-5, 5]^2 untouched: far worse
    # (measured: +236 nats), and it says so.
    with pytest.warns(OutOfDomainWarning, match=r"'nsf' .*\[-5, 5\]"):
        raw10 = _train_nsf(10 * x_train, 10 * x_test, standardize=False)
    assert raw10 - (nll + 2 * math.log(10)) > 10, (nll, raw10)


def test_flow_model_config_standardises_vector_flows_only_and_state_round_trips():
    assert FlowModel.default_config()["standardize"] is True
    cfg = FlowModel.default_config() | {"flow": "realnvp", "flow_args": {"transforms": 2}}
    model = FlowModel.from_config(cfg, TOY)
    assert model.flow.standardizer is not None
    assert not hasattr(FlowModel.from_config(cfg | {"standardize": False}, TOY).flow, "standardizer")
    image = FlowModel.from_config(
        FlowModel.default_config() | {"flow_args": {"levels": 1, "depth": 1, "width": 4}},
        DataInfo(name="digits", kind="image", event_shape=(1, 4, 4)),
    )
    assert not any(isinstance(m, Standardize) for m in image.modules())
    with pytest.raises(ValueError, match="model.standardize"):
        FlowModel.from_config(cfg | {"standardize": "yes"}, TOY)
    x = torch.randn(64, 2) * 5 + 2
    model.initialize(x)
    assert torch.allclose(model.flow.standardizer.loc, x.mean(0), atol=1e-5)
    fresh = FlowModel.from_config(cfg, TOY)
    fresh.load_state_dict(model.state_dict())
    fresh.train().log_prob(x + 100)  # a loaded standardisation never re-fits
    assert torch.equal(fresh.flow.standardizer.loc, model.flow.standardizer.loc)
    assert torch.equal(fresh.log_prob(x), model.train().log_prob(x))


# --------------------------------------------------------------------------- bounded-domain warning


def _nsf():  # noqa: ANN202
    torch.manual_seed(0)
    return build_flow("nsf", event_shape=(2,), transforms=2, hidden_features=(8,), bins=4)


def test_bounded_flow_warns_once_on_out_of_range_training_data_and_not_otherwise():
    inside = torch.rand(32, 2) * 9.8 - 4.9
    outside = inside.clone()
    outside[3, 1] = 7.5
    assert _nsf().domain_bound == 5.0 and build_flow("realnvp", event_shape=(2,)).domain_bound is None
    flow = _nsf().train()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        flow().log_prob(inside)  # in range: silent
        flow.eval()().log_prob(outside)  # evaluation is not training: silent
        assert not [w for w in caught if issubclass(w.category, OutOfDomainWarning)]
        flow.train()().log_prob(outside)
        flow().log_prob(outside * 3)  # once per flow
        build_flow("realnvp", event_shape=(2,)).train()().log_prob(outside * 10)  # unbounded: silent
        fitted = standardized(_nsf()).train()
        fitted.initialize(outside * 10)
        fitted().log_prob(outside * 10)  # standardised into range: silent
    hits = [str(w.message) for w in caught if issubclass(w.category, OutOfDomainWarning)]
    assert len(hits) == 1, hits
    assert "'nsf'" in hits[0] and "[-5, 5]" in hits[0] and "3.1%" in hits[0] and "7.5" in hits[0]


# --------------------------------------------------------------------------- latent flow prior (LFBM)


def test_flow_prior_standardises_on_first_posterior_latents_and_resumes_exactly():
    torch.manual_seed(0)
    prior = build_prior({"kind": "flow", "flow": "nsf", "flow_args": {"transforms": 1, "bins": 4}}, 3)
    assert isinstance(prior, FlowPrior) and prior.standardize
    z_post = torch.randn(64, 3) * 8 - 4
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)  # fitted before the flow sees the batch
        loss, _ = prior.train().loss(z_post)
    std = prior.flow.standardizer
    assert torch.allclose(std.loc, z_post.mean(0), atol=1e-5)
    assert torch.allclose(std.scale, z_post.std(0, correction=0), atol=1e-5)
    assert torch.isfinite(loss)
    with pytest.warns(OutOfDomainWarning):  # fitted once only: latents far from the first batch leave the box
        prior.loss(z_post[:8] + 50)
    assert torch.allclose(std.loc, z_post.mean(0), atol=1e-5)
    assert "latents_fitted" in prior.state_dict() and "flow.bijection.layers.0.loc" in prior.state_dict()
    torch.manual_seed(1)
    fresh = FlowPrior(3, "nsf", transforms=1, bins=4)
    fresh.load_state_dict(prior.state_dict())
    with pytest.warns(OutOfDomainWarning):  # resumed: no re-fit
        fresh.train().loss(z_post + 50)
    assert torch.equal(fresh.flow.standardizer.loc, std.loc)
    assert torch.equal(fresh.log_prob(z_post), prior.log_prob(z_post))
    # Samples and latents map through the standardisation consistently.
    z = prior.sample(5)
    assert torch.allclose(prior.from_base(prior.to_base(z)), z, atol=1e-4)
    plain = build_prior({"kind": "flow", "flow": "nsf", "standardize": False, "flow_args": {}}, 3)
    assert not plain.standardize and "latents_fitted" not in plain.state_dict()
    with pytest.raises(ValueError, match="model.prior.standardize"):
        build_prior({"kind": "flow", "flow": "nsf", "standardize": 1, "flow_args": {}}, 3)
