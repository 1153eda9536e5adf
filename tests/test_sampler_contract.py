"""The sampler contract of issue #10: K gradients for K unadjusted steps, one MH accept step, options
that kernels reject, and persistent chains whose adaptation continues across ``run_chain`` calls.

Ground truth: hand-written reference loops on the same inputs and random draws (positions compared
exactly), counted density evaluations, closed-form MH acceptance probabilities and acceptance
frequencies within 5 standard errors.
"""

import io
import math

import pytest
import torch

import symgen.samplers.hmc as hmc_module
import symgen.samplers.langevin as langevin_module
from symgen.densities import posterior_log_prob, standard_normal_log_prob
from symgen.samplers import (
    HMC,
    MALA,
    ChainState,
    DualAveraging,
    GradientDescent,
    Langevin,
    MagnetizedLangevin,
    MultiplicativeAdaptation,
    run_chain,
)
from symgen.samplers.mh import accept_test, metropolis_hastings

DT = torch.float64


@pytest.fixture(autouse=True)
def _seed_one_thread():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Counted:
    """A log-density that counts its evaluations (one per forward pass = one per gradient here)."""

    def __init__(self, log_prob):
        self.log_prob, self.calls = log_prob, 0

    def __call__(self, x):
        self.calls += 1
        return self.log_prob(x)


def _quartic(x):
    return -0.25 * (x**4).sum(1) - 0.5 * (x**2).sum(1) + torch.sin(3 * x).sum(1)


def _reference_langevin(log_prob, x0, step_size, n_steps, seed):
    """The hand-written loop (LFBM Eq. (8), xi = s^2/2): K gradients, at x_0 .. x_{K-1}.

    The drift is added with ``torch.addcmul`` (one fused multiply-add, as the kernel documents), so
    that positions can be compared exactly rather than to rounding.
    """
    gen = torch.Generator().manual_seed(seed)
    s = step_size.reshape(-1, *([1] * (x0.dim() - 1)))
    x, path = x0, []
    for _ in range(n_steps):
        xr = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(log_prob(xr).sum(), xr)
        x = torch.addcmul(x.detach(), 0.5 * s * s, g) + torch.randn(x.shape, generator=gen, dtype=x.dtype) * s
        path.append(x)
    return torch.stack(path)


# ------------------------------------------------------------------------ K gradients for K steps
def test_langevin_run_chain_is_the_reference_loop_with_k_gradients():
    x0 = torch.randn(16, 5, dtype=DT)
    steps = torch.linspace(0.05, 0.4, 16, dtype=DT)  # per-chain step sizes
    k = 12
    expected = _reference_langevin(_quartic, x0, steps, k, seed=7)
    assert torch.isfinite(expected).all()
    lp = Counted(_quartic)
    kernel = Langevin(step_size=steps, generator=torch.Generator().manual_seed(7))
    x, trace = run_chain(kernel, lp, x0, k, keep_trajectory=True)
    assert lp.calls == k  # not k + 1: the final position is never evaluated
    assert torch.equal(trace.positions, expected) and torch.equal(x, expected[-1])
    # infos of steps 1 .. K-1 are the values at the new positions; the last one was not evaluated
    torch.testing.assert_close(trace.log_prob[:-1], _quartic(expected[:-1].reshape(-1, 5)).reshape(k - 1, 16))
    assert torch.isnan(trace.log_prob[-1]).all() and torch.isnan(trace.grad_norm[-1]).all()
    assert not trace.state.evaluated

    # evaluate_final=True: one more evaluation, the same positions, a complete trace
    lp = Counted(_quartic)
    kernel = Langevin(step_size=steps, generator=torch.Generator().manual_seed(7))
    x, trace = run_chain(kernel, lp, x0, k, keep_trajectory=True, evaluate_final=True)
    assert lp.calls == k + 1 and torch.equal(trace.positions, expected)
    torch.testing.assert_close(trace.log_prob[-1], _quartic(x))
    assert trace.state.evaluated


