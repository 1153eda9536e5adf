"""Metrics against exact values, closed forms and independent reference implementations."""

import inspect
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg
from sklearn.metrics import average_precision_score, precision_recall_curve
from torch import distributions as D

from symgen.metrics import (
    METRIC_KINDS,
    auprc,
    average_precision,
    compute_metric,
    frechet_distance,
    grid_kl,
    grid_log_likelihood,
    image_metrics,
    kernel_distance,
    masked_mse,
    mmd2_rbf,
    mse,
    precision_recall,
)
from symgen.metrics import features as feat
from symgen.registry import METRICS

# ----------------------------------------------------------------------------- 2-D densities


def mixture() -> D.MixtureSameFamily:
    means = torch.tensor([[-1.5, 0.0], [1.5, 1.0]], dtype=torch.float64)
    covs = torch.stack([torch.diag(torch.tensor([0.25, 1.0])), 0.6 * torch.tensor([[1.0, 0.6], [0.6, 1.0]])])
    comps = D.MultivariateNormal(means, covs.double())
    return D.MixtureSameFamily(D.Categorical(torch.tensor([0.3, 0.7], dtype=torch.float64)), comps)


def test_grid_log_likelihood_of_known_mixture_within_001_nats():
    torch.manual_seed(0)
    p = mixture()
    x_test = p.sample((500,))
    exact = float(p.log_prob(x_test).mean())

    def unnormalised(z: torch.Tensor) -> torch.Tensor:
        return p.log_prob(z.double()) + 3.7  # unknown constant, removed by the quadrature

    value, err = grid_log_likelihood(unnormalised, x_test, ((-7, 7), (-7, 7)), resolution=(128, 256))
    assert abs(value - exact) < 0.01
    assert err < 0.01


def test_grid_quadrature_error_estimate_flags_coarse_grids():
    narrow = D.MultivariateNormal(torch.tensor([0.1, 0.2]), 0.05**2 * torch.eye(2))
    x = torch.tensor([[0.1, 0.2]])
    value, err = grid_log_likelihood(narrow.log_prob, x, ((-1, 1), (-1, 1)), resolution=(4, 8))
    true_error = abs(value - float(narrow.log_prob(x)))
    assert err > 0.5 and true_error > 0.05  # a 0.25-wide cell cannot resolve a 0.05-wide bump


def test_grid_kl_matches_closed_form_gaussian_kl():
    p = D.MultivariateNormal(torch.zeros(2), torch.eye(2))
    q = D.MultivariateNormal(torch.tensor([0.5, -0.3]), torch.tensor([[2.25, 0.3], [0.3, 1.0]]))
    exact = float(D.kl_divergence(p, q))
    assert grid_kl(q.log_prob, p.log_prob, ((-9, 9), (-9, 9)), resolution=256) == pytest.approx(
        exact, abs=1e-3
    )
    assert grid_kl(p.log_prob, p.log_prob, ((-9, 9), (-9, 9)), resolution=64) == pytest.approx(0.0, abs=1e-12)


def _mmd2_loop(x: np.ndarray, y: np.ndarray, hs) -> float:
    """Reference: unbiased MMD^2 (Gretton et al. 2012, Eq. 3) written with explicit sums."""

    def k(a, b):
        return np.mean([np.exp(-np.sum((a - b) ** 2) / (2 * h * h)) for h in hs])

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def _gaussian_mmd2(shift: float, hs) -> float:
    """Closed form of MMD^2 between N(0, I_2) and N((shift, 0), I_2) for the averaged RBF kernel."""

    def expected_k(delta2: float, var: float, h: float) -> float:  # E exp(-|z|^2/2h^2), z ~ N(delta, var I_2)
        return (1 + var / h**2) ** -1 * math.exp(-0.5 * delta2 / (var + h**2))

    return float(np.mean([2 * expected_k(0, 2, h) - 2 * expected_k(shift**2, 2, h) for h in hs]))


