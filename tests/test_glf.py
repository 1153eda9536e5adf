"""Tests of the autoencoder family (GLF, regularized GLF, RAE + GMM, VAE variants; dissertation Ch. 3).

Ground truths: autograd (the stop-gradient of Eq. 3.7 leaves the encoder's gradient equal to that of the
reconstruction term alone; without it the flow NLL reaches the encoder), the closed-form Gaussian KL (the
VAE's Monte-Carlo ``kl`` term), scikit-learn's ``GaussianMixture.score_samples`` and the moments of a known
mixture (the GMM prior).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from symgen.config import resolve_config
from symgen.models.base import DataInfo, StepContext
from symgen.models.glf import GLF, RAEGMM, VAE, RegularizedGLF, recon_loss
from symgen.models.gmm_prior import GMMPrior
from symgen.nets.autoencoders import build_ae_decoder, build_ae_encoder
from symgen.registry import MODELS

DIGITS = DataInfo("digits", "image", (1, 8, 8), 10)
FAMILY = ["glf", "glf_reg", "rae_gmm", "vae", "vae_flow_prior", "vae_flow_posterior"]
SMALL = {
    "latent_dim": 4,
    "encoder": {"arch": "mlp8", "width": 32},
    "decoder": {"arch": "digits8", "width": 32},
}


def build(name: str, **changes) -> torch.nn.Module:
    cfg = MODELS.get(name).default_config()
    cfg.update(SMALL)
    for key, value in changes.items():
        section, _, leaf = key.partition("__")
        if leaf:
            cfg[section] = {**cfg[section], leaf: value}
        else:
            cfg[section] = value
    return MODELS.get(name).from_config(cfg, DIGITS)


def grads(loss: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor]:
    params = list(module.parameters())
    out = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out, strict=True)]


def test_glf_flow_loss_leaves_encoder_gradients_untouched():
    torch.manual_seed(0)
    model = build("glf")
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    terms = model.losses(x)
    assert all(g.abs().max() == 0 for g in grads(terms["nll"], model.encoder))
    assert any(g.abs().max() > 0 for g in grads(terms["nll"], model.prior))
    # the whole loss moves the encoder exactly as beta * reconstruction alone
    for g_all, g_rec in zip(
        grads(terms["loss"], model.encoder), grads(model.beta * terms["recon"], model.encoder), strict=True
    ):
        torch.testing.assert_close(g_all, g_rec)


def test_regularized_glf_flow_loss_reaches_encoder():
    torch.manual_seed(0)
    model = build("glf_reg")
    terms = model.losses(torch.rand(16, 1, 8, 8) * 2 - 1)
    assert max(float(g.abs().max()) for g in grads(terms["nll"], model.encoder)) > 1e-4
    assert not any(g.abs().max() > 0 for g in grads(terms["nll"], model.decoder))


def test_glf_training_step_updates_encoder_only_through_reconstruction():
    """One Adam step of GLF and one on beta * recon alone (same start) move the encoder identically."""
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 8) * 2 - 1
    a = build("glf")
    b = build("glf")
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = a.configure_optimizers()["ae"], b.configure_optimizers()["ae"]

    def optimize(name: str, loss: torch.Tensor) -> float:
        opt_a.zero_grad()
        loss.backward()
        opt_a.step()
        return 0.0

    a.training_step(x, StepContext(0, torch.device("cpu"), torch.Generator(), _optimize=optimize))
    opt_b.zero_grad()
    (b.beta * recon_loss(x, b.decoder(b.encoder(x))).mean()).backward()
    opt_b.step()
    for (name, pa), pb in zip(a.encoder.named_parameters(), b.encoder.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, msg=name)


def test_vae_kl_term_matches_closed_form():
    """Monte-Carlo E_q[log q - log p] with a Gaussian prior and no posterior flow = the Gaussian KL."""
    torch.manual_seed(0)
    model = build("vae")
    x = (torch.rand(1, 1, 8, 8) * 2 - 1).expand(20000, 1, 8, 8)
    with torch.no_grad():
        terms = model.losses(x, torch.Generator().manual_seed(1))
        mu, log_sigma = model.posterior.encoder(x[:1])
    kl = 0.5 * (mu.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum()
    assert abs(float(terms["kl"]) - float(kl)) < 0.05 + 0.02 * float(kl)
    torch.testing.assert_close(terms["loss"], model.beta * terms["recon"] + terms["kl"])


def test_vae_beta_scales_only_the_reconstruction_term():
    torch.manual_seed(0)
    a, b = build("vae_flow_prior"), build("vae_flow_prior", beta=50.0)
    b.load_state_dict(a.state_dict())
    x = torch.rand(8, 1, 8, 8) * 2 - 1
    ta, tb = a.losses(x, torch.Generator().manual_seed(0)), b.losses(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(tb["loss"] - ta["loss"], 49.0 * ta["recon"])


def test_gmm_prior_matches_sklearn_and_samples_its_moments():
    from sklearn.mixture import GaussianMixture

    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-3.0, 0.0], [3.0, 1.0]])
    z = torch.cat(
        [
            centres[0] + 0.5 * torch.randn(300, 2, generator=gen),
            centres[1] + torch.randn(300, 2, generator=gen),
        ]
    )
    prior = GMMPrior(2, components=2, fit_points=600)
    prior.record(z)
    assert prior.stale
    ref = GaussianMixture(2, covariance_type="full", reg_covar=1e-6, random_state=0).fit(z.double().numpy())
    query = torch.randn(50, 2, generator=gen) * 3
    np.testing.assert_allclose(
        prior.log_prob(query).numpy(), ref.score_samples(query.double().numpy()), rtol=1e-4, atol=1e-4
    )
    assert not prior.stale
    s = prior.sample(20000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        s.mean(0), torch.as_tensor(ref.means_.T @ ref.weights_, dtype=torch.float32), atol=0.06, rtol=0
    )


def test_gmm_prior_ring_buffer_keeps_latest_codes():
    prior = GMMPrior(1, components=1, fit_points=3)
    prior.record(torch.tensor([[1.0], [2.0]]))
    prior.record(torch.tensor([[3.0], [4.0]]))
    assert sorted(prior.codes.flatten().tolist()) == [2.0, 3.0, 4.0]


def test_gmm_errors_name_the_key():
    with pytest.raises(ValueError, match="model.gmm.fit_points"):
        GMMPrior(3, components=10, fit_points=5)
    prior = GMMPrior(3, components=10, fit_points=100)
    prior.record(torch.randn(4, 3))
    with pytest.raises(ValueError, match="model.gmm.components"):
        prior.fit()


@pytest.mark.parametrize("beta", [-1.0, 0.0])
def test_bad_beta_names_the_key(beta):
    with pytest.raises(ValueError, match="model.beta"):
        build("glf_reg", beta=beta)


def test_prior_kind_checked_per_model():
    with pytest.raises(ValueError, match="model.prior.kind"):
        build("glf", prior__kind="gaussian")
    with pytest.raises(ValueError, match="model.prior.kind"):
        build("rae_gmm", prior__kind="flow")


def test_rae_records_codes_and_samples_from_the_fitted_mixture():
    torch.manual_seed(0)
    model = build("rae_gmm", gmm={"components": 2, "fit_points": 64, "reg_covar": 1e-6})
    model.train()
    model.losses(torch.rand(32, 1, 8, 8) * 2 - 1)
    assert int(model.prior.n_codes) == 32
    model.eval()
    x = model.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 8, 8) and not model.prior.stale


@pytest.mark.parametrize("name", FAMILY)
def test_stage1_api_shapes(name):
    """What a frozen stage-1 model offers (VAEBM): encode, decode, prior from/to base, sample, reconstruct."""
    torch.manual_seed(0)
    model = build(name)
    if name == "rae_gmm":
        model.prior.record(torch.randn(64, 4))
    model.eval()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert model.encode(x).shape == (3, 4)
    assert model.decode(model.encode(x)).shape == (3, 1, 8, 8)
    assert model.reconstruct(x).shape == (3, 1, 8, 8)
    assert model.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
    assert model.prior.log_prob(model.encode(x)).shape == (3,)
    eps = torch.randn(5, 4)
    if name in ("glf", "glf_reg", "vae_flow_prior"):
        torch.testing.assert_close(model.prior.to_base(model.prior.from_base(eps)), eps, atol=1e-4, rtol=1e-4)


def test_registered_classes():
    assert MODELS.get("glf") is GLF and MODELS.get("glf_reg") is RegularizedGLF
    assert MODELS.get("rae_gmm") is RAEGMM and issubclass(MODELS.get("vae_flow_posterior"), VAE)
    assert build("vae_flow_posterior").posterior.flow is not None


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_infogan_autoencoder_table_3_6_shapes(size, channels):
    enc = build_ae_encoder("infogan", 20, (channels, size, size), None, gaussian=True)
    dec = build_ae_decoder("infogan", 20, (channels, size, size), None)
    mu, log_sigma = enc(torch.randn(2, channels, size, size))
    assert mu.shape == log_sigma.shape == (2, 20)
    assert dec(mu).shape == (2, channels, size, size)
    with pytest.raises(ValueError, match="divisible by 4"):
        build_ae_decoder("infogan", 20, (1, 30, 30), None)


def test_digits_config_resolves_for_every_model():
    for name in FAMILY:
        cfg = resolve_config(name, "configs/glf/digits.yaml", [])
        assert cfg["model"]["latent_dim"] == 20 and math.isclose(cfg["model"]["lr"]["ae"], 1e-3)
