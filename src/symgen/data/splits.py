r"""Data splits of evaluation protocols that are not a dataset's own train/test split.

* :func:`anomaly_splits` -- the held-out-class protocol of anomaly detection (LFBM paper Sec. 4.4,
  Table 4; Zenati et al. 2018; Pang et al. 2020): one class is the anomaly, the normal images are split
  80 / 20, training uses the 80% (minus a validation share for model selection), and the test set is the
  other 20% of normal images plus every anomalous image.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["anomaly_splits"]


def anomaly_splits(
    full: Any, holdout_class: int, seed: int = 0, train_fraction: float = 0.8, val_fraction: float = 0.1
) -> tuple[Any, Any, Any]:
    """Split a labelled dataset into ``(train, val, test)`` for the held-out-class protocol.

    Arguments:
        full: an ``ImageData`` with labels (every image of the dataset).
        holdout_class: the anomalous class.
        seed: seed of the shuffle of the normal images.
        train_fraction: share of the normal images used for training + validation (0.8 in the papers).
        val_fraction: share of that part kept for validation (model selection).

    Returns:
        ``train`` and ``val`` hold only normal images; ``test`` holds the other normal images and every
        image of ``holdout_class``. Index sets are disjoint; each split keeps the dataset's order.
    """
    y = getattr(full, "y", None)
    if y is None:
        raise ValueError("anomaly_splits needs a labelled dataset (ImageData with y)")
    classes = torch.unique(y).tolist()
    if holdout_class not in classes:
        raise ValueError(
            f"holdout_class must be one of the dataset's classes {classes}, got {holdout_class!r}"
        )
    if not 0 < train_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError(
            f"need 0 < train_fraction < 1 and 0 <= val_fraction < 1, got {train_fraction}, {val_fraction}"
        )
    normal = torch.nonzero(y != holdout_class).squeeze(1)
    anomalous = torch.nonzero(y == holdout_class).squeeze(1)
    perm = normal[torch.randperm(len(normal), generator=torch.Generator().manual_seed(int(seed)))]
    n_fit = int(train_fraction * len(normal))
    n_val = int(round(val_fraction * n_fit))
    val_idx, train_idx, test_normal = perm[:n_val], perm[n_val:n_fit], perm[n_fit:]
    test_idx = torch.cat([test_normal, anomalous])
    return tuple(full.subset(torch.sort(i).values) for i in (train_idx, val_idx, test_idx))  # type: ignore[return-value]
