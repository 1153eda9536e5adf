"""Tests of the LFBM task evaluations (symgen.tasks) against closed forms and the anomaly protocol.

A linear generator with a Gaussian prior has a Gaussian (masked) posterior; the noise-free test-time
chain converges to its mode, so reconstructions, inpaintings and recoveries have closed forms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import symgen.data
from symgen.data.base import ImageData
from symgen.data.masks import (
    PATCH_COUNTS,
    OcclusionSpec,
    _image_keys,
    hash_uniform,
    occlusion_mask,
    patch_count,
    square_side,
)
from symgen.data.splits import anomaly_splits
from symgen.evaluation import EvalContext
from symgen.metrics.anomaly import auprc
from symgen.models.inference import MCMCInference
from symgen.models.latent import LatentModel
from symgen.models.priors import FlowPrior, GaussianPrior
from symgen.tasks.anomaly import eval_anomaly_auprc
from symgen.tasks.inpaint import eval_inpaint_mse
from symgen.tasks.interpolate import interpolate_latents, prior_interpolation
from symgen.tasks.latent_density import principal_axes
from symgen.tasks.reconstruct import eval_recon_mse
from symgen.tasks.recovery import eval_recovery_mse

SIGMA = 0.5


class LinearGenerator(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, side: int) -> None:
        super().__init__()
        self.weight, self.bias, self.side = nn.Parameter(weight), nn.Parameter(bias), side

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.weight.T + self.bias).view(z.shape[0], 1, self.side, self.side)


def linear_model(side: int = 3, d: int = 2, seed: int = 0) -> LatentModel:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(side * side, d, generator=g) * 0.4
    bias = torch.randn(side * side, generator=g) * 0.1
    spec = MCMCInference(test_steps=600, test_step_size=0.15, test_noise=False)
    return LatentModel(
        LinearGenerator(weight, bias, side), GaussianPrior(d), (1, side, side), SIGMA, spec, lr={}
    )


def map_completion(model: LatentModel, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """g(mode of the masked posterior) in closed form, per image."""
    w, b = model.generator.weight.detach(), model.generator.bias.detach()
    out = []
    for xi, mi in zip(x.reshape(len(x), -1), mask.reshape(len(x), -1)):
        obs = mi.bool()
        wo = w[obs]
        cov = torch.linalg.inv(torch.eye(w.shape[1]) + wo.T @ wo / SIGMA**2)
        mean = cov @ wo.T @ (xi[obs] - b[obs]) / SIGMA**2
        out.append(w @ mean + b)
    return torch.stack(out).view_as(x)


def make_ctx(model: LatentModel, train=None, test=None, val=None, **model_cfg) -> EvalContext:
    tasks = {"max_images": 1000, "batch_size": 7, "inpaint_size": 0.34, "inpaint_completions": 2}
    cfg = {"model": {"tasks": tasks, **model_cfg}, "data": {"holdout_class": None}, "train": {"n_samples": 4}}
    return EvalContext(model=model, cfg=cfg, train=train, test=test, val=val, run_dir=None,
                       device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))  # fmt: skip


def images(n: int, side: int = 3, seed: int = 1) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, side, side, generator=g) * 1.6 - 0.8).float()
    return ImageData("toy", x, torch.arange(n) % 3)


# --------------------------------------------------------------------------- reconstruction, inpainting


def test_recon_mse_is_the_error_of_the_posterior_mode():
    torch.manual_seed(0)
    model, data = linear_model(), images(20)
    out = eval_recon_mse(make_ctx(model, test=data))
    full = torch.ones_like(data.x)
    expected = (map_completion(model, data.x, full) - data.x).pow(2).mean()
    assert out["recon_mse"] == pytest.approx(float(expected), rel=1e-3)


def test_inpaint_mse_uses_only_visible_pixels_and_scores_hidden_ones():
    torch.manual_seed(1)
    model, data = linear_model(), images(20)
    out = eval_inpaint_mse(make_ctx(model, test=data))
    mask = torch.ones_like(data.x)
    mask[:, :, 1, 1] = 0  # side 0.34 * 3 -> 1 pixel, centred
    expected = (map_completion(model, data.x, mask) - data.x)[:, :, 1, 1].pow(2).mean()
    assert out["inpaint_mse"] == pytest.approx(float(expected), rel=1e-3)


def short_chain_completion_error(model: LatentModel, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Expected squared error per pixel of g(z) on [-1, 1], z after the *training* chain, in closed form.

    For the masked linear-Gaussian posterior, grad log p(z|x) = -P z + h with P = I + W_o'W_o / sigma^2, so
    K Langevin steps z <- z + s^2/2 (-P z + h) + s eps from N(0, I) give z ~ N(m_K, C_K) with
    m_{k+1} = A m_k + s^2/2 h, C_{k+1} = A C_k A' + s^2 I, A = I - s^2/2 P.
    """
    w, b = model.generator.weight.detach(), model.generator.bias.detach()
    steps, s = model.inference.steps, model.inference.step_size
    out = []
    for xi, mi in zip(x.reshape(len(x), -1), mask.reshape(len(x), -1)):
        obs = mi.bool()
        wo = w[obs]
        eye = torch.eye(w.shape[1])
        a = eye - s**2 / 2 * (eye + wo.T @ wo / SIGMA**2)
        h = wo.T @ (xi[obs] - b[obs]) / SIGMA**2
        m, c = torch.zeros(w.shape[1]), eye.clone()
        for _ in range(steps):
            m, c = a @ m + s**2 / 2 * h, a @ c @ a.T + s**2 * eye
        out.append((xi - (w @ m + b)).pow(2) + ((w @ c) * w).sum(1))
    return torch.stack(out).view_as(x)


