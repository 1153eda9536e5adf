r"""Flow-tilted EBMs :math:`p_\theta(x) = e^{f_\theta(x)} q_\alpha(x) / Z`, sampled in the latent space.

NT-EBM (Nijkamp et al., 2022) Eq. (7) and dissertation Sec. 4.3.1 Eq. (4.4): an energy correction
:math:`f_\theta` of a normalizing flow :math:`x = g_\alpha(z)`, :math:`z \sim q_0 = \mathcal N(0, I)`. In the
latent space the model is :math:`p(z) \propto e^{f_\theta(g_\alpha(z))} q_0(z)` (NT-EBM Eq. (9), dissertation
Eq. (4.8); :func:`~symgen.densities.tilted_latent_log_prob`): no Jacobian, no inverse. Three ways to learn
:math:`f_\theta` share this module's :class:`TiltedEBM` (flow, energy, latent sampler, flow pre-training):

* ``ntebm`` (:class:`NTEBM`, NT-EBM Alg. 1) -- maximum likelihood, Eq. (6), with persistent HMC chains in
  ``z`` (appendix A.4: 20 HMC steps of 3 leapfrog steps per update, initial step 0.15, multiplicative
  adaptation toward acceptance 0.651, chains started from :math:`q_0`);
* ``nce_ebm`` (:class:`NCEEBM`, NT-EBM Sec. 3.5 Eq. (10)) -- logistic regression of data against flow
  samples with logit :math:`b + f_\theta(x)`, ``b`` a learnable bias;
* ``glow_ebm`` (:class:`GlowEBM`, dissertation Eq. (4.9)-(4.10)) -- maximum likelihood with short-run
  Langevin chains in ``z`` started from :math:`q_0` every iteration (60 steps of :math:`\epsilon = 0.01`,
  energy L2 0.1; Sec. 4.4.1-4.4.2).

Training plan: a stage named ``model.pretrain_stage`` fits the flow by maximum likelihood on (dequantised)
data; the EBM stage (``optimizers: [ebm]``) keeps it frozen -- or a flow is loaded with
``model.init_from: {flow: RUN}``. ``model.joint_flow: true`` (the option NT-EBM leaves to future work) also
updates the flow in stages that name it, by the exact ML gradient of the tilted model,
:math:`\nabla_\alpha \log q_\alpha(x) - \mathbb E_{p_\theta}\nabla_\alpha \log q_\alpha(x^-)`.

Sampling (all three): fresh chains :math:`z_0 \sim q_0`, ``model.sample.steps`` HMC steps in ``z`` (the first
``adapt_steps`` adapt the step size), pushed forward by :math:`g_\alpha`; ``glow_ebm`` samples as it trains
(short-run Langevin, ``model.langevin.test_steps``). Images: the energy sees :math:`g_\alpha(z)` clamped to
``[-1, 1]`` and data dequantised like the flow's (``n_bits``), so both sides of every loss are continuous.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.densities import tilted_latent_log_prob
from symgen.flows import unchecked
from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.flow import flow_data, flow_from_config, flow_samples, initialize_flow
from symgen.models.short_run_ebm import _positive, build_energy, default_energy_config, split_batch
from symgen.samplers import HMC, DualAveraging, MultiplicativeAdaptation, run_chain

__all__ = ["TiltedEBM", "hmc_from_config", "LinearQuadraticTilt"]

_PRESETS = {(1, 28, 28): "ntebm_mnist", (3, 32, 32): "ntebm_cifar", (3, 64, 64): "ntebm_celeba"}
ADAPTATIONS = ("multiplicative", "dual_averaging", "none")


def _int(key: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{key} must be an integer >= {low}; got {value!r}")
    return int(value)


def _unit(key: str, value: Any, closed: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not ((0.0 <= value <= 1.0) if closed else (0.0 < value < 1.0)):
        raise ValueError(f"{key} must be a number in {'[0, 1]' if closed else '(0, 1)'}; got {value!r}")
    return float(value)


def hmc_from_config(cfg: dict[str, Any], key: str = "model.hmc") -> HMC:
    """The latent HMC kernel of NT-EBM appendix A.4 from a ``model.hmc`` section, every value checked."""
    step = _positive(f"{key}.step_size", cfg["step_size"])
    leapfrog = _int(f"{key}.n_leapfrog", cfg["n_leapfrog"], 1)
    target = _unit(f"{key}.target_accept", cfg["target_accept"])
    name = cfg["adaptation"]
    if name not in ADAPTATIONS:
        raise ValueError(f"{key}.adaptation must be one of {', '.join(ADAPTATIONS)}; got {name!r}")
    rate = _positive(f"{key}.adapt_rate", cfg["adapt_rate"])
    adapter: Any = None
    if name == "multiplicative":
        adapter = MultiplicativeAdaptation(target, rate)
    elif name == "dual_averaging":
        adapter = DualAveraging(target)
    return HMC(step, leapfrog, adaptation=adapter)


def _betas(key: str, value: Any) -> tuple[float, float]:
    if not (isinstance(value, list | tuple) and len(value) == 2):
        raise ValueError(f"{key} must be [beta1, beta2]; got {value!r}")
    return float(value[0]), float(value[1])


class TiltedEBM(GenerativeModel):
    """Shared parts of the flow-tilted EBMs (module docstring); subclasses implement :meth:`ebm_step`."""

    init_from_kinds: ClassVar[dict[str, tuple[str, ...]]] = {
        "flow": ("flow", "ntebm", "nce_ebm", "glow_ebm", "coopflow")
    }
    #: parts that must come from a run on data of this model's event shape (checked by ``init_from``)
    init_from_same_event_shape: ClassVar[tuple[str, ...]] = ("flow",)
    label: ClassVar[str] = "tilted"

    def __init__(
        self,
        flow: nn.Module,
        energy: nn.Module,
        kind: str,
        event_shape: tuple[int, ...],
        hmc: HMC,
        opts: dict[str, Any],
    ) -> None:
        super().__init__()
        self.flow, self.energy = flow, energy
        self.kind, self.event_shape = kind, tuple(event_shape)
        flow_shape = tuple(getattr(flow, "event_shape", self.event_shape))
        if flow_shape != self.event_shape:
            raise ValueError(
                f"model.flow: the flow's event shape {flow_shape} differs from the data's {self.event_shape}"
            )
        self.hmc = hmc
        self.opts = dict(opts)
        self.sample_steps = _int("model.sample.steps", self.opts["sample_steps"], 1)
        self.sample_adapt = _int("model.sample.adapt_steps", self.opts["sample_adapt_steps"], 0)
        if self.sample_adapt > self.sample_steps:
            raise ValueError(
                f"model.sample.adapt_steps ({self.sample_adapt}) must be <= model.sample.steps "
                f"({self.sample_steps})"
            )
        self.energy_l2 = _positive("model.energy_l2", self.opts["energy_l2"], allow_zero=True)
        self.tasks = dict(self.opts.get("tasks") or {})

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "flow": "auto",  # registered flow; auto = realnvp for 2-D data, glow for images
            "flow_args": {},
            "standardize": True,  # vector flows: affine normalisation fitted to the first batch
            "n_bits": 8,  # images: dequantisation of data for the flow and the energy
            "energy": default_energy_config(),  # images: auto = ntebm_mnist / _cifar / _celeba, digits8
            "hmc": {  # NT-EBM appendix A.4
                "steps": 20,  # HMC steps per parameter update (ntebm training)
                "n_leapfrog": 3,
                "step_size": 0.15,  # initial step size
                "adaptation": "multiplicative",  # multiplicative (A.4) | dual_averaging | none
                "target_accept": 0.651,  # Beskos et al. (2013)
                "adapt_rate": 0.02,  # multiplicative: relative change per step
                "reinit_prob": 0.0,  # per-chain probability of a restart from q0 (the paper uses none)
            },
            "sample": {"steps": 100, "adapt_steps": 50},  # fresh latent HMC chains from q0 at sampling
            "lr": {"ebm": 5e-5, "flow": 1e-3},  # A.4: 5e-5 (MNIST, SVHN, CIFAR-10), 1e-5 (CelebA)
            "betas": {"ebm": [0.99, 0.999], "flow": [0.9, 0.999]},  # A.4: Adam (0.99, 0.999)
            "energy_l2": 0.0,
            "joint_flow": False,  # also update the flow by the tilted model's ML gradient (future work)
            "pretrain_stage": "pretrain",  # stage that fits the flow by maximum likelihood
            "tasks": {"max_images": 1000, "batch_size": 500, "grid_resolution": 128, "mixing": {}},
        }

    @classmethod
    def extra_options(cls, cfg: dict[str, Any]) -> dict[str, Any]:
        """Family-specific options read from the config (checked); the base has none."""
        return {}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> TiltedEBM:
        flow = flow_from_config(cfg, data)
        energy = build_energy(cfg["energy"], data, auto_presets=_PRESETS)
        hcfg = dict(cfg["hmc"])
        unknown = set(hcfg) - set(cls.default_config()["hmc"])
        if unknown:
            raise ValueError(f"model.hmc: unknown key(s) {sorted(unknown)}")
        lr = {k: _positive(f"model.lr.{k}", v) for k, v in dict(cfg["lr"]).items()}
        betas = {k: _betas(f"model.betas.{k}", v) for k, v in dict(cfg["betas"]).items()}
        for k in set(lr) | set(betas):
            if k not in ("flow", "ebm"):
                raise ValueError(f"model.lr / model.betas: unknown optimizer {k!r}; accepted: flow, ebm")
        if not isinstance(cfg["joint_flow"], bool):
            raise ValueError(f"model.joint_flow must be true or false, got {cfg['joint_flow']!r}")
        opts = {
            "steps": _int("model.hmc.steps", hcfg["steps"], 1),
            "reinit_prob": _unit("model.hmc.reinit_prob", hcfg["reinit_prob"], closed=True),
            "sample_steps": cfg["sample"]["steps"],
            "sample_adapt_steps": cfg["sample"]["adapt_steps"],
            "lr": {"ebm": 5e-5, "flow": 1e-3, **lr},
            "betas": {"ebm": (0.99, 0.999), "flow": (0.9, 0.999), **betas},
            "energy_l2": cfg["energy_l2"],
            "joint_flow": cfg["joint_flow"],
            "n_bits": int(cfg["n_bits"]),
            "pretrain_stage": str(cfg["pretrain_stage"]),
            "tasks": dict(cfg["tasks"]),
            **cls.extra_options(cfg),
        }
        return cls(flow, energy, data.kind, data.event_shape, hmc_from_config(hcfg), opts)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr, betas = self.opts["lr"], self.opts["betas"]
        return {
            "flow": torch.optim.Adam(self.flow.parameters(), lr=lr["flow"], betas=betas["flow"]),
            "ebm": torch.optim.Adam(self.ebm_parameters(), lr=lr["ebm"], betas=betas["ebm"]),
        }

    def ebm_parameters(self) -> list[nn.Parameter]:
        return list(self.energy.parameters())

    def initialize(self, batch: Tensor) -> None:
        """Data-dependent initialisation of the flow (ActNorm / standardisation) on the first batch."""
        initialize_flow(self.flow, self.prepare(split_batch(batch)))

    # ------------------------------------------------------------------ densities
    def prepare(self, x: Tensor) -> Tensor:
        """Data as the flow models them: images dequantised to ``n_bits``; 2-D points as they are."""
        return flow_data(x, self.kind == "image", self.opts["n_bits"])

    def flow_forward(self, z: Tensor) -> Tensor:
        r""":math:`x = g_\alpha(z)`; images clamped to ``[-1, 1]`` (non-finite values set to 0 first)."""
        return flow_samples(self.flow, z, self.kind == "image")

    def neg_energy(self, x: Tensor) -> Tensor:
        r"""The correction :math:`f_\theta(x)`, ``(B,)``."""
        return self.energy(x).reshape(x.shape[0])

    def flow_log_prob(self, x: Tensor) -> Tensor:
        r""":math:`\log q_\alpha(x)` (Eq. (3))."""
        return self.flow().log_prob(x)

    def log_prob(self, x: Tensor) -> Tensor:
        r"""Unnormalised :math:`\log p_\theta(x) = f_\theta(x) + \log q_\alpha(x)` (Eq. (7)), the target of
        data-space chains (the flow's non-finite guard off)."""
        with unchecked(self.flow):  # a chain may visit points where the flow overflows (HMC rejects them)
            return self.neg_energy(x) + self.flow_log_prob(x)

    def latent_log_prob(self, z: Tensor) -> Tensor:
        r"""Unnormalised :math:`\log p(z) = \log q_0(z) + f_\theta(g_\alpha(z))` (Eq. (9))."""
        return tilted_latent_log_prob(self.neg_energy, self.flow_forward)(z)

    # ------------------------------------------------------------------ sampling
    def latent_noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r""":math:`z \sim q_0 = \mathcal N(0, I)`, ``(n, *event)``."""
        return torch.randn((n, *self.event_shape), generator=generator).to(self.device)

    def sampling_step_size(self) -> float:
        """Initial step size of fresh sampling chains (the HMC default; NT-EBM: its adapted one)."""
        return float(self.hmc.options["step_size"])

    def latent_hmc(
        self, n: int, steps: int, adapt_steps: int, generator: torch.Generator | None = None, **kw: Any
    ) -> tuple[Tensor, Any]:
        """``n`` fresh latent HMC chains from :math:`q_0` run ``steps`` steps (``adapt_steps`` of warm-up)."""
        z0 = self.latent_noise(n, generator)
        gen = generator if generator is not None and generator.device == z0.device else None
        kernel = self.hmc.replace(step_size=self.sampling_step_size(), generator=gen)
        return run_chain(kernel, self.latent_log_prob, z0, steps, adapt_steps=adapt_steps, **kw)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Samples of :math:`p_\\theta` by latent HMC from :math:`q_0` pushed forward (NT-EBM Sec. 3.4)."""
        z, _ = self.latent_hmc(n, self.sample_steps, self.sample_adapt, generator)
        with torch.no_grad():
            return self.flow_forward(z).detach()

    def flow_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Ancestral samples of the flow :math:`q_\alpha` alone."""
        with torch.no_grad():
            return self.flow_forward(self.latent_noise(n, generator))

    def named_samples(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The flow's ancestral samples and the tilted model's (NT-EBM Fig. 6 / dissertation Fig. 4.7)."""
        return {"flow": self.flow_sample(n, generator), self.label: self.sample(n, generator)}

    def named_densities(self) -> dict[str, Any]:
        r"""2-D panels / ``kl_grid_parts``: :math:`q_\alpha` and :math:`p_\theta \propto e^{f} q_\alpha`."""
        return {"flow": self.flow_log_prob, "tilted": self.log_prob}

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x = split_batch(batch)
        if ctx.stage is not None and ctx.stage == self.opts["pretrain_stage"]:
            nll = -self.flow_log_prob(self.prepare(x)).mean()
            return {"flow_nll_data": nll.item(), "grad_norm_flow": ctx.optimize("flow", nll)}
        x_pos = self.prepare(x)
        logs, x_neg = self.ebm_step(x_pos, ctx)
        if self.opts["joint_flow"] and x_neg is not None:
            loss = self.flow_log_prob(x_neg.detach()).mean() - self.flow_log_prob(x_pos).mean()
            logs["flow_ml_loss"] = loss.item()
            logs["grad_norm_flow"] = ctx.optimize("flow", loss)
        return logs

    def ebm_step(self, x_pos: Tensor, ctx: StepContext) -> tuple[dict[str, float], Tensor | None]:
        """One update of :math:`f_\\theta` on the data batch ``x_pos``; returns logs and the negatives."""
        raise NotImplementedError

    def ml_loss(self, x_pos: Tensor, x_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        r"""Eq. (6) / (4.9) as a loss, :math:`\bar f(x^-) - \bar f(x)` (+ ``energy_l2`` x mean squares)."""
        f_pos, f_neg = self.neg_energy(x_pos), self.neg_energy(x_neg.detach())
        loss = f_neg.mean() - f_pos.mean()
        if self.energy_l2 > 0:
            loss = loss + self.energy_l2 * (f_pos.square().mean() + f_neg.square().mean())
        return loss, {"f_data": f_pos.mean().item(), "f_model": f_neg.mean().item(), "ebm_loss": loss.item()}

    @torch.no_grad()
    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """``test_nll`` of the flow :math:`q_\\alpha` (the tilted model's normaliser is intractable)."""
        lp = torch.cat([self.flow_log_prob(c) for c in data.split(512)])
        return {"test_nll_flow": float(-lp.mean())}


class LinearQuadraticTilt:
    r"""A tilted flow with a closed form: :math:`x = A z + b` and :math:`f(x) = -\tfrac12 (x-m)^\top P (x-m)`.

    :math:`q(x) = \mathcal N(b, AA^\top)`; the tilt :math:`p(x) \propto e^{f(x)} q(x)` is Gaussian with
    precision :math:`\Lambda = (AA^\top)^{-1} + P` and mean :math:`\Lambda^{-1}((AA^\top)^{-1} b + P m)`.
    ``latent_log_prob`` is NT-EBM Eq. (9) for it, ``data_log_prob`` Eq. (7): a small public target for
    tests and sampler benchmarks (``LinearQuadraticTilt.default(2)``).
    """

    def __init__(self, A: Tensor, b: Tensor, P: Tensor, m: Tensor) -> None:
        d = A.shape[0]
        if A.shape != (d, d) or b.shape != (d,) or P.shape != (d, d) or m.shape != (d,):
            raise ValueError("A and P must be (d, d), b and m (d,)")
        self.A, self.b, self.P, self.m = A, b, P, m
        cov_q = A @ A.T
        prec_q = torch.linalg.inv(cov_q)
        self.precision = prec_q + P
        self.cov = torch.linalg.inv(self.precision)
        self.mean = self.cov @ (prec_q @ b + P @ m)
        self._prec_q, self._log_det_a = prec_q, torch.linalg.slogdet(A)[1]

    @classmethod
    def default(cls, dim: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64) -> LinearQuadraticTilt:
        """A fixed well-conditioned instance: a random ``A`` (sheared, scales 0.5-2) and tilt ``P``."""
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
        A = q @ torch.diag(torch.linspace(0.5, 2.0, dim, dtype=dtype))
        r, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=dtype))
        P = r @ torch.diag(torch.linspace(0.5, 3.0, dim, dtype=dtype)) @ r.T
        return cls(
            A, torch.randn(dim, generator=g, dtype=dtype), P, torch.randn(dim, generator=g, dtype=dtype)
        )

    def push_forward(self, z: Tensor) -> Tensor:
        return z @ self.A.T + self.b

    def neg_energy(self, x: Tensor) -> Tensor:
        d = x - self.m
        return -0.5 * ((d @ self.P) * d).sum(-1)

    def latent_log_prob(self, z: Tensor) -> Tensor:
        """Eq. (9): :math:`\\log q_0(z) + f(Az + b)` (unnormalised)."""
        return tilted_latent_log_prob(self.neg_energy, self.push_forward)(z)

    def data_log_prob(self, x: Tensor) -> Tensor:
        """Eq. (7): :math:`f(x) + \\log q(x)` (unnormalised)."""
        d = x - self.b
        return self.neg_energy(x) - 0.5 * ((d @ self._prec_q) * d).sum(-1)
