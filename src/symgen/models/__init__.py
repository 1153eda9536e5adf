"""Model families, one file each; importing this package registers them in ``symgen.registry.MODELS``."""

from symgen.models.base import DataInfo, GenerativeModel, StepContext
from symgen.models.flow import FlowModel
from symgen.models.latent import LatentModel

__all__ = ["DataInfo", "GenerativeModel", "StepContext", "FlowModel", "LatentModel"]
