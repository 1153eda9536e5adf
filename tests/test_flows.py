"""One property suite applied to every registered flow (vector and image, several shapes, float32/float64),
plus layer-level ground-truth checks, numerical guards, dequantisation and bits/dim.

Ground truths: autograd Jacobians (log-determinants), finite differences (input gradients), exact inverses,
closed forms (rotations preserve N(0, I), uniform densities give n_bits bits/dim), numerical integration
(densities integrate to one) and Monte Carlo moments with tolerances of several standard errors.
"""

from __future__ import annotations

import inspect
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from symgen.flows import (
    ActNorm,
    ChannelCoupling,
    InvertibleLinear,
    LogitTransform,
    NonFiniteError,
    Standardize,
    bits_per_dim,
    build_flow,
    dequantize,
    flow_hyperparameters,
    quantize,
    standardized,
)
from symgen.flows.dequant import to_levels
from symgen.registry import FLOWS

ROOT = Path(__file__).resolve().parents[1]
# The suite's vector data (N(0.5, 1.5^2)) reach outside nsf's [-5, 5]; the warning has its own tests
# (tests/test_standardize.py).
pytestmark = pytest.mark.filterwarnings("ignore::symgen.flows.OutOfDomainWarning")

CONFIGS = [
    ("realnvp", (2,), {"transforms": 3, "hidden_features": (16, 16)}),
    ("realnvp", (5,), {"transforms": 2, "hidden_features": (8,), "randmask": True}),
    ("nsf", (3,), {"transforms": 2, "hidden_features": (16, 16), "bins": 4}),
    ("nsf", (4,), {"transforms": 2, "hidden_features": (8,), "bins": 3, "passes": 2}),
    ("maf", (4,), {"transforms": 2, "hidden_features": (16, 16)}),
    ("glow_vector", (2,), {"depth": 3, "width": 16}),
    ("glow_vector", (5,), {"depth": 2, "width": 8, "coupling": "additive", "hidden_layers": 1}),
    ("glow", (1, 4, 4), {"levels": 2, "depth": 2, "width": 8}),
    (
        "glow",
        (1, 4, 8),
        {
            "levels": 2,
            "depth": 1,
            "width": 8,
            "coupling": "additive",
            "learn_prior": False,
            "permutation": "reverse",
        },
    ),
    (
        "glow",
        (2, 2, 2),
        {
            "levels": 1,
            "depth": 2,
            "width": 8,
            "scale_map": "softclamp",
            "permutation": "shuffle",
            "preprocess": "logit",
        },
    ),
    ("realnvp_image", (1, 4, 4), {"levels": 2, "width": 8, "couplings": 2, "final_couplings": 2}),
    (
        "realnvp_image",
        (2, 2, 4),
        {
            "levels": 2,
            "width": 8,
            "couplings": 1,
            "final_couplings": 2,
            "coupling": "additive",
            "actnorm": False,
            "preprocess": "logit",
        },
    ),
    # "standardize": wrap the flow in symgen.flows.standardized (fitted by flow.initialize in _make).
    ("nsf", (2,), {"transforms": 2, "hidden_features": (16, 16), "bins": 4, "standardize": True}),
]
IDS = [f"{n}-{'x'.join(map(str, s))}-{i}" for i, (n, s, _) in enumerate(CONFIGS)]
DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-4, torch.float64: 1e-9}


