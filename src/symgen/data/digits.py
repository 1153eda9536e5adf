"""scikit-learn's bundled 8x8 handwritten digits as an :class:`~symgen.data.base.ImageData` (offline).

1797 grey-scale images of the digits 0-9 (UCI "Optical Recognition of Handwritten Digits", pixel values
0..16) ship inside scikit-learn, so this dataset needs no download; it is the embedded image dataset of
the demo and of the tests. Pixels are mapped to ``[-1, 1]`` by ``v / 8 - 1``.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as _sklearn_digits

from symgen.data.base import (
    ImageData,
    check_image_size,
    check_split,
    resize_images,
    split_indices,
    to_unit_range,
)
from symgen.registry import DATASETS

__all__ = ["load_digits"]


@DATASETS.register("digits", "scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes)")
def load_digits(
    split: str = "train", image_size: int | None = None, seed: int = 0, test_fraction: float = 0.2
) -> ImageData:
    """The 8x8 digits, shape ``(N, 1, 8, 8)`` (or ``image_size`` square), values in ``[-1, 1]``, labels 0-9.

    Arguments:
        split: ``"train"``, ``"test"`` (a stratified split of fraction ``test_fraction``, deterministic given
            ``seed``) or ``"all"`` (all 1797 images).
        image_size: ``None`` keeps 8x8; an integer resizes (bilinear, antialiased).
        seed: seed of the train/test split.
        test_fraction: fraction of images in the test split.
    """
    check_split(split, ("train", "test", "all"), "digits")
    check_image_size(image_size)
    bunch = _sklearn_digits()
    labels = bunch.target
    idx = split_indices(len(labels), split, seed, test_fraction, labels)
    x = to_unit_range(bunch.images[idx], max_value=16.0)[:, None]
    y = torch.as_tensor(labels[idx], dtype=torch.int64)
    return ImageData("digits", resize_images(x, image_size), y, num_classes=10)
