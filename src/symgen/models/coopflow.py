r"""CoopFlow: a normalizing flow proposes, a short-run Langevin flow toward an EBM revises (Xie et al., 2022).

Algorithm 1 of the paper, one iteration per training step:

1. :math:`z_i \sim \mathcal N(0, I)`, :math:`\hat x_i = g_\alpha(z_i)` -- the normalizing flow (Eq. (5));
2. :math:`\tilde x_i = F_\theta(\hat x_i)`: ``T`` Langevin steps toward :math:`p_\theta \propto e^{f_\theta}`
   (Eq. (3), :class:`~symgen.models.short_run_ebm.LangevinFlow`; noise off by default, Sec. A.2);
3. the flow learns by maximum likelihood on the revised samples, :math:`\max_\alpha \frac1m\sum\log
   q_\alpha(\tilde x_i)` (Eq. (6), optimizer ``flow``);
4. the EBM by Eq. (2): minimise :math:`\bar f_\theta(\tilde x) - \bar f_\theta(x)` (optimizer ``ebm``).

The generator is :math:`x = F_\theta(g_\alpha(z))` (Eq. (7)); at test time the Langevin step is multiplied by
``test_step_multiplier`` (4/3, Sec. A.3 / Table 3) and the noise is off. The official code's guards are
on by default for images: the update :math:`\tfrac{\delta^2}{2}\nabla f` clipped to ``[-0.1, 0.1]`` and the
state clamped to ``[-1, 1]``. The noise decay of Eq. (10) (Sec. A.11) is ``langevin.noise: decayed`` over
training epochs (``ctx.epoch``).

CoopFlow(Pre) is a training plan (``train.stages``): a stage named ``model.pretrain_stage`` trains the flow by
maximum likelihood on (dequantised) data, a warm-up stage with ``optimizers: [ebm]`` freezes the flow, and
the joint stage runs Algorithm 1; a flow from another run is loaded with ``model.init_from: {flow: RUN}``
(a ``flow`` or ``coopflow`` run).

Tasks (Sec. 5.3-5.4): reconstruction and inpainting by optimising :math:`\hat x` through the unrolled
noise-free chain, initialised by the flow (``recon_mse`` / ``inpaint_mse``), and interpolation between the
latents :math:`z = g_\alpha^{-1}(\hat x^*)` (``interpolation_latent``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.flow import flow_data, flow_from_config, flow_samples, initialize_flow
from symgen.models.short_run_ebm import (
    LangevinFlow,
    _positive,
    _steps,
    build_energy,
    build_kernels,
    check_choice,
    check_clamp,
    default_energy_config,
    split_batch,
)
from symgen.registry import MODELS
from symgen.samplers import DecayedNoise, Langevin

__all__ = ["CoopFlow"]

NOISE = ("off", "constant", "decayed")
_COOPFLOW_PRESETS = {(3, 32, 32): "coopflow_cifar"}  # Table 2 at 32x32; smaller images: the auto presets


@MODELS.register(
    "coopflow", help="CoopFlow: normalizing flow + short-run Langevin flow toward an EBM (Alg. 1)"
)
class CoopFlow(GenerativeModel):
    """Normalizing flow ``g_alpha`` and Langevin flow ``F_theta`` trained cooperatively (module docstring)."""

    name = "coopflow"
    #: runs written before these keys existed trained without LR warm-up, on revised samples as they are
    legacy_defaults: ClassVar[dict[str, Any]] = {"lr_warmup": 0, "dequantize_revised": False}
    init_from_kinds: ClassVar[dict[str, tuple[str, ...]]] = {"flow": ("flow", "coopflow")}

    def __init__(
        self,
        flow: nn.Module,
        langevin: LangevinFlow,
        kind: str,
        event_shape: tuple[int, ...],
        noise: str = "off",
        noise_scale: float = 1.0,
        noise_decay_epochs: float = 30.0,
        energy_l2: float = 0.0,
        lr: dict[str, float] | None = None,
        betas: dict[str, tuple[float, float]] | None = None,
        flow_weight_decay: float = 0.0,
        n_bits: int = 8,
        pretrain_stage: str = "pretrain",
        tasks: dict[str, Any] | None = None,
        lr_warmup: int = 0,
        dequantize_revised: bool = True,
    ) -> None:
        super().__init__()
        self.flow, self.langevin, self.energy = flow, langevin, langevin.energy
        self.kind, self.event_shape = kind, tuple(event_shape)
        flow_shape = tuple(getattr(flow, "event_shape", self.event_shape))
        if flow_shape != self.event_shape:
            raise ValueError(
                f"model.flow: the flow's event shape {flow_shape} differs from the data's "
                f"{self.event_shape}; "
                "a CoopFlow flow maps N(0, I) of the data's shape to data"
            )
        self.noise = check_choice("model.langevin.noise", noise, NOISE)
        self.noise_scale = _positive("model.langevin.noise_scale", noise_scale, allow_zero=True)
        self.noise_decay_epochs = _positive("model.langevin.noise_decay_epochs", noise_decay_epochs)
        self.energy_l2 = _positive("model.energy_l2", energy_l2, allow_zero=True)
        self.lr = {"flow": 1e-4, "ebm": 1e-4, **(lr or {})}
        self.betas = {"flow": (0.9, 0.999), "ebm": (0.5, 0.5), **(betas or {})}
        self.flow_weight_decay = float(flow_weight_decay)
        self.n_bits, self.pretrain_stage = int(n_bits), str(pretrain_stage)
        self.tasks = dict(tasks or {})
        if not isinstance(lr_warmup, int) or isinstance(lr_warmup, bool) or lr_warmup < 0:
            raise ValueError(f"model.lr_warmup must be a non-negative int (updates); got {lr_warmup!r}")
        self.lr_warmup = lr_warmup
        if not isinstance(dequantize_revised, bool):
            raise ValueError(f"model.dequantize_revised must be true or false; got {dequantize_revised!r}")
        self.dequantize_revised = dequantize_revised

    # ------------------------------------------------------------------ config
    @classmethod
    def default_config(cls) -> dict[str, Any]:
        return {
            "flow": "auto",  # registered flow; auto = realnvp for 2-D data, glow for images
            "flow_args": {},
            "standardize": True,  # vector flows: affine normalisation fitted to the first batch
            "n_bits": 8,  # images: dequantisation of data in the flow pre-training stage
            "energy": default_energy_config(),  # images: auto = coopflow_cifar at 32x32 (Table 2)
            "langevin": {
                "steps": 30,  # T (Table 3: 30; CoopFlow(T=200): 200)
                "step_size": 0.03,  # delta of Eq. (3) (Table 3)
                "test_step_multiplier": 1.3333333,  # test step = 4/3 x train step (Sec. A.3)
                "noise": "off",  # off (main text) | constant | decayed (Eq. 10 over epochs, Sec. A.11)
                "noise_scale": 1.0,  # multiplier of delta * eps when the noise is on
                "noise_decay_epochs": 30.0,  # K of Eq. (10)
                "drift_clip": None,  # clip of delta^2/2 grad f; null: 0.1 (images), none (2-D); 0: off
                "clamp": None,  # state clamp; null: official [-1, 1] for images, none for 2-D; []: off
            },
            "energy_l2": 0.0,
            "lr": {"flow": 1e-4, "ebm": 1e-4},  # Sec. A.2
            "betas": {"flow": [0.9, 0.999], "ebm": [0.5, 0.5]},  # Sec. A.2
            "flow_weight_decay": 0.0,
            "lr_warmup": 200,  # updates over which each learning rate ramps up linearly (official code)
            "dequantize_revised": True,  # images: the flow fits dequantised revised samples (official)
            "pretrain_stage": "pretrain",  # stage that fits the flow to data (CoopFlow(Pre))
            "tasks": {
                "max_images": 1000,
                "batch_size": 500,
                "inpaint_size": 0.625,
                "inpaint_completions": 2,
                "recon_steps": 200,  # Sec. 5.3 / A.8: 200 steps over x-hat through the unrolled chain
                "recon_lr": 0.05,
                "grid_resolution": 128,
            },
        }

    @classmethod
    def from_config(cls, cfg: dict[str, Any], data: DataInfo) -> CoopFlow:

        lcfg = cfg["langevin"]
        steps = _steps("model.langevin.steps", lcfg["steps"])
        step = _positive("model.langevin.step_size", lcfg["step_size"])
        mult = _positive("model.langevin.test_step_multiplier", lcfg["test_step_multiplier"])
        image = data.kind == "image"
        drift = lcfg["drift_clip"]
        drift = (
            (0.1 if image else None) if drift is None else _positive("model.langevin.drift_clip", drift, True)
        )
        clamp = lcfg["clamp"]
        clamp = (
            ((-1.0, 1.0) if image else None) if clamp is None else check_clamp("model.langevin.clamp", clamp)
        )
        train_k, test_k, _ = build_kernels(
            "noise_free", step, 0.0, step * mult, False, None, drift or None, clamp
        )
        energy = build_energy(cfg["energy"], data, auto_presets=_COOPFLOW_PRESETS)
        langevin = LangevinFlow(energy, train_k, steps, test_k, steps, test_k)

        flow = flow_from_config(cfg, data)
        lr = {k: _positive(f"model.lr.{k}", v) for k, v in dict(cfg["lr"]).items()}
        betas = {k: tuple(float(b) for b in v) for k, v in dict(cfg["betas"]).items()}
        for k in set(lr) | set(betas):
            if k not in ("flow", "ebm"):
                raise ValueError(f"model.lr / model.betas: unknown optimizer {k!r}; accepted: flow, ebm")
        return cls(
            flow, langevin, data.kind, data.event_shape, lcfg["noise"], lcfg["noise_scale"],
            lcfg["noise_decay_epochs"], cfg["energy_l2"], lr, betas, float(cfg["flow_weight_decay"]),
            int(cfg["n_bits"]), str(cfg["pretrain_stage"]), dict(cfg["tasks"]), cfg["lr_warmup"],
            cfg["dequantize_revised"],
        )  # fmt: skip

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "flow": torch.optim.Adam(
                self.flow.parameters(),
                lr=self.lr["flow"],
                betas=self.betas["flow"],
                weight_decay=self.flow_weight_decay,
            ),
            "ebm": torch.optim.Adam(self.energy.parameters(), lr=self.lr["ebm"], betas=self.betas["ebm"]),
        }

    def configure_schedulers(
        self, optimizers: dict[str, torch.optim.Optimizer]
    ) -> dict[str, torch.optim.lr_scheduler.LRScheduler]:
        """Linear learning-rate warm-up over the first ``lr_warmup`` updates of each optimizer (the official
        code's ``LambdaLR(min(1, s / warm_up))``, ``warm_up`` = 200 batches; the paper is silent)."""
        if self.lr_warmup == 0:
            return {}
        n = self.lr_warmup
        return {
            k: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / n))
            for k, o in optimizers.items()
        }

    def initialize(self, batch: Tensor) -> None:
        """Data-dependent initialisation of the flow (ActNorm / standardisation; Sec. A.2)."""
        initialize_flow(self.flow, self._prepare(split_batch(batch)))

    # ------------------------------------------------------------------ parts
    def _prepare(self, x: Tensor) -> Tensor:
        return flow_data(x, self.kind == "image", self.n_bits)

    def log_prob(self, x: Tensor) -> Tensor:
        r"""The EBM's unnormalised log-density :math:`f_\theta(x)` (Eq. (1))."""
        return self.langevin.log_prob(x)

    def flow_log_prob(self, x: Tensor) -> Tensor:
        r""":math:`\log q_\alpha(x)` of the normalizing flow (Eq. (6))."""
        return self.flow().log_prob(x)

    def flow_forward(self, z: Tensor) -> Tensor:
        r""":math:`\hat x = g_\alpha(z)`; images are clamped to ``[-1, 1]`` (the EBM's domain). The flow's
        non-finite guard is off here: a latent far in the tails may overflow (rows left non-finite; images:
        set to 0 before the clamp); :meth:`propose` redraws such rows."""
        return flow_samples(self.flow, z, self.kind == "image")

    @torch.no_grad()
    def propose(
        self, n: int, generator: torch.Generator | None = None, max_redraws: int = 10
    ) -> tuple[Tensor, Tensor]:
        r"""``(z, x_hat)``: :math:`z \sim \mathcal N(0, I)` and :math:`\hat x = g_\alpha(z)` (Alg. 1, 4-5).

        A latent far in the tails can overflow an image flow's scales; such rows (rare) are redrawn."""
        z = torch.randn((n, *self.event_shape), generator=generator).to(self.device)
        x = self.flow_forward(z)
        for _ in range(max_redraws):
            bad = ~torch.isfinite(x.flatten(1)).all(dim=1)
            if not bad.any():
                break
            z[bad] = torch.randn((int(bad.sum()), *self.event_shape), generator=generator).to(self.device)
            x[bad] = self.flow_forward(z[bad])
        else:
            raise FloatingPointError(f"flow proposals stayed non-finite after {max_redraws} redraws")
        return z, x

    def train_kernel(self, ctx: StepContext) -> Langevin:
        r"""The revision kernel of this step: noise off, constant, or decayed by Eq. (10) over epochs."""
        if self.noise == "off" or self.noise_scale == 0:
            return self.langevin.kernel
        mult = 1.0
        if self.noise == "decayed":
            if ctx.steps_per_epoch is None:
                raise ValueError(
                    "model.langevin.noise: decayed counts training epochs (Eq. 10); this dataset is an "
                    "infinite "
                    "stream without epochs -- use off or constant"
                )
            mult = DecayedNoise(self.noise_decay_epochs)(ctx.epoch)
        scale = self.noise_scale * mult
        if scale == 0:
            return self.langevin.kernel
        o = self.langevin.kernel.options
        return Langevin(
            o["step_size"], noise_scale=scale, grad_clip=o["grad_clip"], drift_clip=o["drift_clip"],
            clamp=o["clamp"],
        )  # fmt: skip

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        x = split_batch(batch)
        if ctx.stage is not None and ctx.stage == self.pretrain_stage:  # CoopFlow(Pre): flow MLE on data
            nll = -self.flow_log_prob(self._prepare(x)).mean()
            return {"flow_nll_data": nll.item(), "grad_norm_flow": ctx.optimize("flow", nll)}
        _, x_hat = self.propose(x.shape[0])  # Alg. 1 lines 4-5
        x_tilde = self.langevin.run(x_hat, kernel=self.train_kernel(ctx))  # line 6, Eq. (3)
        # line 7, Eq. (6); images: dequantised like the data (the official code passes the revised samples
        # through Flow++'s dequantisation), else the flow can pile density on pixels clamped at -1 / 1
        target = self._prepare(x_tilde) if self.dequantize_revised else x_tilde
        flow_nll = -self.flow_log_prob(target).mean()
        logs = {"flow_nll": flow_nll.item(), "grad_norm_flow": ctx.optimize("flow", flow_nll)}
        loss, ebm_logs = self.langevin.contrastive_loss(x, x_tilde, self.energy_l2)  # line 8, Eq. (2)
        logs.update(ebm_logs)
        logs["grad_norm_ebm"] = ctx.optimize("ebm", loss)
        logs["revision_mse"] = float((x_tilde - x_hat).square().flatten(1).sum(1).mean())  # official monitor
        return logs

    # ------------------------------------------------------------------ sampling and tasks
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """CoopFlow samples ``F_theta(g_alpha(z))`` with the test kernel (step x 4/3, no noise)."""
        _, x_hat = self.propose(n, generator)
        return self.langevin.run(x_hat, test=True).detach()

    def named_samples(self, n: int, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Fig. 2 panels: the flow's proposals and the revised CoopFlow samples from the same ``z``."""
        _, x_hat = self.propose(n, generator)
        return {"flow": x_hat, "coopflow": self.langevin.run(x_hat, test=True).detach()}

    def named_densities(self) -> dict[str, Any]:
        """Fig. 2 panels / ``kl_grid_parts``: the flow's ``q_alpha`` and the EBM's ``exp f``."""
        return {"flow": self.flow_log_prob, "ebm": self.log_prob}

    def encode(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        r"""``(z*, F(x_hat*))``: :math:`\hat x^*` by gradient descent on
        :math:`\|M\odot(x - F_\theta(\hat x))\|^2` from a flow proposal (Sec. 5.3, noise ``e = 0``), then
        :math:`z^* = g_\alpha^{-1}(\hat x^*)` (Sec. 5.4)."""
        _, x_hat0 = self.propose(x.shape[0], generator)
        x_hat, recon = self.langevin.invert(
            x, x_hat0, mask, int(self.tasks.get("recon_steps", 200)), float(self.tasks.get("recon_lr", 0.05))
        )
        if self.kind == "image":
            x_hat = x_hat.clamp(-1, 1)  # the chain clamps its state to the EBM's domain anyway
        with torch.no_grad():
            z, _ = self.flow().inverse(x_hat)
        return z, recon

    def reconstruct(
        self, x: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """``F_theta(x_hat*)`` (Sec. 5.3); with ``mask`` (1 = observed) the inpainting of Sec. 5.3."""
        x_hat0 = self.propose(x.shape[0], generator)[1]
        steps, lr = int(self.tasks.get("recon_steps", 200)), float(self.tasks.get("recon_lr", 0.05))
        return self.langevin.invert(x, x_hat0, mask, steps, lr)[1]

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """The CoopFlow generator ``F_theta(g_alpha(z))`` (noise-free test chain)."""
        return self.langevin.run(self.flow_forward(z), test=True).detach()

    @torch.no_grad()
    def evaluate(self, data: Tensor, metrics: list[str]) -> dict[str, float]:
        """``test_nll`` of the normalizing-flow component (the CoopFlow itself has no tractable density)."""
        lp = torch.cat([self.flow_log_prob(c) for c in data.split(512)])
        return {"test_nll_flow": float(-lp.mean())}
