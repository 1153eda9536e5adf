"""Batched MCMC and transport samplers over unnormalized log-densities (see ``docs/samplers.md``).

Every kernel follows one contract -- ``state = kernel.init(x0, log_prob)``,
``state, info = kernel.step(state, log_prob)`` -- with chains as the leading batch dimension, and
``run_chain`` drives any of them (warm-up adaptation, trajectory thinning, callbacks).
"""

from symgen.samplers.adaptation import DualAveraging, MultiplicativeAdaptation, get_adaptation
from symgen.samplers.base import ChainState, Kernel, StepInfo, value_and_grad
from symgen.samplers.chain import Trace, run_chain
from symgen.samplers.hmc import HMC
from symgen.samplers.langevin import (
    MALA,
    AnnealedNoise,
    DecayedNoise,
    GradientDescent,
    Langevin,
    MagnetizedLangevin,
    get_noise_schedule,
)
from symgen.samplers.mh import metropolis_hastings
from symgen.samplers.ode import GradientFlow
from symgen.samplers.transport import GeneratorTransport, NeuralTransport

__all__ = [
    "ChainState",
    "StepInfo",
    "Trace",
    "Kernel",
    "run_chain",
    "value_and_grad",
    "Langevin",
    "MALA",
    "MagnetizedLangevin",
    "GradientDescent",
    "DecayedNoise",
    "AnnealedNoise",
    "get_noise_schedule",
    "HMC",
    "metropolis_hastings",
    "MultiplicativeAdaptation",
    "DualAveraging",
    "get_adaptation",
    "NeuralTransport",
    "GeneratorTransport",
    "GradientFlow",
]
