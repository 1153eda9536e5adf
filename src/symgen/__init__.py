"""symgen: symbiotic deep generative models on one composable core.

The core contract is an unnormalized log-density over a batched tensor (``log_prob(x) -> (B,)``) and
samplers that act on any such density (:mod:`symgen.samplers`); flows and priors are modules that
return ``torch.distributions.Distribution`` objects (:mod:`symgen.flows`); models compose them
(:mod:`symgen.models`) and are trained by one loop (:mod:`symgen.trainer`). Importing ``symgen``
registers every model, dataset, flow and evaluation (see ``symgen list``).
"""

__version__ = "0.1.0"

from symgen import data, evaluation, flows, metrics, models, tasks  # noqa: E402,F401  (registration)

__all__ = ["__version__", "data", "evaluation", "flows", "metrics", "models", "tasks"]