def test_mmd2_matches_loop_reference_and_closed_form():
    torch.manual_seed(0)
    hs = (0.5, 1.0, 2.0)
    x, y = torch.randn(15, 2, dtype=torch.float64), torch.randn(12, 2, dtype=torch.float64) + 0.3
    assert mmd2_rbf(x, y, hs) == pytest.approx(_mmd2_loop(x.numpy(), y.numpy(), hs), rel=1e-9)

    x, y = torch.randn(1000, 2), torch.randn(1000, 2) + torch.tensor([1.0, 0.0])
    # MC standard deviation of the estimate at n = 1000 is about 0.009 (measured over 20 seeds).
    assert mmd2_rbf(x, y, hs) == pytest.approx(_gaussian_mmd2(1.0, hs), abs=0.035)
    assert abs(mmd2_rbf(x, torch.randn(1000, 2), hs)) < 0.005  # null: s.d. about 0.0007
    assert mmd2_rbf(x, y) > 0.02  # default median-heuristic bandwidths


# ----------------------------------------------------------------------------- feature-space distances


def _scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def test_frechet_distance_matches_scipy_and_gaussian_closed_form():
    torch.manual_seed(0)
    a = torch.randn(400, 5, dtype=torch.float64)
    b = torch.randn(300, 5, dtype=torch.float64) @ torch.diag(
        torch.tensor([1.0, 2, 0.5, 1, 1], dtype=torch.float64)
    )
    assert frechet_distance(a, b) == pytest.approx(_scipy_frechet(a.numpy(), b.numpy()), rel=1e-6)

    # Gaussians N(0, I) and N(mu, S): FD = |mu|^2 + tr(I + S - 2 S^{1/2}); estimation error ~ d / sqrt(n).
    s_half = torch.tensor([[1.5, 0.4, 0.0], [0.4, 1.0, 0.2], [0.0, 0.2, 0.7]], dtype=torch.float64)
    mu = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)
    exact = float(mu.square().sum() + torch.trace(torch.eye(3) + s_half @ s_half - 2 * s_half))
    x, y = (
        torch.randn(20000, 3, dtype=torch.float64),
        torch.randn(20000, 3, dtype=torch.float64) @ s_half + mu,
    )
    assert frechet_distance(x, y) == pytest.approx(exact, abs=0.05)


def _quantise_like_old_torchmetrics(f: torch.Tensor) -> torch.Tensor:
    """What ``FrechetInceptionDistance(normalize=True)`` did to custom features before torchmetrics 1.4."""
    return (f * 255).byte().double()


def test_frechet_distance_does_not_quantise_small_or_negative_features():
    # Features with spread ~1e-3 around negative means: a uint8 cast (``(f * 255).byte()``) maps them all
    # to a few integer levels (wrapping the negatives), which changes the distance completely.
    torch.manual_seed(1)
    a = torch.randn(300, 4, dtype=torch.float64) * 1e-3 - 2e-3
    b = torch.randn(300, 4, dtype=torch.float64) * 2e-3 - 1e-3
    reference = _scipy_frechet(a.numpy(), b.numpy())
    quantised = _scipy_frechet(
        _quantise_like_old_torchmetrics(a).numpy(), _quantise_like_old_torchmetrics(b).numpy()
    )
    assert abs(quantised - reference) > 1e3 * reference  # the check below can tell the two apart
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-6)


def test_classifier_trains_on_the_digits_training_split_only():
    from symgen.data.digits import load_digits

    x_train, y_train, x_test, y_test = feat.classifier_splits("digits")
    rows = {tuple(r.tolist()) for r in load_digits("train").x.reshape(-1, 64)}
    assert {tuple(r.tolist()) for r in x_train.reshape(-1, 64)} == rows
    torch.testing.assert_close(x_test, load_digits("test").x)  # fd_clf's reference images
    torch.testing.assert_close(y_test, load_digits("test").y)
    assert len(x_train) == len(y_train) == 1797 - len(x_test)