def test_lfbm_posterior_chain_is_the_reference_loop_in_float32():
    """The LFBM case: a float32 posterior log p(z) + log p(x|z) through an MLP generator."""
    torch.manual_seed(3)
    gen_net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 10))
    x_obs = torch.randn(32, 10)
    log_post = posterior_log_prob(standard_normal_log_prob, gen_net, x_obs, sigma=0.3)
    z0 = torch.randn(32, 4)
    expected = _reference_langevin(log_post, z0, torch.full((32,), 0.1), 20, seed=11)
    lp = Counted(log_post)
    z, trace = run_chain(
        Langevin(step_size=0.1, generator=torch.Generator().manual_seed(11)), lp, z0, 20, keep_trajectory=True
    )
    assert lp.calls == 20 and torch.equal(trace.positions, expected)
    assert all(p.grad is None for p in gen_net.parameters())


def test_adjusted_kernels_still_evaluate_every_proposal():
    x0 = torch.randn(8, 3, dtype=DT)
    lp = Counted(_quartic)
    run_chain(MALA(step_size=0.3), lp, x0, 10)
    assert lp.calls == 11  # init + one proposal per step: the MH ratio needs grad at x'
    lp = Counted(_quartic)
    run_chain(HMC(step_size=0.1, n_leapfrog=3), lp, x0, 10)
    assert lp.calls == 1 + 10 * 3


def test_persistent_langevin_chains_continue_exactly_at_k_gradients_per_call():
    """Two calls of K steps (the second from trace.state) are one run of 2K steps, 2K gradients; the
    step count carries over, so an annealed noise schedule continues where it was."""
    x0 = torch.randn(10, 4, dtype=DT)
    opts = dict(step_size=0.3, noise_schedule="annealed", schedule_horizon=8)
    one = run_chain(Langevin(**opts, generator=torch.Generator().manual_seed(2)), _quartic, x0, 10)[0]
    lp = Counted(_quartic)
    kernel = Langevin(**opts, generator=torch.Generator().manual_seed(2))
    _, first = run_chain(kernel, lp, x0, 5)
    two, _ = run_chain(kernel, lp, first.state, 5)
    assert lp.calls == 10 and torch.equal(one, two)
    # a kernel handed an unevaluated state evaluates it first
    state, info = Langevin(step_size=0.3).step(first.state, _quartic)
    assert state.evaluated and torch.isfinite(info.log_prob).all()


# ------------------------------------------------------------------------------- the MH accept step
def test_metropolis_hastings_accepts_with_probability_min_one_ratio():
    n = 200_000
    b = torch.arange(3, dtype=DT)
    cur = ChainState(
        torch.zeros(n, 2, dtype=DT), torch.zeros(n, dtype=DT), torch.zeros(n, 2, dtype=DT), b[:1]
    )
    prop = ChainState(
        torch.ones(n, 2, dtype=DT), torch.ones(n, dtype=DT), torch.ones(n, 2, dtype=DT), b[1:2], 1
    )
    log_r = torch.full((n,), math.log(0.3), dtype=DT)
    log_r[:3] = torch.tensor([float("nan"), 2.0, -float("inf")], dtype=DT)
    new, prob, accepted = metropolis_hastings(cur, prop, log_r, torch.Generator().manual_seed(0))
    assert prob[0] == 0 and not accepted[0]  # NaN: rejected
    assert prob[1] == 1 and accepted[1]  # ratio > 1: always accepted
    assert prob[2] == 0 and not accepted[2]
    torch.testing.assert_close(prob[3:], torch.full((n - 3,), 0.3, dtype=DT))
    freq = accepted[3:].double().mean()
    assert abs(float(freq) - 0.3) < 5 * math.sqrt(0.3 * 0.7 / n)
    # per-chain selection of position, log-density and gradient; the proposal's step size and count
    a = accepted.double()
    assert (
        torch.equal(new.position[:, 0], a) and torch.equal(new.log_prob, a) and torch.equal(new.grad[:, 1], a)
    )
    assert new.iteration == 1 and torch.equal(new.step_size, b[1:2])


