r"""The latent-space energy network :math:`f_\alpha(z)` of the LEBM prior.

An MLP ``d -> hidden -> ... -> 1`` with LeakyReLU (or GELU) activations, as in the latent EBM prior of
Pang et al. (2020) (three linear layers, width 200, LeakyReLU 0.2). The prior density is
:math:`p_\alpha(z) \propto \exp(f_\alpha(z))\,\mathcal{N}(z; 0, I)` (LFBM paper, Sec. 3.3). Hand-written:
a three-layer MLP needs no library.

References:
    Pang, Han, Nijkamp, Zhu, Wu, "Learning Latent Space Energy-Based Prior Model", NeurIPS 2020.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["LatentEnergy"]


class LatentEnergy(nn.Module):
    r"""Scalar network :math:`f_\alpha: \mathbb{R}^d \to \mathbb{R}`; ``forward(z)`` returns shape ``(B,)``.

    Arguments:
        latent_dim: size ``d`` of the latent vector.
        hidden: width of the hidden layers.
        layers: number of hidden layers (``>= 1``).
        activation: ``"lrelu"`` (slope 0.2) or ``"gelu"``.
    """

    def __init__(
        self, latent_dim: int, hidden: int = 200, layers: int = 2, activation: str = "lrelu"
    ) -> None:
        super().__init__()
        if not isinstance(latent_dim, int) or latent_dim <= 0:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers!r}")
        acts = {"lrelu": lambda: nn.LeakyReLU(0.2), "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        mods: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), acts[activation]()]
            width = hidden
        mods.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*mods)
        self.latent_dim = latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.reshape(z.shape[0], self.latent_dim)).squeeze(-1)