def test_kernel_distance_matches_numpy_polynomial_mmd():
    torch.manual_seed(0)
    a, b = torch.randn(60, 4, dtype=torch.float64), torch.randn(60, 4, dtype=torch.float64) + 0.5
    an, bn, m = a.numpy(), b.numpy(), 60
    kxx, kyy, kxy = ((u @ v.T / 4 + 1) ** 3 for u, v in ((an, an), (bn, bn), (an, bn)))
    ref = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
    mean, std = kernel_distance(a, b, subsets=3, subset_size=60)  # full subsets: every draw equals ref
    assert mean == pytest.approx(ref, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def _pr_reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    def radii(x):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the point itself

    def coverage(query, ref, r):
        return np.mean([any(np.linalg.norm(q - ref[i]) <= r[i] for i in range(len(ref))) for q in query])

    return coverage(fake, real, radii(real)), coverage(real, fake, radii(fake))


def test_precision_recall_matches_reference_and_detects_mode_collapse():
    torch.manual_seed(0)
    real, fake = torch.randn(40, 3), torch.randn(30, 3) * 1.5 + 0.5
    expected = _pr_reference(real.double().numpy(), fake.double().numpy(), k=3)
    assert precision_recall(real, fake, k=3, chunk=7) == pytest.approx(expected, abs=1e-12)

    signs = torch.where(torch.rand(600, 1) < 0.5, -1.0, 1.0)
    real = torch.randn(600, 2) + 10 * signs * torch.tensor([1.0, 0.0])
    fake = torch.randn(300, 2) + torch.tensor([10.0, 0.0])  # one of the two modes only
    precision, recall = precision_recall(real, fake)
    assert precision > 0.95
    assert 0.35 < recall < 0.6  # half the real mass is covered; k-NN balls add a little at the edges


# ----------------------------------------------------------------------------- classifier features


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("symgen_cache")
        mp.setenv("SYMGEN_CACHE", str(root))
        yield root


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    x, _ = feat.CLASSIFIER_DATASETS["digits"]()
    return x


def test_classifier_is_trained_once_cached_with_accuracy_and_reloaded(digits_cache, digits):
    extractor = feat.get_extractor("classifier:digits")
    record = digits_cache / "classifiers" / "digits.json"
    meta = json.loads(record.read_text())
    assert meta["test_accuracy"] > 0.95 and meta["test_accuracy"] == extractor.meta["test_accuracy"]
    stamp = record.stat().st_mtime_ns
    reloaded = feat.load_classifier("digits")  # from disk, not retrained
    assert record.stat().st_mtime_ns == stamp
    torch.testing.assert_close(reloaded(digits[:50]), extractor(digits[:50]))
    with torch.no_grad():
        accuracy = (reloaded.net(digits).argmax(1) == feat.CLASSIFIER_DATASETS["digits"]()[1]).float().mean()
    assert accuracy > 0.95


def test_classifier_accepts_other_sizes_and_rgb(digits_cache, digits):
    extractor = feat.get_extractor("classifier:digits")
    x = digits[:64]
    big_rgb = F.interpolate(x, scale_factor=3, mode="nearest").expand(-1, 3, -1, -1)  # (64, 3, 24, 24)
    torch.testing.assert_close(extractor(big_rgb), extractor(x), rtol=1e-5, atol=1e-5)
    assert extractor(F.interpolate(x, size=(5, 5), mode="area")).shape == (64, extractor.num_features)


def test_fd_clf_of_a_set_with_itself_is_zero_and_grows_with_shift(digits_cache, digits):
    torch.manual_seed(0)
    real = digits[:600]
    assert abs(compute_metric("fd_clf", {"real": real, "fake": real})["fd_clf"]) < 1e-6
    values = [
        image_metrics(real, (real + s).clamp(-1, 1), "classifier:digits", ("fd",))["fd"]
        for s in (0.1, 0.3, 0.6)
    ]
    assert 0 < values[0] < values[1] < values[2]
    other_half = image_metrics(real, digits[600:1200], "classifier:digits", ("fd", "pr"))
    assert other_half["fd"] < values[1]  # unseen digits are closer than brightened ones
    assert other_half["precision"] > 0.7 and other_half["recall"] > 0.7


def test_kid_and_pr_metrics_report_expected_keys(digits_cache, digits):
    out = compute_metric(
        "kid_clf", {"real": digits[:200], "fake": digits[200:400]}, subsets=5, subset_size=100
    )
    assert set(out) == set(METRIC_KINDS["kid_clf"].outputs)
    out = compute_metric("pr_clf", {"real": digits[:200], "fake": digits[200:400]})
    assert set(out) == set(METRIC_KINDS["pr_clf"].outputs)
    assert 0 <= out["precision_clf"] <= 1 and 0 <= out["recall_clf"] <= 1


def test_inception_without_optional_package_or_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMGEN_CACHE", str(tmp_path))
    monkeypatch.delenv("SYMGEN_INCEPTION_WEIGHTS", raising=False)
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(ModuleNotFoundError, match="pip install torch-fidelity"):
            feat.get_extractor("inception")
    else:
        with pytest.raises(FileNotFoundError, match="SYMGEN_INCEPTION_WEIGHTS"):
            feat.get_extractor("inception")


def test_bad_extractor_spec_raises_value_error():
    with pytest.raises(ValueError, match="classifier:<dataset>"):
        feat.get_extractor("vgg")
    with pytest.raises(ValueError, match="no classifier dataset"):
        feat.train_classifier("cifar1000")


# ----------------------------------------------------------------------------- reconstruction, anomaly


def test_masked_mse_matches_explicit_sums():
    torch.manual_seed(0)
    x, x_hat = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    mask = torch.rand(4, 1, 5, 5) >= 0.3  # 1 = observed
    err, m = ((x - x_hat) ** 2).numpy(), np.broadcast_to(~mask.numpy(), x.shape)  # m: hidden
    masked, unmasked = masked_mse(x, x_hat, mask)
    assert masked == pytest.approx(err[m].mean(), rel=1e-12)
    assert unmasked == pytest.approx(err[~m].mean(), rel=1e-12)
    assert mse(x, x_hat) == pytest.approx(err.mean(), rel=1e-12)
    assert masked_mse(x, x_hat, mask.float()) == pytest.approx((masked, unmasked))
    with pytest.raises(ValueError, match="broadcast"):
        masked_mse(x, x_hat, torch.ones(2, 5))


def _auprc_reference(scores: np.ndarray, labels: np.ndarray) -> float:
    """Trace (recall, precision) as the threshold decreases from (0, 1) to the first point of full recall
    and sum the trapezoids along the way."""
    points = [(0.0, 1.0)]
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        tp = np.sum(predicted & (labels == 1))
        points.append((tp / labels.sum(), tp / predicted.sum()))
        if tp == labels.sum():
            break
    r, p = np.array(points).T
    return float(np.sum(np.diff(r) * (p[1:] + p[:-1]) / 2))


def test_auprc_and_average_precision_match_references():
    rng = np.random.default_rng(0)
    labels = (rng.random(300) < 0.2).astype(int)
    scores = np.round(rng.normal(size=300) + 1.5 * labels, 1)  # rounding creates ties
    precision, recall, _ = precision_recall_curve(labels, scores)
    assert auprc(torch.from_numpy(scores), torch.from_numpy(labels)) == pytest.approx(
        float(np.sum(np.diff(recall[::-1]) * (precision[::-1][1:] + precision[::-1][:-1]) / 2)), rel=1e-12
    )
    assert auprc(scores, labels) == pytest.approx(_auprc_reference(scores, labels), rel=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        average_precision_score(labels, scores), rel=1e-12
    )
    # Worked example of the scikit-learn docs: AP = (1/2)(1) + (1/2)(2/3) = 0.8333.
    assert average_precision([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="both classes"):
        auprc([0.1, 0.2], [1, 1])


# ----------------------------------------------------------------------------- registry contract


def test_metric_kinds_match_registered_signatures():
    assert set(METRIC_KINDS) <= set(METRICS.names())
    for name, spec in METRIC_KINDS.items():
        params = inspect.signature(METRICS.get(name)).parameters.values()
        required = {p.name for p in params if p.default is inspect.Parameter.empty}
        optional = {p.name for p in params if p.default is not inspect.Parameter.empty}
        assert required == set(spec.inputs), name
        assert optional == set(spec.options), name


def test_compute_metric_dispatches_and_names_missing_inputs():
    x = torch.randn(2, 3)
    out = compute_metric("mse", {"x": x, "x_hat": x + 1, "labels": None})
    assert out == {"mse": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="missing mask"):
        compute_metric("mse_masked", {"x": x, "x_hat": x})
    with pytest.raises(ValueError, match="unknown"):
        compute_metric("mse", {"x": x, "x_hat": x}, bins=3)
