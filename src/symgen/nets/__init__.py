"""Neural network building blocks: top-down generators, energy networks (latent and image space), encoders
and time-conditioned blocks for diffusion models."""

from symgen.nets.activations import ACTIVATIONS, LipSwish, make_activation
from symgen.nets.encoders import ENCODERS, GaussianEncoder, build_encoder
from symgen.nets.energy import (
    ENERGY_ARCHS,
    ENERGY_PRESETS,
    ConvEnergy,
    EnergyPreset,
    ImageEnergy,
    LatentEnergy,
    ResConvEnergy,
    ResDownBlock,
    build_energy_net,
)
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
from symgen.nets.time import (
    AdaGroupNorm,
    SelfAttention2d,
    TimeEmbedding,
    TimeMLP,
    TimeResBlock,
    UNet,
    num_groups,
    sinusoidal_embedding,
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
    "ImageEnergy",
    "ConvEnergy",
    "ResConvEnergy",
    "ResDownBlock",
    "EnergyPreset",
    "ENERGY_ARCHS",
    "ENERGY_PRESETS",
    "build_energy_net",
    "LipSwish",
    "ACTIVATIONS",
    "make_activation",
    "sinusoidal_embedding",
    "TimeEmbedding",
    "AdaGroupNorm",
    "TimeResBlock",
    "SelfAttention2d",
    "UNet",
    "TimeMLP",
    "num_groups",
    "GaussianEncoder",
    "ENCODERS",
    "build_encoder",
]
