"""Model families, one file each; importing this package registers them in ``symgen.registry.MODELS``."""

from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.coopflow import CoopFlow
from symgen.models.flow import FlowModel
from symgen.models.latent import LatentModel
from symgen.models.short_run_ebm import ShortRunEBM

__all__ = [
    "DataInfo",
    "GenerativeModel",
    "StepContext",
    "FlowModel",
    "LatentModel",
    "ShortRunEBM",
    "CoopFlow",
]
