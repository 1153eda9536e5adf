"""BlackJAX side of ``bench_samplers.py``'s "vs BlackJAX" section; runs in benchmarks/.venv-jax (jax,
blackjax, numpy; no torch, no symgen), made by ``bash benchmarks/jax-env.sh``.

``python _blackjax_side.py SPEC.npz OUT.npz``: SPEC holds the target (``kind`` and its weights, exported from
the torch modules by bench_samplers.py), the start positions ``x0 (B, *event)`` and the run settings; the
same log-density is written here in jax (``jax.numpy`` / ``jax.lax.conv_general_dilated``) and checked
against the torch values ``check_x`` / ``check_log_prob`` exported with it. HMC is ``blackjax.hmc`` with
an identity mass matrix, ``jax.vmap`` over chains and ``jax.lax.scan`` over steps, all under one
``jax.jit``; the first call includes compilation, the steady state is the best of ``repeats`` further calls
(new keys, same shapes). OUT holds the positions ``(n_steps, B, *event)`` of the last call, the acceptance
rates and the timings; ESS is computed by the caller with symgen's function.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import blackjax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def silu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(x)


def linear(w: dict, name: str, x: jax.Array) -> jax.Array:
    """torch ``nn.Linear``: ``x @ W.T + b`` with ``W (out, in)``."""
    return x @ w[f"{name}.weight"].T + w[f"{name}.bias"]


def conv(w: dict, name: str, x: jax.Array, stride: int, pad: int) -> jax.Array:
    """torch ``nn.Conv2d`` (cross-correlation, NCHW / OIHW) on one image ``(C, H, W)``."""
    y = jax.lax.conv_general_dilated(
        x[None],
        w[f"{name}.weight"],
        (stride, stride),
        [(pad, pad), (pad, pad)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )
    return y[0] + w[f"{name}.bias"][:, None, None]


def mlp_f(w: dict, prefix: str, x: jax.Array, n: int, act) -> jax.Array:  # noqa: ANN001
    """An ``nn.Sequential`` of ``n`` Linear layers (indices 0, 2, 4, ...) with ``act`` between them."""
    for i in range(n):
        x = linear(w, f"{prefix}{2 * i}", x)
        if i < n - 1:
            x = act(x)
    return x


def coupling_forward(w: dict, layer: int, mask_a: int, y: jax.Array) -> jax.Array:
    """zuko's affine coupling (``GeneralCouplingTransform`` + ``MonotonicAffineTransform``), latent to data
    (zuko's inverse) on a 2-vector: ``x_b = (y_b - shift(y_a)) / exp(a / (1 + |a / log(1e-3)|))``."""
    b = 1 - mask_a
    phi = mlp_f(w, f"flow.{layer}.", y[mask_a : mask_a + 1], 3, jax.nn.relu)
    shift, a = phi[0], phi[1]
    log_scale = a / (1 + jnp.abs(a / jnp.log(1e-3)))
    x_b = (y[b] - shift) / jnp.exp(log_scale)
    return y.at[b].set(x_b)


def build(kind: str, w: dict):  # noqa: ANN201
    """The log-density of one chain's position, written in jax like bench_samplers.py's torch target."""
    if kind == "gaussian":
        return lambda x: -0.5 * jnp.dot(x @ w["prec"], x)
    if kind == "mlp":
        return lambda x: -0.5 * jnp.sum(x * x) + mlp_f(w, "net.", x, 3, silu)[0]

    def conv_energy(x: jax.Array) -> jax.Array:
        h = x.reshape(1, 28, 28)
        h = silu(conv(w, "net.0", h, 1, 1))
        h = silu(conv(w, "net.2", h, 2, 1))
        h = silu(conv(w, "net.4", h, 2, 1))
        return -0.5 * jnp.sum(x * x) + conv(w, "net.6", h, 1, 0).reshape(())

    if kind == "conv":
        return conv_energy
    if kind == "tilted":
        n_layers = int(w["n_layers"])

        def tilted(z: jax.Array) -> jax.Array:
            x = z
            for layer in reversed(range(n_layers)):  # symgen Chain.forward runs the layers in reverse
                x = coupling_forward(w, layer, int(w[f"mask_a.{layer}"]), x)
            return -0.5 * jnp.sum(z * z) - jnp.log(2 * jnp.pi) + mlp_f(w, "f.", x, 3, silu)[0]

        return tilted
    raise ValueError(f"unknown target kind {kind!r}")


def main(spec_path: str, out_path: str) -> None:
    spec = dict(np.load(spec_path))
    kind = str(spec.pop("kind"))
    x0 = jnp.asarray(spec.pop("x0"))
    n_steps, n_leapfrog, repeats = (int(spec.pop(k)) for k in ("n_steps", "n_leapfrog", "repeats"))
    step_size, seed = float(spec.pop("step_size")), int(spec.pop("seed"))
    check_x, check_lp = spec.pop("check_x"), spec.pop("check_log_prob")
    w = {k: jnp.asarray(v) for k, v in spec.items()}
    event = x0.shape[1:]
    logdensity = build(kind, w)  # of one flattened position
    lp_jax = np.asarray(jax.vmap(logdensity)(jnp.asarray(check_x).reshape(check_x.shape[0], -1)))
    err = float(np.max(np.abs(lp_jax - check_lp)) / (1 + np.max(np.abs(check_lp))))

    b, d = x0.shape[0], int(np.prod(event))
    hmc = blackjax.hmc(logdensity, step_size, jnp.ones(d), n_leapfrog)

    def one_step(states, key):  # noqa: ANN001, ANN202
        states, infos = jax.vmap(hmc.step)(jax.random.split(key, b), states)
        return states, (states.position, infos.acceptance_rate)

    @jax.jit
    def run(positions, key):  # noqa: ANN001, ANN202
        states = jax.vmap(hmc.init)(positions)
        return jax.lax.scan(one_step, states, jax.random.split(key, n_steps))[1]

    start = x0.reshape(b, d)
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(run(start, jax.random.PRNGKey(seed)))
    first = (time.perf_counter() - t0, time.process_time() - c0)
    steady = []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = jax.block_until_ready(run(start, jax.random.PRNGKey(seed + 1 + r)))
        steady.append((time.perf_counter() - t0, time.process_time() - c0))
    positions, acceptance = (np.asarray(o) for o in out)
    np.savez(
        out_path,
        positions=positions.reshape(n_steps, b, *event),
        acceptance=acceptance,
        first_wall=first[0],
        first_cpu=first[1],
        steady_wall=min(s[0] for s in steady),
        steady_cpu=min(s[1] for s in steady),
        check_error=err,
        versions=f"jax {jax.__version__}, blackjax {blackjax.__version__}",
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