def _data(shape: tuple[int, ...], n: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if len(shape) == 1:  # vectors: shifted and scaled, so ActNorm has something to learn
        return (torch.randn(n, *shape, generator=g, dtype=torch.float64) * 1.5 + 0.5).to(dtype)
    return (torch.rand(n, *shape, generator=g, dtype=torch.float64) * 1.8 - 0.9).to(
        dtype
    )  # images in (-1, 1)


def _build(name: str, shape: tuple[int, ...], kw: dict):  # noqa: ANN202
    """``build_flow`` for a CONFIGS entry; ``standardize=True`` wraps it in :func:`standardized`."""
    kw = dict(kw)
    wrap = kw.pop("standardize", False)
    flow = build_flow(name, event_shape=shape, **kw)
    return standardized(flow) if wrap else flow


def _make(name: str, shape: tuple[int, ...], kw: dict, dtype: torch.dtype, seed: int = 0):  # noqa: ANN202
    """A flow with data-initialised ActNorms and randomly perturbed parameters (no layer is the identity)."""
    torch.manual_seed(seed)
    flow = _build(name, shape, kw).to(dtype)
    flow.initialize(_data(shape, 32, dtype, seed=1))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return flow.eval()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # noqa: ANN202
    # Tensors here are tiny: with 2 threads on a busy machine each conv waits on thread synchronisation.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=list(zip(CONFIGS, IDS)), ids=IDS)
def config(request):  # noqa: ANN001, ANN201
    return request.param[0]


@pytest.fixture(params=DTYPES, ids=["f32", "f64"])
def dtype(request):  # noqa: ANN001, ANN201
    return request.param


def test_every_registered_flow_is_covered_and_required_names_exist():
    assert {"realnvp", "nsf", "maf", "glow_vector", "glow", "realnvp_image"} <= set(FLOWS.names())
    assert {n for n, _, _ in CONFIGS} == set(FLOWS.names())


def test_constructors_take_plain_keyword_hyperparameters():
    for name in FLOWS.names():
        params = inspect.signature(FLOWS.get(name)).parameters
        assert "event_shape" in params
        assert all(p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values()), name
        assert all(p.default is not p.empty for k, p in params.items() if k != "event_shape"), name


# --------------------------------------------------------------------------- the property suite


def test_roundtrip_and_inverse_ladj(config, dtype):
    name, shape, kw = config
    dist = _make(name, shape, kw, dtype)()
    z = torch.randn(6, *shape, dtype=dtype)
    x, ladj_fwd = dist.forward(z)
    z2, ladj_inv = dist.inverse(x)
    assert x.shape == z.shape and ladj_fwd.shape == (6,)
    assert torch.allclose(z2, z, atol=TOL[dtype], rtol=0)
    assert torch.allclose(ladj_fwd, -ladj_inv, atol=10 * TOL[dtype] * math.prod(shape), rtol=0)
    x0 = _data(shape, 6, dtype, seed=2)
    x1, _ = dist.forward(dist.inverse(x0)[0])
    assert torch.allclose(x1, x0, atol=TOL[dtype], rtol=0)


def _autograd_logdet(fn, v: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    jac = torch.autograd.functional.jacobian(lambda t: fn(t.view(1, *v.shape)).reshape(-1), v, vectorize=True)
    return torch.linalg.slogdet(jac.reshape(v.numel(), v.numel()).double())[1]


def test_log_det_matches_autograd_jacobian(config, dtype):
    name, shape, kw = config
    dist = _make(name, shape, kw, dtype)()
    x = _data(shape, 1, dtype, seed=3)[0]
    _, ladj = dist.inverse(x[None])
    assert abs(float(ladj[0].detach()) - float(_autograd_logdet(lambda t: dist.inverse(t)[0], x))) < 1e-3
    z = torch.randn(shape, dtype=dtype)
    _, ladj = dist.forward(z[None])
    assert abs(float(ladj[0].detach()) - float(_autograd_logdet(lambda t: dist.forward(t)[0], z))) < 1e-3


def test_log_prob_is_base_plus_ladj_and_finite_on_samples(config, dtype):
    name, shape, kw = config
    dist = _make(name, shape, kw, dtype)()
    x = dist.sample((16,))
    lp = dist.log_prob(x)
    assert lp.shape == (16,) and lp.dtype == dtype and torch.isfinite(lp).all()
    z, ladj = dist.inverse(x)
    assert dist.base.event_shape == x.shape[1:]
    assert torch.allclose(lp, dist.base.log_prob(z) + ladj, atol=1e-4 if dtype == torch.float32 else 1e-9)
    xs, lps = dist.rsample_and_log_prob((4,))
    assert torch.allclose(lps, dist.log_prob(xs), atol=1e-3 if dtype == torch.float32 else 1e-8)
    # Any number of batch dimensions, same values as the flat batch.
    assert torch.allclose(dist.log_prob(x.view(4, 4, *shape)), lp.view(4, 4), atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter(config, dtype):
    name, shape, kw = config
    flow = _make(name, shape, kw, dtype).train()
    loss = -flow().log_prob(_data(shape, 8, dtype, seed=4)).mean() - flow().rsample((4,)).square().mean()
    loss.backward()
    for pname, p in flow.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


def test_log_prob_gradient_wrt_input_matches_finite_differences(config, dtype):
    name, shape, kw = config
    dist = _make(name, shape, kw, torch.float64)()
    x = _data(shape, 3, torch.float64, seed=5).requires_grad_()
    (grad,) = torch.autograd.grad(dist.log_prob(x).sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    if dtype == torch.float64:  # one directional derivative per example, central differences
        v, h = torch.randn_like(x), 1e-5
        with torch.no_grad():
            fd = (dist.log_prob(x + h * v) - dist.log_prob(x - h * v)) / (2 * h)
        assert torch.allclose((grad * v).flatten(1).sum(1), fd, rtol=1e-5, atol=1e-6)


def test_state_dict_roundtrip_gives_identical_log_prob(config, dtype):
    name, shape, kw = config
    flow = _make(name, shape, kw, dtype)
    fresh = _build(name, shape, kw).to(dtype)  # different random init
    fresh.load_state_dict(flow.state_dict())
    x = _data(shape, 5, dtype, seed=6)
    assert torch.equal(fresh.eval()().log_prob(x), flow().log_prob(x))
    assert torch.equal(
        fresh.train()().log_prob(x), flow().log_prob(x)
    )  # loaded ActNorms do not re-initialise


def test_train_eval_consistency_and_actnorm_initialisation(config, dtype):
    name, shape, kw = config
    torch.manual_seed(0)
    flow = _build(name, shape, kw).to(dtype)
    norms = [m for m in flow.modules() if isinstance(m, (ActNorm, Standardize))]
    x1, x2 = _data(shape, 16, dtype, seed=7), _data(shape, 16, dtype, seed=8)
    flow.eval()().log_prob(x1)
    assert not any(bool(m.initialized) for m in norms)  # eval mode never initialises
    flow.train()().log_prob(x1)  # first training pass initialises from x1
    assert all(bool(m.initialized) for m in norms)
    lp_train = flow().log_prob(x2)
    assert torch.equal(lp_train, flow.eval()().log_prob(x2))


# --------------------------------------------------------------------------- distribution-level ground truths


@pytest.mark.parametrize("name,shape,kw", [c for c in CONFIGS if c[1] == (2,)], ids=lambda v: str(v))
def test_two_dimensional_density_integrates_to_one(name, shape, kw):
    dist = _make(name, shape, kw, torch.float64)()
    grid = torch.linspace(-12, 12, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    with torch.no_grad():
        p = dist.log_prob(torch.stack([xx, yy], -1)).exp()
    integral = float(p.sum() * (grid[1] - grid[0]) ** 2)
    assert abs(integral - 1.0) < 5e-3


@pytest.mark.parametrize(
    "name,shape,kw",
    [
        ("glow", (2, 4, 4), {"levels": 2, "depth": 2, "width": 8, "scale_map": "softclamp"}),
        ("realnvp_image", (1, 4, 4), {"levels": 2, "width": 8}),
        ("glow_vector", (6,), {"depth": 3, "coupling": "additive"}),
    ],
)
def test_untrained_flow_is_a_rotation_so_log_prob_is_standard_normal(name, shape, kw):
    # Zero-initialised couplings (log-scale 0 at h = 0) and split priors, identity ActNorms, orthogonal 1x1
    # convs, squeezes and splits compose to an orthogonal map:
    # log p(x) = log N(x; 0, I), |z| = |x| and log|det| = 0.
    torch.manual_seed(0)
    dist = build_flow(name, event_shape=shape, **kw).double().eval()()
    x = torch.randn(5, *shape, dtype=torch.float64) * 2
    z, ladj = dist.inverse(x)
    # Tolerance 1e-5: the LU factors of the random rotations are stored in float32 at construction.
    assert torch.allclose(ladj, torch.zeros(5, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(z.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), rtol=1e-5)
    normal = torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(dist.log_prob(x), normal.double(), rtol=1e-5)
    # Tempered samples of a rotation of N(0, I) are N(0, T^2 I): check the standard deviation.
    s = dist.sample((4000,), temperature=0.5)
    se = 0.5 / math.sqrt(2 * s.numel())
    assert abs(float(s.std()) - 0.5) < 5 * se


def test_flow_transform_matches_bijection():
    dist = _make(*CONFIGS[5], torch.float64)()
    x, z = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    assert torch.equal(dist.transform(x), dist.inverse(x)[0])
    assert torch.equal(dist.transform.inv(z), dist.forward(z)[0])


def test_ntebm_backbone_is_expressible_and_volume_preserving_in_x():
    # NT-EBM appendix A.3: additive coupling, 1x1 conv, 3 levels, depth 8, width 128, no learned prior.
    torch.manual_seed(0)
    flow = build_flow(
        "glow",
        event_shape=(3, 32, 32),
        levels=3,
        depth=8,
        width=128,
        coupling="additive",
        permutation="invconv",
        learn_prior=False,
    )
    flow.initialize(_data((3, 32, 32), 4, torch.float32, seed=9))
    dist = flow.eval()()
    x = _data((3, 32, 32), 2, torch.float32, seed=10)
    with torch.no_grad():
        z, ladj = dist.inverse(x)
        assert torch.allclose(dist.forward(z)[0], x, atol=1e-4)
    assert abs(float(ladj[0] - ladj[1])) < 1e-3 * abs(float(ladj[0]))  # only ActNorm/1x1 conv change volume
    with pytest.raises(ValueError, match="divisible by 8"):
        build_flow("glow", event_shape=(1, 28, 28), levels=3)


# --------------------------------------------------------------------------- layers


def test_actnorm_initialises_to_zero_mean_unit_variance():
    torch.manual_seed(0)
    x = (
        torch.randn(64, 3, 5, 5, dtype=torch.float64)
        * torch.tensor([0.1, 2.0, 7.0]).view(1, 3, 1, 1).double()
        + 3
    )
    norm = ActNorm(3).double().train()
    z, ladj = norm.inverse(x)
    assert torch.allclose(z.mean((0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(z.std((0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-12)
    expected = -25 * torch.log(x.std((0, 2, 3), correction=0)).sum()
    assert torch.allclose(ladj, expected.expand(64))
    with pytest.raises(ValueError, match="at least 2 values"):
        ActNorm(4).train().inverse(torch.randn(1, 4))


def test_invertible_linear_lu_weight_logdet_and_cache():
    torch.manual_seed(0)
    lin = InvertibleLinear(6).double()
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(0.3 * torch.randn_like(p))
        w, w_inv = lin.weight(), lin.weight(inverse=True)
        assert torch.allclose(w @ w_inv, torch.eye(6, dtype=torch.float64), atol=1e-12)
        assert torch.allclose(lin.log_abs_det(), torch.linalg.slogdet(w)[1], atol=1e-12)
        x = torch.randn(2, 6, 3, 3, dtype=torch.float64)
        z, ladj = lin.inverse(x)
        assert torch.allclose(z, torch.einsum("ij,bjhw->bihw", w, x), atol=1e-12)
        assert torch.allclose(ladj, 9 * torch.linalg.slogdet(w)[1].expand(2))
        lin.log_s.add_(0.5)  # in-place update must invalidate the cached weight
        assert torch.allclose(lin.weight(), lin._compose(False))
        assert not torch.allclose(lin.weight(), w)


@pytest.mark.parametrize("scale_map,bound", [("sigmoid", 0.0), ("softclamp", 2.0)])
def test_affine_coupling_scale_is_bounded(scale_map, bound):
    def huge(i: int, o: int) -> nn.Module:
        net = nn.Conv2d(i, o, 1)
        nn.init.zeros_(net.weight)
        nn.init.constant_(net.bias, 1e4)
        return net

    layer = ChannelCoupling(4, huge, scale_map=scale_map, clamp=2.0)
    x = torch.randn(3, 4, 2, 2)
    z, ladj = layer.inverse(x)
    n_moved = 2 * 2 * 2
    assert torch.isfinite(z).all() and torch.isfinite(ladj).all()
    assert (ladj <= bound * n_moved + 1e-4).all()
    layer.net.bias.data.fill_(-1e4)
    z, ladj = layer.inverse(x)
    assert torch.isfinite(ladj).all() and (ladj >= -1e4 * n_moved).all()
    if scale_map == "softclamp":
        assert (ladj >= -bound * n_moved - 1e-4).all()


def test_logit_transform_log_det_matches_elementwise_derivative():
    layer = LogitTransform(alpha=0.05).double()
    x = torch.linspace(-0.99, 0.99, 11, dtype=torch.float64).view(1, 11).requires_grad_()
    z, ladj = layer.inverse(x)
    (dz,) = torch.autograd.grad(z.sum(), x)  # elementwise map: the Jacobian is diagonal
    assert torch.allclose(ladj, dz.log().sum().view(1), atol=1e-12)
    assert torch.allclose(layer.forward(z)[0], x, atol=1e-12)


# --------------------------------------------------------------------------- guards and errors


def test_inverse_rejects_non_finite_input():
    dist = _make(*CONFIGS[7], torch.float32)()
    x = _data((1, 4, 4), 2, torch.float32, seed=0)
    x[1, 0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite input"):
        dist.log_prob(x)
    with pytest.raises(ValueError, match="non-finite input"):
        dist.forward(torch.full((1, 1, 4, 4), float("inf")))


def test_nan_parameters_are_reported_with_the_layer_name():
    flow = _make(*CONFIGS[7], torch.float32)
    coupling = flow.bijection.layers[0].post.layers[1].layers[2]
    assert isinstance(coupling, ChannelCoupling)
    with torch.no_grad():
        coupling.net[2].weight[0, 0] = float("nan")
    layer_name = "bijection.layers.0.post.layers.1.layers.2"
    with pytest.raises(NonFiniteError, match=rf"inverse .* '{layer_name}' \(ChannelCoupling\)"):
        flow().log_prob(_data((1, 4, 4), 2, torch.float32, seed=0))
    with pytest.raises(NonFiniteError, match=rf"forward .* '{layer_name}'"):
        flow().sample((2,))
    zuko_flow = _make(*CONFIGS[0], torch.float32)
    with torch.no_grad():
        next(zuko_flow.bijection.layers[1].parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteError, match="'bijection.layers.1' \\(ZukoLayer\\)"):
        zuko_flow().log_prob(torch.randn(3, 2))


def test_shape_dtype_and_hyperparameter_errors():
    dist = _make(*CONFIGS[5], torch.float32)()
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        dist.log_prob(torch.randn(3, 3))
    with pytest.raises(ValueError, match="dtype"):
        dist.log_prob(torch.randn(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature"):
        dist.sample((2,), temperature=0.0)
    with pytest.raises(ValueError, match="unknown hyperparameter 'dpeth'.*did you mean 'depth'"):
        build_flow("glow_vector", event_shape=(4,), dpeth=3)
    with pytest.raises(KeyError, match="did you mean 'glow'"):
        build_flow("glwo", event_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"event_shape must be \(D,\)"):
        build_flow("maf", event_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="coupling must be one of"):
        build_flow("glow", event_shape=(1, 4, 4), levels=1, coupling="spline")
    assert flow_hyperparameters("glow")["levels"] == 3


def test_importing_flows_keeps_torch_distribution_validation_default():
    code = (
        "import torch; d = torch.distributions.Distribution._validate_args; import symgen.flows; "
        "print(d == torch.distributions.Distribution._validate_args)"
    )
    env_path = str(ROOT / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "True", out.stderr[-2000:]


# --------------------------------------------------------------------------- dequantisation and bits/dim


def test_dequantize_stays_in_bin_and_is_uniform_within_it():
    torch.manual_seed(0)
    k = torch.randint(0, 256, (20000,))
    x = k.double() / 255 * 2 - 1  # 8-bit images scaled to [-1, 1]
    y = dequantize(x, n_bits=8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(to_levels(y, 8), k.double())
    assert torch.allclose(quantize(y, 8), x, atol=1e-12)
    u = (y + 1) * 128 - k  # position within the bin: U(0, 1)
    assert abs(float(u.mean()) - 0.5) < 5 * math.sqrt(1 / 12 / u.numel())
    assert abs(float(u.var()) - 1 / 12) < 5 * 0.0745 / math.sqrt(u.numel())  # sd of (U - 1/2)^2 is ~0.0745
    y5 = dequantize(x, n_bits=5)
    assert torch.equal(to_levels(y5, 5), torch.floor(k.double() / 255 * 32).clamp(max=31))


def test_bits_per_dim_matches_discrete_likelihood():
    # Uniform density on [-1, 1]^D: every n-bit image has probability 2^(-nD), i.e. n bits per dimension.
    d = 3 * 4 * 4
    lp_uniform = torch.full((2,), -d * math.log(2.0))
    assert torch.allclose(bits_per_dim(lp_uniform, (3, 4, 4), n_bits=5), torch.full((2,), 5.0))
    # Piecewise-constant density built from a discrete P over 2^n levels (D = 1): bpd = -log2 P(k).
    torch.manual_seed(0)
    probs = torch.softmax(torch.randn(8, dtype=torch.float64), 0)
    k = torch.arange(8)
    density_log = probs.log() - math.log(2 / 8)  # P(k) / bin width
    assert torch.allclose(bits_per_dim(density_log, (1,), n_bits=3), -probs.log2())
    with pytest.raises(ValueError, match="n_bits"):
        bits_per_dim(lp_uniform, (3, 4, 4), n_bits=0)
    del k
