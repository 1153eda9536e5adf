"""Model families, one file each; importing this package registers them in ``symgen.registry.MODELS``."""

from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.coopflow import CoopFlow
from symgen.models.ddgan import DDGAN
from symgen.models.ddpm import DDPM
from symgen.models.flow import FlowModel
from symgen.models.glf import GLF, RAEGMM, VAE, AutoencoderModel, RegularizedGLF
from symgen.models.glow_ebm import GlowEBM
from symgen.models.latent import LatentModel
from symgen.models.nce_ebm import NCEEBM
from symgen.models.ntebm import NTEBM
from symgen.models.short_run_ebm import ShortRunEBM
from symgen.models.tilted_ebm import TiltedEBM
from symgen.models.vaebm import VAEBM

__all__ = [
    "DataInfo",
    "GenerativeModel",
    "StepContext",
    "FlowModel",
    "LatentModel",
    "ShortRunEBM",
    "CoopFlow",
    "TiltedEBM",
    "NTEBM",
    "NCEEBM",
    "GlowEBM",
    "AutoencoderModel",
    "GLF",
    "RegularizedGLF",
    "RAEGMM",
    "VAE",
    "VAEBM",
    "DDGAN",
    "DDPM",
]
