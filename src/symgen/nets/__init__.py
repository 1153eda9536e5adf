"""Neural network building blocks: top-down generators, latent energy networks and encoders."""

from symgen.nets.encoders import ENCODERS, GaussianEncoder, build_encoder
from symgen.nets.energy import LatentEnergy
from symgen.nets.generators import (
    DCGAN32,
    DCGAN64,
    GENERATORS,
    MNIST28,
    DCGAN32Cifar,
    Digits8,
    build_generator,
    default_generator_arch,
)

__all__ = [
    "DCGAN32",
    "DCGAN32Cifar",
    "DCGAN64",
    "MNIST28",
    "Digits8",
    "GENERATORS",
    "build_generator",
    "default_generator_arch",
    "LatentEnergy",
    "GaussianEncoder",
    "ENCODERS",
    "build_encoder",
]