def test_mala_acceptance_is_the_closed_form_on_a_gaussian():
    """N(0, 1) in 1-d: x' = (1 - s^2/2) x + s eps and log r has a closed form."""
    x = torch.linspace(-3, 3, 64, dtype=DT)[:, None]
    s = torch.linspace(0.1, 2.5, 64, dtype=DT)
    lp = lambda z: -0.5 * (z**2).sum(1)  # noqa: E731
    kernel = MALA(step_size=s, generator=torch.Generator().manual_seed(4))
    state, info = kernel.step(kernel.init(x, lp), lp)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=DT)[:, 0]
    x0, sc = x[:, 0], s
    xp = (1 - sc**2 / 2) * x0 + sc * eps
    log_r = -0.5 * xp**2 + 0.5 * x0**2 - (x0 - (1 - sc**2 / 2) * xp) ** 2 / (2 * sc**2) + 0.5 * eps**2
    torch.testing.assert_close(info.acceptance_prob, log_r.exp().clamp(max=1.0))
    torch.testing.assert_close(state.position[:, 0], torch.where(info.accepted, xp, x0))
    assert 5 < int(info.accepted.sum()) < 60  # both outcomes occur


def test_hmc_acceptance_is_the_closed_form_leapfrog_energy_error():
    """One leapfrog step on N(0, 1): p+ = p - e x / 2, x' = x + e p+, p' = p+ - e x' / 2."""
    x = torch.linspace(-2, 2, 64, dtype=DT)[:, None]
    e = torch.linspace(0.2, 2.2, 64, dtype=DT)
    lp = lambda z: -0.5 * (z**2).sum(1)  # noqa: E731
    kernel = HMC(step_size=e, n_leapfrog=1, generator=torch.Generator().manual_seed(9))
    state, info = kernel.step(kernel.init(x, lp), lp)
    p = torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=DT)[:, 0]
    x0 = x[:, 0]
    p_half = p - e * x0 / 2
    xp = x0 + e * p_half
    pp = p_half - e * xp / 2
    delta_h = 0.5 * (xp**2 + pp**2) - 0.5 * (x0**2 + p**2)
    torch.testing.assert_close(info.energy_error, delta_h)
    torch.testing.assert_close(info.acceptance_prob, torch.exp(-delta_h).clamp(max=1.0))
    torch.testing.assert_close(state.position[:, 0], torch.where(info.accepted, xp, x0))
    assert 5 < int(info.accepted.sum()) < 60


