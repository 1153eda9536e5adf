"""Task evaluations of the latent-variable models (LFBM paper Sec. 4), registered in ``EVALS``.

``recon_mse`` (Sec. 4.2), ``inpaint_mse`` (Sec. 4.3), ``anomaly_auprc`` (Sec. 4.4), ``recovery_mse``
(Sec. 4.6), ``interpolation`` and ``latent_density`` (pictures); for the Langevin-flow models (short-run EBM,
CoopFlow) ``density_panels``, ``kl_grid_parts`` and ``interpolation_latent``
(:mod:`symgen.tasks.langevin_flow`); for the flow-tilted EBMs (NT-EBM, NCE-EBM, Glow + EBM) the
mixing study ``mixing`` (:mod:`symgen.tasks.mixing`); sample metrics of each part a model names
(``fd_clf_parts``, ``mmd2_parts``: :mod:`symgen.tasks.sample_parts`); for DDGAN / DDPM ``mode_coverage``
(:mod:`symgen.tasks.mode_coverage`) and ``sampling_tradeoff`` (:mod:`symgen.tasks.sampling_tradeoff`).
Importing this package registers them.
``tasks/`` holds evaluations only: the masks, occlusions and splits they use live in :mod:`symgen.data`.
"""

from symgen.tasks import (
    anomaly,
    heldout_ll,
    inpaint,
    interpolate,
    langevin_flow,
    latent_density,
    mixing,
    mode_coverage,
    reconstruct,
    recovery,
    sample_parts,
    sampling_tradeoff,
)
from symgen.tasks.anomaly import anomaly_scores

__all__ = [
    "anomaly",
    "inpaint",
    "interpolate",
    "langevin_flow",
    "latent_density",
    "mixing",
    "mode_coverage",
    "reconstruct",
    "recovery",
    "sample_parts",
    "sampling_tradeoff",
    "heldout_ll",
    "anomaly_scores",
]