def test_recovery_mse_uses_the_training_chain_and_the_unit_pixel_scale():
    # Official protocol: z from the training chain (20 noisy steps, s = 0.1, from N(0, I)); MSE of the
    # hidden pixels on [0, 1] = 1/4 of the [-1, 1] MSE. Closed form of the chain's Gaussian law.
    torch.manual_seed(3)
    model, data = linear_model(side=4), images(3000, side=4, seed=5)
    occ = {"kind": "salt_and_pepper", "rate": 0.4, "size": 0.0, "seed": 3}
    ctx = make_ctx(model, train=data, occlusion=occ)
    ctx.cfg["model"]["tasks"].update(max_images=3000, batch_size=1000, recovery_chain="both")
    out = eval_recovery_mse(ctx)
    assert set(out) == {"recovery_mse", "recovery_mse_test_chain"}
    mask = occlusion_mask(data.x, OcclusionSpec.from_config(occ))
    hidden = mask == 0
    expected = float(short_chain_completion_error(model, data.x, mask)[hidden].mean()) / 4
    assert out["recovery_mse"] == pytest.approx(expected, rel=0.04)  # Monte Carlo over ~19k hidden pixels
    long_chain = float((map_completion(model, data.x, mask) - data.x).pow(2)[hidden].mean()) / 4
    assert out["recovery_mse_test_chain"] == pytest.approx(long_chain, rel=1e-3)
    assert abs(expected - long_chain) > 0.2 * long_chain  # the two chains are distinguishable here


def test_recovery_mse_default_is_the_training_chain_only():
    torch.manual_seed(2)
    model, data = linear_model(side=4), images(16, side=4)
    occ = {"kind": "salt_and_pepper", "rate": 0.4, "size": 0.0, "seed": 3}
    ctx = make_ctx(model, train=data, occlusion=occ)
    del ctx.cfg["model"]["tasks"]["max_images"]  # the defaults of symgen.tasks.common fill the gaps
    assert set(eval_recovery_mse(ctx)) == {"recovery_mse"}
    ctx.cfg["model"]["tasks"]["recovery_chain"] = "test"
    out = eval_recovery_mse(ctx)
    mask = occlusion_mask(data.x, OcclusionSpec.from_config(occ))
    err = (map_completion(model, data.x, mask) - data.x).pow(2)
    assert out == {"recovery_mse_test_chain": pytest.approx(float(err[mask == 0].mean()) / 4, rel=1e-3)}
    ctx.cfg["model"]["tasks"]["recovery_chain"] = "long"
    with pytest.raises(ValueError, match="recovery_chain"):
        eval_recovery_mse(ctx)
    with pytest.raises(ValueError, match="occlusion"):
        eval_recovery_mse(make_ctx(model, train=data, occlusion={"kind": "none"}))


# --------------------------------------------------------------------------- anomaly protocol