def test_every_adjusted_kernel_accepts_through_the_one_mh_function(monkeypatch):
    """MALA and HMC accept by mh.accept_test, the tensor-level core of metropolis_hastings (a pure
    function, so that their compiled transitions use it too)."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(1)
        return accept_test(*args, **kwargs)

    monkeypatch.setattr(langevin_module, "accept_test", spy)
    monkeypatch.setattr(hmc_module, "accept_test", spy)
    x0 = torch.randn(4, 2, dtype=DT)
    for kernel in (MALA(step_size=0.2), HMC(step_size=0.2, n_leapfrog=2)):
        kernel.step(kernel.init(x0, _quartic), _quartic)
    assert len(calls) == 2


# ------------------------------------------------------------------------------------ kernel options
def test_kernels_reject_options_they_do_not_take():
    with pytest.raises(ValueError, match="MALA does not take option 'clamp'"):
        MALA(step_size=0.1).replace(clamp=(-0.1, 0.1))
    with pytest.raises(ValueError, match="MALA does not take option 'noise_scale'"):
        MALA(step_size=0.1, noise_scale=0.0)  # e.g. a noise-free test chain
    with pytest.raises(ValueError, match="HMC does not take option 'noise_scale'"):
        HMC(step_size=0.1, noise_scale=0.0)
    with pytest.raises(ValueError, match="GradientDescent does not take option 'noise_scale'"):
        GradientDescent().replace(noise_scale=1.0)
    with pytest.raises(ValueError, match="HMC uses option 'target_accept' only with a named adaptation"):
        HMC(adaptation=None, target_accept=0.7)
    with pytest.raises(ValueError, match="MALA uses option 'target_accept'"):
        MALA(adaptation=DualAveraging(0.6), target_accept=0.6)
    with pytest.raises(ValueError, match="step_size"):
        Langevin().replace(step_size=-1.0)  # replace validates like the constructor


def test_replace_rebuilds_the_kernel_from_its_options():
    kernel = HMC(step_size=0.1, n_leapfrog=3, target_accept=0.8)
    new = kernel.replace(step_size=0.2)
    assert new is not kernel and kernel.step_size == 0.1 and new.step_size == 0.2
    assert new.n_leapfrog == 3 and new.adaptation.target_accept == 0.8
    assert new.options == {**kernel.options, "step_size": 0.2}
    assert MALA().adaptation.target_accept == 0.574 and HMC().adaptation.target_accept == 0.651
    magnet = MagnetizedLangevin(torch.ones(2), 0.5, step_size=0.2).replace(gamma=1.5)
    assert magnet.gamma == 1.5 and magnet.step_size == 0.2 and torch.equal(magnet.target, torch.ones(2))
    x0 = torch.full((3, 2), 0.9, dtype=DT)
    lp = lambda x: 5.0 * (x**2).sum(1)  # noqa: E731  pushes outward
    clamped = GradientDescent(step_size=0.5).replace(clamp=(-1.0, 1.0))
    state, _ = clamped.step(clamped.init(x0, lp), lp)
    assert torch.equal(state.position, torch.ones(3, 2, dtype=DT))


# ------------------------------------------------------------------- persistent chains and adaptation
def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize(
    "make, restart_differs",
    [
        (lambda g: MALA(step_size=1.0, adaptation=DualAveraging(0.574, per_chain=True), generator=g), True),
        # the multiplicative state is the step size itself, which the chain state also carries
        (
            lambda g: HMC(step_size=0.05, n_leapfrog=3, adaptation=MultiplicativeAdaptation(), generator=g),
            False,
        ),
    ],
    ids=["mala-dual-averaging-per-chain", "hmc-multiplicative"],
)
def test_adaptation_continues_across_calls_and_checkpoints(make, restart_differs):
    """Warm-up split over two calls, with a weights_only checkpoint in between, is one long warm-up."""
    lp = lambda x: -0.5 * (x**2 / torch.linspace(0.1, 1.0, 6, dtype=DT)).sum(1)  # noqa: E731
    x0 = torch.randn(32, 6, dtype=DT)
    x_one, one = run_chain(make(torch.Generator().manual_seed(5)), lp, x0, 60, adapt_steps=60)

    kernel = make(torch.Generator().manual_seed(5))
    _, first = run_chain(kernel, lp, x0, 30, adapt_steps=30)
    saved = _roundtrip({"chain": first.state.state_dict(), "adaptation": first.adaptation_state})
    x_two, second = run_chain(
        kernel,
        lp,
        ChainState.from_state_dict(saved["chain"]),
        30,
        adapt_steps=30,
        adaptation_state=saved["adaptation"],
    )
    assert torch.equal(x_two, x_one)
    assert torch.equal(torch.cat([first.step_size, second.step_size]), one.step_size)
    assert torch.equal(second.state.step_size, one.state.step_size)
    assert second.adaptation_state.keys() == one.adaptation_state.keys()

    # restarting dual averaging (no adaptation_state) gives a different chain: the state matters
    kernel = make(torch.Generator().manual_seed(5))
    _, first = run_chain(kernel, lp, x0, 30, adapt_steps=30)
    _, restarted = run_chain(kernel, lp, first.state, 30, adapt_steps=30)
    assert torch.equal(restarted.step_size, one.step_size[30:]) != restart_differs


def test_adaptation_state_sets_the_step_size_and_is_checked():
    lp = lambda x: -0.5 * (x**2).sum(1)  # noqa: E731
    x0 = torch.randn(8, 2, dtype=DT)
    kernel = MALA(step_size=0.5, adaptation=DualAveraging(0.574))
    _, tr = run_chain(kernel, lp, x0, 20, adapt_steps=20)
    # sampling after warm-up from a bare tensor still uses the adapted (final, averaged) step size
    _, post = run_chain(kernel, lp, x0, 3, adaptation_state=tr.adaptation_state)
    torch.testing.assert_close(post.step_size[0], torch.exp(tr.adaptation_state["log_step_avg"]))
    assert post.adaptation_state is tr.adaptation_state  # no step adapted: returned unchanged
    with pytest.raises(ValueError, match="adaptation_state must be a state of MultiplicativeAdaptation"):
        run_chain(HMC(), lp, x0, 2, adapt_steps=1, adaptation_state=tr.adaptation_state)
    with pytest.raises(ValueError, match="adaptation_state needs a kernel with a step-size adaptation"):
        run_chain(Langevin(), lp, x0, 2, adaptation_state=tr.adaptation_state)
