"""Why the latent model matters on digits: one trained auto-encoder, three latent densities.

For every GLF (and RAE + GMM) run of ``symgen reproduce glf-digits`` this decodes samples from (a) the run's
own latent model (GLF: its RealNVP flow; RAE: its 10-component GMM), (b) one full-covariance Gaussian and
(c) a 10-component GMM, both fitted by EM on the run's encoded training split, and reports fd_clf (test
split, 1000 samples) and the test-set NLL of the codes under each density, and the train / test NLL gap.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/glf_digits_latent_fit.py   # after the reproduce

Writes ``benchmarks/results/glf-digits-latent-fit.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench import git_head  # noqa: E402
from symgen.data import load_digits  # noqa: E402
from symgen.metrics.images import image_metrics  # noqa: E402
from symgen.models.gmm_prior import GMMPrior  # noqa: E402
from symgen.runs import load_run  # noqa: E402

ROOT = Path("runs/reproduce/glf-digits")
OUT = Path("benchmarks/results/glf-digits-latent-fit.md")


def fd(real: torch.Tensor, fake: torch.Tensor) -> float:
    return float(image_metrics(real, fake, "classifier:digits", ("fd",))["fd"])


@torch.no_grad()
def main() -> None:
    train, test = load_digits("train"), load_digits("test")
    rows = []
    for label in ("GLF", "RAE_GMM"):
        for seed in (0, 1, 2):
            run = ROOT / f"{label}-seed{seed}"
            if not run.is_dir():
                continue
            model = load_run(run).model
            z_train, z_test = model.encode(train.x), model.encode(test.x)
            gen = torch.Generator().manual_seed(seed)
            own = fd(test.x, model.sample(1000, gen))
            own_nll = -float(model.prior.log_prob(z_test).mean())
            own_train = -float(model.prior.log_prob(z_train).mean())
            fits = {}
            for k in (1, 10):
                prior = GMMPrior(model.latent_dim, k, len(z_train))
                prior.record(z_train)
                fits[k] = (
                    fd(test.x, model.decode(prior.sample(1000, gen))),
                    -float(prior.log_prob(z_test).mean()),
                )
            rows.append(
                f"| {label.replace('_', ' + ')} | {seed} | {own:.2f} | {own_train:.1f} / {own_nll:.1f} | "
                f"{fits[1][0]:.2f} | {fits[1][1]:.1f} | {fits[10][0]:.2f} | {fits[10][1]:.1f} |"
            )
    head = (
        "| run | seed | fd_clf own latent model | own NLL train / test | fd_clf 1 Gaussian | NLL test | "
        "fd_clf GMM-10 | NLL test |\n|---|---|---|---|---|---|---|---|"
    )
    OUT.write_text(
        "# glf-digits: one auto-encoder, three latent densities\n\n"
        "fd_clf of 1000 decoded samples (test split) and the NLL (nats) of the encoded test split under the "
        "run's own latent model and under a Gaussian / 10-component GMM fitted by EM to the encoded training "
        "split (1437 codes, 20-d). RAE + GMM's own model is the GMM fitted on its last 1437 training "
        "codes.\n\n"
        f"{head}\n" + "\n".join(rows) + "\n\n"
        f"- command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/glf_digits_latent_fit.py`\n"
        f"- runs: `{ROOT}` (symgen reproduce glf-digits), commit: `{git_head()}`\n"
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