@pytest.mark.parametrize("holdout", [1, 7])
def test_anomaly_protocol_keeps_test_images_out_of_training_and_selection(holdout):
    full = symgen.data.load("digits", split="all")
    # tag every image with its index so that splits can be traced back (pixel (0,0) is 0 in all digits)
    tagged = ImageData(full.name, full.x.clone(), full.y)
    tagged.x[:, 0, 0, 0] = torch.linspace(-1, 1, len(full))
    train, val, test = anomaly_splits(tagged, holdout, seed=3)
    ids = {name: set(torch.round((s.x[:, 0, 0, 0] + 1) / 2 * (len(full) - 1)).long().tolist())
           for name, s in (("train", train), ("val", val), ("test", test))}  # fmt: skip
    assert not ids["train"] & ids["test"] and not ids["val"] & ids["test"] and not ids["train"] & ids["val"]
    assert len(ids["train"] | ids["val"] | ids["test"]) == len(full)
    assert (train.y != holdout).all() and (val.y != holdout).all()
    n_normal = int((full.y != holdout).sum())
    assert int((test.y == holdout).sum()) == int((full.y == holdout).sum())  # every anomaly is tested
    assert len(train) + len(val) == int(0.8 * n_normal)  # the 80% part of the normal images
    assert abs(len(val) - 0.1 * int(0.8 * n_normal)) <= 1
    again = anomaly_splits(tagged, holdout, seed=3)
    assert torch.equal(again[2].x, test.x)  # deterministic given the seed


class NormScorer(nn.Module):
    """Stub latent model: z = 0, log p(x, z) = -||x||^2; records the images it scores."""

    def __init__(self) -> None:
        super().__init__()
        self.generator, self.prior, self.seen = nn.Identity(), GaussianPrior(1), []

    def infer(self, x, mask=None, test=False, generator=None):
        self.seen.append(x.clone())
        return torch.zeros(len(x), 1)

    def log_joint(self, x, z):
        return -x.flatten(1).pow(2).sum(1)


def test_anomaly_auprc_scores_test_split_and_selects_on_validation_only():
    full = symgen.data.load("digits", split="all")
    train, val, test = anomaly_splits(full, 4, seed=0)
    model = NormScorer()
    ctx = make_ctx(model, train=train, test=test, val=val)
    ctx.cfg["data"]["holdout_class"] = 4
    out = eval_anomaly_auprc(ctx)
    norms = test.x.flatten(1).pow(2).sum(1)
    assert out["anomaly_auprc"] == pytest.approx(auprc(norms, (test.y == 4).long()))
    assert out["anomaly_val_score"] == pytest.approx(float(val.x.flatten(1).pow(2).sum(1).mean()), rel=1e-6)
    seen = torch.cat(model.seen)
    assert len(seen) == len(test) + len(val)  # nothing from training, each evaluation image once
    ctx.cfg["data"]["holdout_class"] = None
    with pytest.raises(ValueError, match="holdout_class"):
        eval_anomaly_auprc(ctx)


# --------------------------------------------------------------------------- occlusion masks


def test_occlusion_masks_are_fixed_per_image_and_have_the_requested_size():
    x = images(4000, side=8, seed=4).x
    sp = OcclusionSpec("salt_and_pepper", rate=0.3, seed=1)
    m = occlusion_mask(x, sp)
    hidden = 1 - m.mean()
    assert abs(float(hidden) - 0.3) < 4 * (0.3 * 0.7 / m.numel()) ** 0.5  # binomial error
    torch.testing.assert_close(occlusion_mask(x[17:18], sp)[0], m[17])  # independent of the batch
    assert not torch.equal(m[0], m[1])  # different images, different masks
    assert not torch.equal(occlusion_mask(x, OcclusionSpec("salt_and_pepper", 0.3, seed=2)), m)
    sq = occlusion_mask(x, OcclusionSpec("square", size=30 / 64))
    side = square_side(30 / 64, 8)
    assert side == 4 and ((1 - sq).flatten(1).sum(1) == side * side).all()
    tops = (1 - sq)[:, 0].amax(2).argmax(1)
    assert len(torch.unique(tops)) == 8 - side + 1  # every position is used
    with pytest.raises(ValueError, match="occlusion kind"):
        OcclusionSpec("blur")


