"""Tests of symgen.data: toy densities against their samples, image readers on tiny fake files."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy import integrate, stats
from sklearn.datasets import load_digits as sk_digits
from sklearn.datasets import make_moons, make_swiss_roll

from symgen.data import DATASET_NAMES, TOY_NAMES, ImageData, Toy2D, load
from symgen.data.toy2d import Curve, NoisyCurves
from symgen.registry import DATASETS

DENSITY_NAMES = [n for n in TOY_NAMES if n != "pinwheel"]
N_SAMPLES = 20_000


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- toy API


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_contract(name: str) -> None:
    torch.manual_seed(0)
    ds = load(name)
    assert isinstance(ds, Toy2D) and ds.name == name and name in DATASETS and name in DATASET_NAMES
    assert ds.kind == "toy2d" and ds.event_shape == (2,)
    x = ds.sample(500, generator=_gen(1))
    assert x.shape == (500, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, ds.sample(500, generator=_gen(1)))
    assert not torch.equal(x, ds.sample(500, generator=_gen(2)))
    assert torch.equal(ds.test_set(300, seed=5), ds.test_set(300, seed=5))
    assert not torch.equal(ds.test_set(300, seed=5), ds.test_set(300, seed=6))
    assert ds.sample(0).shape == (0, 2)
    (x0, x1), (y0, y1) = ds.bounds
    big = ds.sample(N_SAMPLES, generator=_gen(3))
    inside = (big[:, 0] > x0) & (big[:, 0] < x1) & (big[:, 1] > y0) & (big[:, 1] < y1)
    assert inside.all(), "bounds must hold essentially all the mass"
    if ds.has_density:
        lp = ds.log_prob(x)
        assert lp.shape == (500,) and lp.dtype == torch.float32 and torch.isfinite(lp).all()
        assert ds.log_prob(x.double().reshape(5, 100, 2)).shape == (5, 100)
    else:
        with pytest.raises(NotImplementedError):
            ds.log_prob(x)


def test_toy_input_validation() -> None:
    ds = load("8gaussians")
    with pytest.raises(ValueError, match="x must be"):
        ds.log_prob(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="x must be"):
        ds.log_prob(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="n must be"):
        ds.sample(-1)
    with pytest.raises(ValueError, match="std must be"):
        load("8gaussians", std=0.0)
    with pytest.raises(ValueError, match="accepts std"):
        load("spiral", root="/tmp")
    with pytest.raises(KeyError, match="did you mean 'spiral'"):
        load("spirall")


# ---------------------------------------------------------------- toy densities vs samples


@cache
def _bin_probs(name: str, nb: int = 16) -> np.ndarray:
    """Probabilities of an nb x nb grid of bins over ``bounds``, by midpoint rule on a sub-grid of spacing
    <= 0.4 noise std (aligned with the checkerboard's squares)."""
    ds = load(name)
    (x0, x1), (y0, y1) = ds.bounds
    std = getattr(ds, "std", None)
    sub = 8 if std is None else math.ceil(max(x1 - x0, y1 - y0) / (nb * 0.4 * std))
    m = nb * sub
    hx, hy = (x1 - x0) / m, (y1 - y0) / m
    xs = x0 + hx * (torch.arange(m, dtype=torch.float64) + 0.5)
    ys = y0 + hy * (torch.arange(m, dtype=torch.float64) + 0.5)
    dens = ds.log_prob(torch.cartesian_prod(xs, ys)).exp().reshape(m, m) * hx * hy
    return dens.reshape(nb, sub, nb, sub).sum(dim=(1, 3)).numpy()


def _chi2_pvalue(name: str, x: torch.Tensor, nb: int = 16) -> float:
    ds = load(name)
    (x0, x1), (y0, y1) = ds.bounds
    probs = _bin_probs(name, nb=nb)
    counts, _, _ = np.histogram2d(
        x[:, 0].double().numpy(), x[:, 1].double().numpy(), bins=nb, range=[[x0, x1], [y0, y1]]
    )
    outside = len(x) - counts.sum()
    expected = probs.ravel() * len(x)
    keep = expected >= 5
    f_exp = np.append(expected[keep], max(0.0, len(x) - expected[keep].sum()))
    f_obs = np.append(counts.ravel()[keep], counts.ravel()[~keep].sum() + outside)
    if f_exp[-1] < 5:  # too little pooled mass to test: fold it into the largest bin
        f_exp[np.argmax(f_exp[:-1])] += f_exp[-1]
        f_obs[np.argmax(f_exp[:-1])] += f_obs[-1]
        f_exp, f_obs = f_exp[:-1], f_obs[:-1]
    f_exp *= f_obs.sum() / f_exp.sum()
    return float(stats.chisquare(f_obs, f_exp).pvalue)


@pytest.mark.parametrize("name", DENSITY_NAMES)
def test_toy_density_normalised_over_bounds(name: str) -> None:
    # The midpoint rule with spacing 0.4 std is accurate to ~1e-4 here; bounds miss < 1e-6 of the mass.
    assert _bin_probs(name, nb=16).sum() == pytest.approx(1.0, abs=2e-3)


@pytest.mark.parametrize("name", DENSITY_NAMES)
def test_toy_samples_match_exact_density_chi_square(name: str) -> None:
    torch.manual_seed(0)
    x = load(name).sample(N_SAMPLES, generator=_gen(11))
    assert _chi2_pvalue(name, x) > 1e-3
    # The same test rejects a 2 % rescaling of the samples, so it has power.
    assert _chi2_pvalue(name, x * 1.02) < 1e-6


# ---------------------------------------------------------------- densities vs independent references


@pytest.mark.parametrize(
    ("name", "k", "std"), [("25gaussians", 25, 0.05 / (2 * math.sqrt(2))), ("9gaussians", 9, 0.25)]
)
def test_separated_mixture_entropy(name: str, k: int, std: float) -> None:
    # Modes 8+ std apart barely overlap, so the entropy is log K + log(2 pi e std^2) (to ~1e-4).
    lp = load(name).log_prob(load(name).sample(N_SAMPLES, generator=_gen(6)).double())
    exact = math.log(k) + math.log(2 * math.pi * math.e * std**2)
    assert abs(-lp.mean().item() - exact) < 5 * lp.std().item() / math.sqrt(N_SAMPLES)


def test_gaussian_mixture_log_prob_matches_scipy() -> None:
    ds = load("8gaussians")
    x = ds.sample(50, generator=_gen(0)).double() * 1.3
    angles = np.arange(8) * np.pi / 4
    means = 2 * np.sqrt(2) * np.stack([np.cos(angles), np.sin(angles)], 1)
    cov = (1 / (2 * np.sqrt(2))) ** 2 * np.eye(2)
    ref = np.log(np.mean([stats.multivariate_normal(m, cov).pdf(x.numpy()) for m in means], axis=0))
    np.testing.assert_allclose(ds.log_prob(x).numpy(), ref, rtol=0, atol=1e-10)


def test_rings_bessel_form_matches_angle_integral() -> None:
    ds = load("rings")
    x = torch.tensor([[0.1, 0.0], [0.5, -0.4], [1.5, 0.05], [-2.0, 1.0], [0.0, 3.1], [2.9, 2.9]])
    s = 0.08

    def dens(p: np.ndarray) -> float:
        total = 0.0
        for r in (0.75, 1.5, 2.25, 3.0):

            def f(t: float, r: float = r) -> float:
                return np.exp(-((p[0] - r * np.cos(t)) ** 2 + (p[1] - r * np.sin(t)) ** 2) / (2 * s * s))

            phi = np.arctan2(p[1], p[0]) % (2 * np.pi)
            total += integrate.quad(f, 0, 2 * np.pi, points=[phi], limit=200, epsabs=0, epsrel=1e-11)[0]
        return total / (4 * 2 * np.pi * 2 * np.pi * s * s)

    ref = np.log([dens(p) for p in x.double().numpy()])
    np.testing.assert_allclose(ds.log_prob(x.double()).numpy(), ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("name", ["spiral", "2spirals", "swissroll", "moons"])
def test_curve_quadrature_matches_scipy_quad(name: str) -> None:
    ds = load(name)
    assert isinstance(ds, NoisyCurves)
    x = torch.cat([ds.sample(4, generator=_gen(5)).double(), torch.tensor([[0.3, -0.2], [1.0, 1.0]])])
    s = ds.std

    def dens(p: np.ndarray) -> float:
        total = 0.0
        for curve in ds.curves:
            a, b = curve.t_range
            tt = torch.linspace(a, b, 20001, dtype=torch.float64)
            d = (curve.point(tt) - torch.as_tensor(p)).norm(dim=1).numpy()
            minima = tt.numpy()[1:-1][(d[1:-1] <= d[:-2]) & (d[1:-1] <= d[2:])]

            def f(t: float, curve: Curve = curve) -> float:
                tv = torch.tensor([t], dtype=torch.float64)
                d2 = float(((curve.point(tv)[0] - torch.as_tensor(p)) ** 2).sum())
                return math.exp(float(curve.t_log_density(tv)[0]) - d2 / (2 * s * s))

            pts = list(minima[:100])
            total += curve.weight * integrate.quad(f, a, b, points=pts, limit=2000, epsabs=0, epsrel=1e-10)[0]
        return total / (2 * math.pi * s * s)

    ref = np.log([dens(p) for p in x.numpy()])
    np.testing.assert_allclose(ds.log_prob(x).numpy(), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["8gaussians", "rings", "swissroll"])
def test_log_prob_gradient_matches_finite_differences(name: str) -> None:
    ds = load(name)
    x = ds.sample(8, generator=_gen(2)).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(ds.log_prob(x).sum(), x)
    eps = 1e-6
    for k in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[k] = eps
        fd = (ds.log_prob(x.detach() + e) - ds.log_prob(x.detach() - e)) / (2 * eps)
        np.testing.assert_allclose(grad[:, k].numpy(), fd.numpy(), rtol=1e-5, atol=1e-5)


def test_checkerboard_support() -> None:
    ds = load("checkerboard")
    lp = ds.log_prob(torch.tensor([[0.5, 0.5], [0.5, -0.5], [-3.5, -3.5], [-3.5, 3.5], [4.5, 0.5]]))
    assert lp[0] == pytest.approx(-math.log(32)) and lp[2] == pytest.approx(-math.log(32))
    assert torch.isinf(lp[[1, 3, 4]]).all()


def _ks_projections(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest two-sample KS p-value over 6 projection directions (Bonferroni-corrected)."""
    pvals = []
    for ang in np.arange(6) * np.pi / 6:
        d = np.array([np.cos(ang), np.sin(ang)])
        pvals.append(stats.ks_2samp(a @ d, b @ d).pvalue)
    return min(1.0, 6 * min(pvals))


def test_swissroll_and_moons_follow_ffjord_recipes() -> None:
    # Independent references: sklearn generators with FFJORD's post-processing.
    ours = load("swissroll").sample(4000, generator=_gen(0)).numpy()
    ref = make_swiss_roll(4000, noise=1.0, random_state=0)[0][:, [0, 2]] / 5
    assert _ks_projections(ours, ref) > 1e-3
    ours = load("moons").sample(4000, generator=_gen(0)).numpy()
    ref = make_moons(4000, noise=0.1, random_state=0)[0] * 2 + np.array([-1, -0.2])
    assert _ks_projections(ours, ref) > 1e-3
    assert _ks_projections(ours * 1.1, ref) < 1e-6


def _ffjord_pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = rng.integers(num_classes, size=n)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = rotations.T.reshape((-1, 2, 2))
    return 2 * np.einsum("ti,tij->tj", features, rotations)


def test_pinwheel_moments_and_reference_recipe() -> None:
    x = load("pinwheel").sample(N_SAMPLES, generator=_gen(4)).double()
    r2 = x.pow(2).sum(1)
    # E|x|^2 = 4 (1 + 0.3^2 + 0.1^2) = 4.4 exactly; mean 0 by 5-fold symmetry; 5 standard errors.
    assert abs(r2.mean().item() - 4.4) < 5 * r2.std().item() / math.sqrt(len(x))
    assert (x.mean(0).abs() < 5 * x.std(0) / math.sqrt(len(x))).all()
    ref = _ffjord_pinwheel(4000, np.random.default_rng(0))
    assert _ks_projections(x[:4000].numpy(), ref) > 1e-3
    assert _ks_projections(x[:4000].numpy() @ np.array([[1.0, 0], [0, -1]]), ref) < 1e-6  # mirror image


# ---------------------------------------------------------------- ImageData and digits


def test_image_data_validation() -> None:
    x = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="x must be a float32"):
        ImageData("t", x.double())
    with pytest.raises(ValueError, match=r"x must have values in \[-1, 1\]"):
        ImageData("t", x + 2)
    with pytest.raises(ValueError, match="y must be an int64"):
        ImageData("t", x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="y must lie"):
        ImageData("t", x, torch.tensor([0, 1, 5]), num_classes=3)
    ds = ImageData("t", x, torch.tensor([0, 2, 1]))
    assert ds.num_classes == 3 and ds.event_shape == (1, 4, 4) and len(ds) == 3 and ds.kind == "image"
    sub = ds.subset([2, 0])
    assert torch.equal(sub.y, torch.tensor([1, 0])) and sub.num_classes == 3


def test_digits_values_and_splits() -> None:
    bunch = sk_digits()
    full = load("digits", split="all")
    assert isinstance(full, ImageData) and full.x.shape == (1797, 1, 8, 8) and full.num_classes == 10
    np.testing.assert_allclose(full.x[:, 0].numpy(), bunch.images / 8 - 1, atol=1e-6)
    assert torch.equal(full.y, torch.as_tensor(bunch.target))
    train, test = load("digits", split="train", seed=3), load("digits", split="test", seed=3)
    assert len(train) + len(test) == 1797 and len(test) == math.ceil(0.2 * 1797)
    # Together the whole set (as a multiset of rows: a few digits images are duplicates).
    rows = lambda d: sorted(map(tuple, d.x.flatten(1).tolist()))  # noqa: E731
    assert sorted(rows(train) + rows(test)) == rows(full)
    # Stratified: class proportions of test match the whole set to within one image per class.
    frac = torch.bincount(test.y, minlength=10) / torch.bincount(full.y, minlength=10)
    assert (frac - 0.2).abs().max() < 1.5 / 170
    assert torch.equal(load("digits", split="test", seed=3).x, test.x)
    assert not torch.equal(load("digits", split="test", seed=4).x, test.x)
    big = load("digits", split="test", seed=3, image_size=16)
    assert big.x.shape == (len(test), 1, 16, 16) and big.x.min() >= -1 and big.x.max() <= 1
    # Bilinear 2x upsampling keeps the image mean up to border effects.
    assert (big.x.mean((1, 2, 3)) - test.x.mean((1, 2, 3))).abs().max() < 0.05
    with pytest.raises(ValueError, match="split"):
        load("digits", split="val")
    with pytest.raises(ValueError, match="image_size"):
        load("digits", image_size=0)


# ---------------------------------------------------------------- fake on-disk files


def _write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _fake_mnist(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n, gz in (("train", 6, True), ("t10k", 4, False)):
        imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(root / f"{prefix}-images-idx3-ubyte", imgs, gz)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, gz)
        out[prefix] = (imgs, labels)
    return out


def test_mnist_idx_gz_and_raw(tmp_path: Path) -> None:
    files = _fake_mnist(tmp_path / "mnist", np.random.default_rng(0))
    train = load("mnist", root=tmp_path / "mnist", split="train")
    imgs, labels = files["train"]
    assert train.x.shape == (6, 1, 28, 28) and train.name == "mnist" and train.num_classes == 10
    np.testing.assert_allclose(train.x[:, 0].numpy(), imgs / 127.5 - 1, atol=1e-6)
    assert torch.equal(train.y, torch.as_tensor(labels, dtype=torch.long))
    test = load("mnist", root=str(tmp_path / "mnist"), split="test", image_size=14)
    assert test.x.shape == (4, 1, 14, 14)
    assert len(load("mnist", root=tmp_path / "mnist", split="all", limit=7)) == 7
    # torchvision's layout and Fashion-MNIST share the reader.
    _fake_mnist(tmp_path / "fm" / "FashionMNIST" / "raw", np.random.default_rng(1))
    assert len(load("fashion_mnist", root=tmp_path / "fm", split="test")) == 4


def test_mnist_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\(\.gz\) in .*nowhere.*download"):
        load("mnist", root=tmp_path / "nowhere")
    _fake_mnist(tmp_path, np.random.default_rng(0))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04garbage")
    with pytest.raises(ValueError, match="not an IDX file"):
        load("mnist", root=tmp_path, split="test")
    data = (tmp_path / "t10k-labels-idx1-ubyte").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(data[:-1])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28)), gz=False)
    with pytest.raises(ValueError, match="IDX header says"):
        load("mnist", root=tmp_path, split="test")


def _fake_cifar(folder: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, list[int]]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=3)]
        with open(folder / name, "wb") as fh:  # bytes keys, protocol 2: as the original python2 files
            pickle.dump({b"batch_label": b"fake", b"labels": labels, b"data": data}, fh, protocol=2)
        out[name] = (data, labels)
    return out


def test_cifar10_batches_and_tarball(tmp_path: Path) -> None:
    files = _fake_cifar(tmp_path / "c" / "cifar-10-batches-py", np.random.default_rng(0))
    train = load("cifar10", root=tmp_path / "c")
    assert train.x.shape == (15, 3, 32, 32) and train.num_classes == 10
    data, labels = files["data_batch_1"]
    # Row layout: 1024 red, then green, then blue values, each row-major 32x32.
    np.testing.assert_allclose(
        train.x[0, 1].numpy(), data[0, 1024:2048].reshape(32, 32) / 127.5 - 1, atol=1e-6
    )
    assert train.y[:3].tolist() == labels
    test = load("cifar10", root=tmp_path / "c", split="test")
    assert len(test) == 3 and test.y.tolist() == files["test_batch"][1]
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "c" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    (tmp_path / "t").mkdir()
    (tmp_path / "cifar-10-python.tar.gz").rename(tmp_path / "t" / "cifar-10-python.tar.gz")
    from_tar = load("cifar10", root=tmp_path / "t", split="all")
    assert len(from_tar) == 18 and torch.equal(from_tar.x[:15], train.x)


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("pwned",))


def test_cifar10_refuses_code_in_pickles_and_reports_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="data_batch_1 in .*cifar-10-python.tar.gz"):
        load("cifar10", root=tmp_path)
    _fake_cifar(tmp_path, np.random.default_rng(0))
    with open(tmp_path / "test_batch", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, fh)
    with pytest.raises(ValueError, match="refusing to unpickle builtins.print"):
        load("cifar10", root=tmp_path, split="test")


def test_svhn_mat(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    ds = load("svhn", root=tmp_path)
    assert ds.x.shape == (5, 3, 32, 32) and ds.y.tolist() == [0, 1, 2, 0, 9]
    np.testing.assert_allclose(ds.x[3].permute(1, 2, 0).numpy(), x[..., 3] / 127.5 - 1, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="test_32x32.mat in"):
        load("svhn", root=tmp_path, split="test")


def test_celeba_crop_resize_and_partition(tmp_path: Path) -> None:
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, colour in enumerate(colours):
        img = np.zeros((218, 178, 3), dtype=np.uint8)  # black border outside the centre 140x140 crop
        img[39:179, 19:159] = colour
        Image.fromarray(img).save(folder / f"{i + 1:06d}.jpg", quality=95)
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")
    train = load("celeba", root=tmp_path, image_size=16)
    assert train.x.shape == (2, 3, 16, 16) and train.y is None
    for img, colour in zip(train.x, colours[:2]):  # no black border survives the crop; JPEG tolerance
        target = torch.tensor(colour, dtype=torch.float32)[:, None, None] / 127.5 - 1
        assert (img - target).abs().max() < 0.1
    assert len(load("celeba", root=tmp_path, split="test", image_size=8)) == 1
    assert len(load("celeba", root=tmp_path, split="all", image_size=None, limit=2)) == 2
    with pytest.raises(FileNotFoundError, match="img_align_celeba"):
        load("celeba", root=tmp_path / "celeba" / "img_align_celeba")


def test_image_folder_labels_sizes_and_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(4):
            arr = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
            arrays[(cls, i)] = arr
    ds = load(tmp_path)
    assert ds.x.shape == (8, 3, 6, 5) and ds.classes == ("cat", "dog") and ds.y.tolist() == [0] * 4 + [1] * 4
    np.testing.assert_allclose(ds.x[5].permute(1, 2, 0).numpy(), arrays[("dog", 1)] / 127.5 - 1, atol=1e-6)
    grey = load("folder", root=tmp_path, channels=1, image_size=4, split="test", test_fraction=0.5)
    assert grey.x.shape == (4, 1, 4, 4) and sorted(grey.y.tolist()) == [0, 0, 1, 1]
    Image.fromarray(np.zeros((7, 7, 3), dtype=np.uint8)).save(tmp_path / "dog" / "odd.png")
    with pytest.raises(ValueError, match="odd.png.*image_size"):
        load(tmp_path)
    assert load(tmp_path, image_size=5).x.shape == (9, 3, 5, 5)
    flat = tmp_path / "cat"
    assert load(flat).y is None
    with pytest.raises(FileNotFoundError, match="nope does not exist"):
        load("folder", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no image files"):
        load(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist .*image folder or a .npz"):
        load(str(tmp_path / "nope"))


def test_npz_layouts_ranges_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=nhwc, labels=np.arange(6) % 3)
    ds = load(str(tmp_path / "a.npz"))
    assert ds.x.shape == (6, 3, 8, 8) and ds.y.tolist() == [0, 1, 2, 0, 1, 2] and ds.num_classes == 3
    np.testing.assert_allclose(ds.x.permute(0, 2, 3, 1).numpy(), nhwc / 127.5 - 1, atol=1e-6)
    nchw01 = rng.random((4, 1, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "b.npz", x=nchw01)
    np.testing.assert_allclose(load(tmp_path / "b.npz").x.numpy(), 2 * nchw01 - 1, atol=1e-6)
    sym = rng.uniform(-1, 1, size=(4, 5, 5)).astype(np.float32)
    np.savez(tmp_path / "c.npz", x=sym)
    np.testing.assert_allclose(
        load("npz", root=tmp_path / "c.npz", image_size=5).x[:, 0].numpy(), sym, atol=1e-6
    )
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 3, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="layout="):
        load(tmp_path / "d.npz")
    assert load(tmp_path / "d.npz", layout="NHWC").x.shape == (2, 3, 3, 4)
    np.savez(tmp_path / "e.npz", x=np.full((2, 4, 4), 7.0))
    with pytest.raises(ValueError, match="value_range"):
        load(tmp_path / "e.npz")
    assert load(tmp_path / "e.npz", value_range=(0, 14)).x.eq(0).all()
    np.savez(tmp_path / "f.npz", x=nhwc, y=np.ones(5, dtype=np.int64))
    with pytest.raises(ValueError, match="labels 'y' must be"):
        load(tmp_path / "f.npz")
    with pytest.raises(FileNotFoundError, match="expected the file missing.npz in"):
        load(tmp_path / "missing.npz")
