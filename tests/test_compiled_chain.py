"""``run_chain(compile=True)`` against the eager kernels: the same chain step for step on a fixed seed, the
same distribution (known moments of a correlated Gaussian), and the eager fallback with a warning."""

import math
import warnings

import pytest
import torch

from symgen.samplers import HMC, MALA, ChainState, Kernel, Langevin, StepInfo, run_chain
from symgen.samplers.compiled import CompiledKernel, func_value_and_grad

DT = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Gaussian:
    """A correlated 6-d Gaussian with covariance eigenvalues in [0.2, 1] and a non-zero mean."""

    def __init__(self, d: int = 6) -> None:
        g = torch.Generator().manual_seed(3)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
        self.cov = q @ torch.diag(torch.linspace(0.2, 1.0, d, dtype=DT)) @ q.T
        self.prec = torch.linalg.inv(self.cov)
        self.mean = torch.linspace(-1.0, 1.0, d, dtype=DT)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        r = x - self.mean
        return -0.5 * ((r @ self.prec) * r).sum(1)


def _run(kernel, log_prob, x0, n, compile, seed=0, **kw):  # noqa: ANN001, ANN202
    torch.manual_seed(seed)
    return run_chain(kernel, log_prob, x0, n, compile=compile, **kw)


TARGET = Gaussian()
HMC_KERNEL = HMC(step_size=0.3, n_leapfrog=3, adaptation=None, jitter=0.2)
N_CHAINS = 2000  # one compiled graph (static shapes) serves both HMC tests
KERNELS = [
    HMC_KERNEL,
    MALA(step_size=0.5, adaptation=None),
    Langevin(step_size=0.4, clamp=(-4.0, 4.0)),
]


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda k: type(k).__name__)
def test_compiled_chain_follows_the_eager_chain_step_for_step(kernel):
    target = TARGET
    x0 = torch.randn(N_CHAINS if kernel is HMC_KERNEL else 32, 6, dtype=DT)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x_c, tr_c = _run(kernel, target.log_prob, x0, 15, True, keep_trajectory=True)
    assert not [w for w in caught if "compile=True" in str(w.message)]  # it did compile
    x_e, tr_e = _run(kernel, target.log_prob, x0, 15, False, keep_trajectory=True)
    torch.testing.assert_close(tr_c.positions, tr_e.positions, rtol=1e-9, atol=1e-9)
    for name in ("acceptance_prob", "log_prob", "grad_norm", "step_size"):
        torch.testing.assert_close(
            getattr(tr_c, name), getattr(tr_e, name), rtol=1e-9, atol=1e-9, equal_nan=True
        )
    assert torch.equal(tr_c.accepted, tr_e.accepted)
    if isinstance(kernel, HMC):
        torch.testing.assert_close(tr_c.energy_error, tr_e.energy_error, rtol=1e-7, atol=1e-9)
        assert 0.3 < float(tr_c.accepted.double().mean()) < 1.0
    assert x_c.grad_fn is None and tr_c.state.iteration == 15


def test_compiled_hmc_has_the_target_moments_like_the_eager_one():
    """Final states of 2000 independent chains (i.i.d. draws of the chain's marginal after 30 steps) match the
    Gaussian's mean and covariance within 5 standard errors, compiled (own seed) and eager alike."""
    target, kernel = TARGET, HMC_KERNEL
    x0 = torch.randn(N_CHAINS, 6, dtype=DT) * 2.0
    for compile_, seed in ((True, 1), (False, 2)):
        x, _ = _run(kernel, target.log_prob, x0, 30, compile_, seed=seed, record=False)
        n = x.shape[0]
        z_mean = (x.mean(0) - target.mean) / (x.std(0) / math.sqrt(n))
        r = x - target.mean
        prods = r[:, :, None] * r[:, None, :]
        z_cov = (prods.mean(0) - target.cov) / (prods.std(0) / math.sqrt(n))
        assert z_mean.abs().max() < 5 and z_cov.abs().max() < 5, (
            compile_,
            z_mean.abs().max(),
            z_cov.abs().max(),
        )


