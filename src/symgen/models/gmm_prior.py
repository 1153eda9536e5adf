r"""A Gaussian-mixture latent prior fitted after training (RAE + GMM; Ghosh et al. 2020, dissertation
Sec. 3.4.4): :math:`p(z) = \sum_k \pi_k \mathcal{N}(z; \mu_k, \Sigma_k)`, 10 components by default.

The mixture is fitted by scikit-learn's EM (``GaussianMixture``, full covariances, fixed ``random_state``)
on the codes kept in a fixed-size buffer (the most recent ``fit_points`` training codes); its parameters
are buffers of the module, so they are checkpointed with the model and ``log_prob`` / ``sample`` run in
torch on any device. A code recorded after the last fit marks the mixture stale; the next ``log_prob`` /
``sample`` (after training: at sampling and evaluation) refits it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from symgen.models.priors import LatentPrior

__all__ = ["GMMPrior"]


class GMMPrior(LatentPrior):
    """Gaussian mixture over ``(B, d)`` latents, fitted by EM on recorded codes.

    Arguments:
        latent_dim: ``d``.
        components: number of mixture components ``K`` (dissertation: 10).
        fit_points: capacity of the code buffer (the most recent codes are kept).
        reg_covar: ridge added to every covariance's diagonal (scikit-learn's ``reg_covar``).
        seed: ``random_state`` of the EM initialisation.
    """

    def __init__(
        self, latent_dim: int, components: int = 10, fit_points: int = 10000, reg_covar: float = 1e-6,
        seed: int = 0,
    ) -> None:  # fmt: skip
        super().__init__(latent_dim)
        if not isinstance(components, int) or components < 1:
            raise ValueError(f"model.gmm.components must be a positive integer, got {components!r}")
        if not isinstance(fit_points, int) or fit_points < components:
            raise ValueError(
                f"model.gmm.fit_points ({fit_points!r}) must be an integer >= model.gmm.components "
                f"({components}): "
                "a mixture needs at least one training point per component"
            )
        if not reg_covar >= 0:
            raise ValueError(f"model.gmm.reg_covar must be >= 0, got {reg_covar!r}")
        self.components, self.fit_points, self.reg_covar, self.seed = components, fit_points, reg_covar, seed
        d = latent_dim
        self.register_buffer("codes", torch.zeros(fit_points, d))
        self.register_buffer("n_codes", torch.zeros((), dtype=torch.long))  # codes ever recorded
        self.register_buffer("n_fitted", torch.zeros((), dtype=torch.long))  # n_codes at the last fit
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, d))
        self.register_buffer("scale_tril", torch.eye(d).repeat(components, 1, 1))

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def record(self, z: Tensor) -> None:
        """Append codes ``(B, d)`` to the ring buffer (the oldest are overwritten) and mark the fit stale."""
        z = z.detach().reshape(-1, self.latent_dim).to(self.codes)
        start = int(self.n_codes)
        idx = (torch.arange(len(z), device=z.device) + start) % self.fit_points
        self.codes[idx] = z
        self.n_codes += len(z)

    @property
    def stale(self) -> bool:
        return int(self.n_codes) != int(self.n_fitted)

    @torch.no_grad()
    def fit(self) -> None:
        """EM fit of the mixture on the buffered codes (scikit-learn, full covariances)."""
        from sklearn.mixture import GaussianMixture

        n = min(int(self.n_codes), self.fit_points)
        if n < self.components:
            raise ValueError(
                f"model.gmm.components = {self.components} exceeds the number of training codes ({n}); "
                "use fewer components or train on more points"
            )
        data = self.codes[:n].double().cpu().numpy()
        gmm = GaussianMixture(
            self.components, covariance_type="full", reg_covar=self.reg_covar, random_state=self.seed
        ).fit(data)
        self.weights.copy_(torch.as_tensor(gmm.weights_))
        self.means.copy_(torch.as_tensor(gmm.means_))
        self.scale_tril.copy_(torch.linalg.cholesky(torch.as_tensor(gmm.covariances_)))
        self.n_fitted.copy_(self.n_codes)

    def _ready(self) -> None:
        if self.stale:
            self.fit()

    # ------------------------------------------------------------------ density
    def log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log \sum_k \pi_k \mathcal{N}(z; \mu_k, L_k L_k^\top)` per row (refits a stale mixture)."""
        self._ready()
        diff = z.unsqueeze(1) - self.means  # (B, K, d)
        sol = torch.linalg.solve_triangular(
            self.scale_tril, diff.transpose(0, 1).transpose(1, 2), upper=False
        )  # (K, d, B)
        maha = sol.pow(2).sum(1).T  # (B, K)
        log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)  # (K,)
        comp = -0.5 * maha - log_det - 0.5 * self.latent_dim * math.log(2 * math.pi)
        return torch.logsumexp(comp + self.weights.log(), dim=1)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws: a component by its weight, then :math:`\\mu_k + L_k \\epsilon`."""
        self._ready()
        eps = self.noise(n, generator)
        probs = self.weights.to(eps.device if generator is None else generator.device)
        k = torch.multinomial(probs, n, replacement=True, generator=generator).to(eps.device)
        return self.means[k] + (self.scale_tril[k] @ eps.unsqueeze(-1)).squeeze(-1)

    def loss(self, z_post: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor | None, dict]:
        """No gradient update: the mixture is fitted by EM (:meth:`fit`)."""
        return None, {}
