"""Tests for mnist-5k-rotation: the rotation itself (direction, exactness at right angles), the seeded angles and
targets, and that the digits and split are mnist-5k's."""

from __future__ import annotations

import pytest
import torch

from lth.datasets import DATASETS, MNIST_5K_SIZES, Splits, load_dataset
from lth.datasets.mnist_5k import mnist_5k_digits, mnist_5k_parts, mnist_5k_split
from lth.datasets.rotation import angles, rotate
from lth.datasets.splits import channel_stats, normalize

KEYS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return mnist_5k_digits()[0][:50].to(torch.float32)


@pytest.fixture(scope="module")
def rotated() -> Splits:
    return load_dataset("mnist-5k-rotation", "unused-root")


def test_right_angles_equal_rot90(digits: torch.Tensor) -> None:
    n = len(digits)
    quarter = rotate(digits, torch.full((n,), 90.0))
    torch.testing.assert_close(quarter, torch.rot90(digits, 1, dims=(-2, -1)), atol=1e-3, rtol=0)
    back = rotate(digits, torch.full((n,), -90.0))
    torch.testing.assert_close(back, torch.rot90(digits, -1, dims=(-2, -1)), atol=1e-3, rtol=0)
    torch.testing.assert_close(rotate(digits, torch.zeros(n)), digits, atol=1e-3, rtol=0)


def test_positive_angles_turn_counter_clockwise_on_screen() -> None:
    """A dot at the top middle (row 0 is the top) goes to the left middle under +90, to the right under -90."""
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 2, 14] = 1.0
    left = rotate(dot, torch.tensor([90.0]))[0, 0]
    right = rotate(dot, torch.tensor([-90.0]))[0, 0]
    assert divmod(int(left.argmax()), 28) == (13, 2)
    assert divmod(int(right.argmax()), 28) == (14, 25)
    # 45 degrees: up and to the left
    row, col = divmod(int(rotate(dot, torch.tensor([45.0]))[0, 0].argmax()), 28)
    assert row < 13 and col < 13


def test_registered_as_regression(rotated: Splits) -> None:
    spec = DATASETS["mnist-5k-rotation"]
    assert (spec.task, spec.num_outputs, spec.input_shape, spec.train_size) == ("regression", 1, (1, 28, 28), 4000)
    assert spec.target_unit == ("degrees", 90.0)
    assert rotated.task == "regression" and rotated.num_outputs == 1 and rotated.name == "mnist-5k-rotation"
    sizes = tuple(len(getattr(rotated, f"{split}_y")) for split in ("train", "val", "test"))
    assert sizes == MNIST_5K_SIZES == (4000, 500, 500)
    for split in ("train", "val", "test"):
        y = getattr(rotated, f"{split}_y")
        assert y.dtype == torch.float32 and y.shape == (len(y), 1)
        assert float(y.min()) >= -1 and float(y.max()) <= 1
    assert float(rotated.train_y.min()) < -0.95 and float(rotated.train_y.max()) > 0.95  # the whole range is used
    assert abs(float(rotated.train_x.mean())) < 1e-4 and abs(float(rotated.train_x.std(unbiased=False)) - 1) < 1e-3


def test_targets_are_the_seeded_angles_over_90(rotated: Splits) -> None:
    degrees = angles(5000)
    for split, idx in zip(("train", "val", "test"), mnist_5k_split()):
        torch.testing.assert_close(getattr(rotated, f"{split}_y")[:, 0], degrees[idx] / 90, atol=0, rtol=0)
    assert not torch.equal(angles(5000), angles(5000, seed=2))


def test_same_digits_and_split_as_mnist_5k(rotated: Splits) -> None:
    """Rotating mnist-5k's own (raw) split digits by the targets' angles gives the dataset's images."""
    parts = mnist_5k_parts()
    turned = {split: rotate(parts[split][0].to(torch.float32), getattr(rotated, f"{split}_y")[:, 0] * 90)
              for split in ("train", "test")}
    mean, std = channel_stats(turned["train"])
    torch.testing.assert_close(normalize(turned["test"], mean, std), rotated.test_x, atol=1e-3, rtol=0)


def test_deterministic(rotated: Splits) -> None:
    torch.manual_seed(7)  # the global RNG must not matter
    again = load_dataset("mnist-5k-rotation", "elsewhere")
    for key in KEYS:
        assert torch.equal(getattr(again, key), getattr(rotated, key)), key


def test_regression_targets_cannot_become_classes() -> None:
    from lth.core.errors import LthError

    with pytest.raises(LthError):
        load_dataset("mnist-5k-rotation", "unused-root", task="classification")