def _needs_python_scalars(x: torch.Tensor) -> torch.Tensor:
    """A density with data-dependent Python control flow: fine eagerly, not in one compiled graph."""
    scale = 1.0 if float(x.abs().max()) < 1e6 else 0.5
    return -0.5 * scale * (x * x).sum(1)


def test_a_density_that_does_not_compile_falls_back_to_the_same_eager_chain_with_one_warning():
    x0 = torch.randn(8, 3, dtype=DT)
    kernel = HMC(step_size=0.2, n_leapfrog=2, adaptation=None)
    with pytest.warns(
        RuntimeWarning, match=r"compile=True.*could not be compiled.*running the eager kernel"
    ) as rec:
        x_c, tr_c = _run(kernel, _needs_python_scalars, x0, 5, True)
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    x_e, tr_e = _run(kernel, _needs_python_scalars, x0, 5, False)
    assert torch.equal(x_c, x_e) and torch.equal(tr_c.accepted, tr_e.accepted)


class _RandomWalk(Kernel):
    """A kernel without a compiled transition."""

    def step(self, state: ChainState, log_prob):  # noqa: ANN001, ANN201
        x = state.position + self.step_size * self._randn(state.position)
        lp = log_prob(x)
        ones = torch.ones_like(lp)
        return ChainState(x, lp, torch.zeros_like(x), state.step_size, state.iteration + 1), StepInfo(
            lp, state.step_size, ones, ones.bool(), ones
        )


@pytest.mark.parametrize(
    "kernel, reason",
    [
        (_RandomWalk(0.1), "has no compiled transition"),
        (Langevin(0.1, differentiable=True), "differentiable"),
    ],
)
def test_kernels_the_compiled_path_cannot_run_stay_eager_with_a_warning(kernel, reason):
    x0 = torch.randn(4, 2, dtype=DT)
    with pytest.warns(RuntimeWarning, match=reason):
        x_c, _ = _run(kernel, Gaussian(2).log_prob, x0, 3, True)
    x_e, _ = _run(kernel, Gaussian(2).log_prob, x0, 3, False)
    torch.testing.assert_close(x_c, x_e)


def test_func_value_and_grad_matches_autograd_and_compiled_kernel_checks_its_density():
    target = Gaussian()
    x = torch.randn(5, 6, dtype=DT)
    lp, grad = func_value_and_grad(target.log_prob)(x)
    torch.testing.assert_close(lp, target.log_prob(x))
    torch.testing.assert_close(grad, -(x - target.mean) @ target.prec)
    compiled = CompiledKernel(Langevin(0.1), target.log_prob)
    with pytest.raises(ValueError, match="log_prob it was built for"):
        compiled.step(Langevin(0.1).init(x, target.log_prob), Gaussian().log_prob)
    with pytest.raises(ValueError, match="compile must be a bool"):
        run_chain(Langevin(0.1), target.log_prob, x, 2, compile="yes")


def test_matmul_passes_rewrite_large_and_small_products_to_the_same_values():
    """The compiled path's post-grad passes: large fp32 products go to oneDNN, small ones become fused
    loops; both compute the same ``c + a @ b``."""
    from torch.fx.experimental.proxy_tensor import make_fx

    from symgen.samplers.matmul import onednn_matmul_pass, small_matmul_pass

    def f(a, w_big, bias, w_small, c):  # noqa: ANN001, ANN202
        h = torch.addmm(bias, a, w_big)  # 128 x 128 x 256 = 4.2M multiply-adds: oneDNN
        return torch.addmm(c, h, w_small), torch.mm(a[:, :4], w_small[:4])  # K N <= 1024: loops

    args = (
        torch.randn(128, 128),
        torch.randn(128, 256),
        torch.randn(256),
        torch.randn(256, 4),
        torch.randn(128, 4),
    )
    gm = make_fx(f, tracing_mode="fake")(*args)
    onednn_matmul_pass(gm.graph)
    small_matmul_pass(gm.graph)
    gm.recompile()
    targets = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    assert "symgen.onednn_matmul.default" in targets
    assert not {"aten.mm.default", "aten.addmm.default"} & targets
    for got, want in zip(gm(*args), f(*args), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