def test_official_patch_counts_per_rate():
    assert [patch_count(r) for r in (0.3, 0.5, 0.7)] == [24, 48, 90]
    assert PATCH_COUNTS[30] == 24 and PATCH_COUNTS[50] == 48 and PATCH_COUNTS[70] == 90
    with pytest.raises(ValueError, match="official"):
        patch_count(0.33)
    with pytest.raises(ValueError, match="official"):
        OcclusionSpec("patches", rate=0.45)


@pytest.mark.parametrize(("rate", "count"), [(0.3, 24), (0.5, 48), (0.7, 90)])
def test_patch_occlusion_is_the_union_of_the_official_number_of_8x8_patches(rate: float, count: int):
    x = images(200, side=64, seed=6).x
    spec = OcclusionSpec("patches", rate=rate, size=8 / 64, seed=2)
    m = occlusion_mask(x, spec)
    # reference: paint `count` 8x8 squares per image, one by one, at the hashed corners
    u = hash_uniform(_image_keys(x, 2), 2 * count).view(len(x), 2, count)
    corners = (u * 57).floor().long()  # 64 - 8 + 1 positions per axis
    ref = torch.ones(len(x), 1, 64, 64)
    for i in range(len(x)):
        for k in range(count):
            top, left = int(corners[i, 0, k]), int(corners[i, 1, k])
            ref[i, 0, top : top + 8, left : left + 8] = 0
    torch.testing.assert_close(m, ref)
    hidden = (1 - m).flatten(1).sum(1)
    assert (hidden <= count * 64).all() and (hidden >= 64).all()
    assert abs(float(1 - m.mean()) - rate) < 0.06  # the official counts give roughly the nominal rate
    torch.testing.assert_close(occlusion_mask(x[5:6], spec)[0], m[5])  # fixed per image
    assert OcclusionSpec("patches", rate=0.5).size == 0.0  # 0 means the official 8/64
    torch.testing.assert_close(occlusion_mask(x[:4], OcclusionSpec("patches", rate=rate, seed=2)), m[:4])


# --------------------------------------------------------------------------- pictures' numerics


def test_principal_axes_match_sklearn_pca():
    from sklearn.decomposition import PCA

    z = torch.randn(300, 5) @ torch.randn(5, 5)
    mean, axes = principal_axes(z.double(), 2)
    ref = PCA(2).fit(z.double().numpy())
    np.testing.assert_allclose(mean.numpy(), ref.mean_, atol=1e-10)
    np.testing.assert_allclose(np.abs(axes.T.numpy() @ ref.components_.T), np.eye(2), atol=1e-8)


def test_prior_interpolation_pushes_a_segment_between_two_base_draws_through_the_flow():
    # official print_intepolation: u_a, u_b ~ N(0, I), (1 - t) u_a + t u_b, then z = f(u); nothing inferred
    torch.manual_seed(6)
    prior = FlowPrior(3, "glow_vector", depth=2, width=16).eval()
    path = prior_interpolation(prior, 4, 5, torch.Generator().manual_seed(11))
    g = torch.Generator().manual_seed(11)
    u_a, u_b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert path.shape == (4, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(path[:, 0], prior.from_base(u_a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(path[:, -1], prior.from_base(u_b), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(path[:, 1], prior.from_base(0.75 * u_a + 0.25 * u_b), rtol=1e-5, atol=1e-5)
        base = prior.to_base(path.reshape(-1, 3)).reshape(4, 5, 3)
    steps = base[:, 1:] - base[:, :-1]  # equal steps along a straight line in the base space
    torch.testing.assert_close(steps, steps[:, :1].expand_as(steps), rtol=1e-3, atol=1e-4)
    gaussian = prior_interpolation(GaussianPrior(3), 4, 5, torch.Generator().manual_seed(11))
    torch.testing.assert_close(gaussian[:, 0], u_a)  # identity map for the Gaussian prior


def test_interpolation_is_linear_in_the_flow_base_space():
    torch.manual_seed(5)
    prior = FlowPrior(3, "glow_vector", depth=2, width=16).eval()
    z_a, z_b = prior.from_base(torch.randn(4, 3)), prior.from_base(torch.randn(4, 3))
    path = interpolate_latents(prior, z_a, z_b, 5)
    torch.testing.assert_close(path[:, 0], z_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(path[:, -1], z_b, rtol=1e-4, atol=1e-4)
    mid = prior.from_base((prior.to_base(z_a) + prior.to_base(z_b)) / 2)
    torch.testing.assert_close(path[:, 2], mid, rtol=1e-4, atol=1e-4)
