"""Tests of symgen.data.masks: hole geometry against direct construction, randomness against its law."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from symgen.data.masks import (
    OcclusionSpec,
    apply_mask,
    center_square,
    check_mask,
    occlusion_mask,
    random_square,
    salt_and_pepper,
)


@pytest.mark.parametrize(("h", "w", "size"), [(8, 8, 4), (9, 7, 3), (64, 64, 40), (5, 5, 0), (4, 6, 4)])
def test_center_square_matches_slicing(h: int, w: int, size: int) -> None:
    m = center_square((3, 2, h, w), size)
    expected = torch.ones(3, 1, h, w)
    top, left = (h - size) // 2, (w - size) // 2
    expected[:, :, top : top + size, left : left + size] = 0
    assert m.dtype == torch.float32 and torch.equal(m, expected)
    assert center_square((3, 2, h, w), size, dtype=torch.bool).dtype == torch.bool


def test_random_square_is_one_square_at_uniform_position() -> None:
    torch.manual_seed(0)
    n, h, w, size = 3000, 8, 10, 4
    m = random_square((n, 3, h, w), size, seed=1)
    assert m.shape == (n, 1, h, w)
    missing = m[:, 0] == 0
    assert (missing.sum((1, 2)) == size * size).all()
    rows, cols = missing.any(2), missing.any(1)
    top, left = rows.float().argmax(1), cols.float().argmax(1)
    assert (rows.sum(1) == size).all() and (cols.sum(1) == size).all()  # contiguous size x size block
    rebuilt = torch.ones_like(m)
    for i in range(0, n, 97):
        rebuilt[i, 0, top[i] : top[i] + size, left[i] : left[i] + size] = 0
        assert torch.equal(rebuilt[i], m[i])
    # Top-left corner uniform over the (h-size+1) x (w-size+1) admissible positions.
    counts = np.bincount((top * (w - size + 1) + left).numpy(), minlength=(h - size + 1) * (w - size + 1))
    assert len(counts) == (h - size + 1) * (w - size + 1)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_random_masks_are_seedable() -> None:
    shape = (4, 1, 6, 6)
    assert torch.equal(random_square(shape, 2, seed=3), random_square(shape, 2, seed=3))
    gen = torch.Generator().manual_seed(3)
    assert torch.equal(random_square(shape, 2, generator=gen), random_square(shape, 2, seed=3))
    assert not torch.equal(salt_and_pepper(shape, 0.5, seed=3), salt_and_pepper(shape, 0.5, seed=4))
    assert torch.equal(salt_and_pepper(shape, 0.5, seed=3), salt_and_pepper(shape, 0.5, seed=3))


@pytest.mark.parametrize("p", [0.3, 0.5, 0.7])
def test_salt_and_pepper_rate(p: float) -> None:
    n, h, w = 200, 16, 16
    m = salt_and_pepper((n, 3, h, w), p, seed=0)
    assert m.shape == (n, 1, h, w) and set(m.unique().tolist()) <= {0.0, 1.0}
    total = n * h * w
    missing = (m == 0).sum().item()
    # Binomial(total, p): 5 standard deviations.
    assert abs(missing - p * total) < 5 * math.sqrt(total * p * (1 - p))


def test_salt_and_pepper_exact_count_and_uniform_positions() -> None:
    n, h, w, p = 2000, 5, 5, 0.3
    m = salt_and_pepper((n, 1, h, w), p, exact=True, seed=0, dtype=torch.bool)
    assert m.dtype == torch.bool
    assert ((~m).sum((1, 2, 3)) == round(p * h * w)).all()
    per_pixel = (~m).sum(0).flatten().numpy()  # each pixel missing with prob k / (h w)
    assert stats.chisquare(per_pixel).pvalue > 1e-3


def test_salt_and_pepper_edge_rates() -> None:
    assert salt_and_pepper((2, 1, 3, 3), 0.0, seed=0).eq(1).all()
    assert salt_and_pepper((2, 1, 3, 3), 1.0, seed=0).eq(0).all()
    assert salt_and_pepper((2, 1, 3, 3), 1.0, exact=True, seed=0).eq(0).all()


def test_apply_mask_and_check_mask() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    m = center_square(x.shape, 2)
    y = apply_mask(x, m, fill=-1.0)
    assert torch.equal(y[:, :, 1:3, 1:3], torch.full((2, 3, 2, 2), -1.0))
    keep = m.expand_as(x).bool()
    assert torch.equal(y[keep], x[keep])
    assert torch.equal(apply_mask(x, m.bool()), x * m)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 1, 4, 4\)"):
        apply_mask(x, torch.ones(2, 1, 4, 5))
    with pytest.raises(ValueError, match="only 0 .* and 1"):
        check_mask(torch.full((2, 1, 4, 4), 0.5), x)
    with pytest.raises(ValueError, match="x must be"):
        check_mask(m, x[0])


def test_mask_argument_validation() -> None:
    with pytest.raises(ValueError, match="shape must be"):
        center_square((4, 4), 2)
    with pytest.raises(ValueError, match="size must be"):
        center_square((1, 1, 4, 4), 5)
    with pytest.raises(ValueError, match="size must be"):
        random_square((1, 1, 4, 4), -1)
    with pytest.raises(ValueError, match="p must be"):
        salt_and_pepper((1, 1, 4, 4), 1.5)
    with pytest.raises(ValueError, match="either generator or seed"):
        salt_and_pepper((1, 1, 4, 4), 0.5, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="occlusion kind must be one of"):
        OcclusionSpec(kind="circle")


def test_one_mask_convention_everywhere() -> None:
    """1 = observed in masks, occlusions and the masked MSE (hidden pixels are where the mask is 0)."""
    from symgen.metrics.recon import masked_mse

    x = torch.zeros(2, 1, 8, 8)
    m = center_square(x.shape, 4)
    occ = occlusion_mask(x, OcclusionSpec(kind="center", size=0.5))
    assert torch.equal(m, occ) and m.sum() == 2 * (64 - 16)
    x_hat = x + (1 - m)  # wrong exactly on the hidden square
    hidden, observed = masked_mse(x, x_hat, m)
    assert hidden == 1.0 and observed == 0.0
