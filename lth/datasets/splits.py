"""A dataset as plain tensors on the training device: train / validation / test inputs and targets.

Inputs are float tensors (N, ...) of any example shape (flat vectors, images (C, H, W), sequences
(C, T)); targets are in the form of the dataset's task (lth.tasks): int64 class labels (N,) or float
targets (N, outputs). The validation set is held out of the training set with one seeded permutation
(`SPLIT_SEED`), so every run and every seed shares the same validation and test sets, and inputs are
normalised with statistics of the training split alone, so nothing leaks from validation or test data.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Sequence

import torch
from torch import Tensor

from lth.core.errors import LthError

SPLIT_SEED = 0
"""Seed of the one permutation that decides the validation (and, for mnist-5k, test) hold-out."""

VALIDATION_SIZE = 5_000
"""Examples held out of a full-size training set for validation (the paper's 55k/5k MNIST split)."""

SMALL_TRAIN_SET = 10_000
"""Training sets smaller than this hold out `SMALL_HOLDOUT_FRACTION` instead."""

SMALL_HOLDOUT_FRACTION = 0.1

TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
SPLIT_NAMES = ("train", "val", "test")


@dataclass(eq=False, repr=False)
class Splits:
    """Train/validation/test tensors of one dataset, normalised; targets in the form of `task`."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_outputs: int  # classes (classification) or target columns (regression): the network's outputs
    augment: bool  # True for CIFAR: random crop (pad 4) + horizontal flip at training time
    task: str = "classification"

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Catch inconsistent tensors at construction, not as a shape error deep inside training."""
        from lth.tasks import TASKS

        if not isinstance(self.name, str):
            raise LthError(f"dataset splits: 'name' must be a string, got {type(self.name).__name__}")
        if not isinstance(self.num_outputs, int) or isinstance(self.num_outputs, bool) or self.num_outputs < 1:
            raise LthError(f"dataset '{self.name}': 'num_outputs' must be a positive int, got {self.num_outputs!r}")
        if not isinstance(self.augment, bool):
            raise LthError(f"dataset '{self.name}': 'augment' must be a bool, got {self.augment!r}")
        if self.task not in TASKS:
            raise LthError(f"dataset '{self.name}': unknown task {self.task!r}; valid: {', '.join(TASKS)}")
        example_shape = None
        for split in SPLIT_NAMES:
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            for key, t in ((f"{split}_x", x), (f"{split}_y", y)):
                if not isinstance(t, Tensor):
                    raise LthError(f"dataset '{self.name}': '{key}' must be a tensor, got {type(t).__name__}")
            if x.dim() < 2 or not x.is_floating_point():
                raise LthError(f"dataset '{self.name}': '{split}_x' must be a float (N, ...) tensor, "
                               f"got {x.dtype} {tuple(x.shape)}")
            self._check_targets(split, y)
            if x.shape[0] != y.shape[0]:
                raise LthError(f"dataset '{self.name}': {split} has {x.shape[0]} inputs but {y.shape[0]} targets")
            if example_shape is not None and tuple(x.shape[1:]) != example_shape:
                raise LthError(f"dataset '{self.name}': {split} inputs are {tuple(x.shape[1:])}, train inputs are "
                               f"{example_shape}")
            example_shape = tuple(x.shape[1:])
        if self.augment and len(example_shape) != 3:
            raise LthError(f"dataset '{self.name}': crop-and-flip augmentation needs (C, H, W) images, "
                           f"inputs are {example_shape}")

    def _check_targets(self, split: str, y: Tensor) -> None:
        if self.task == "classification":
            if y.dim() != 1 or y.dtype != torch.int64:
                raise LthError(f"dataset '{self.name}': '{split}_y' must be an int64 (N,) tensor of class labels, "
                               f"got {y.dtype} {tuple(y.shape)}")
        elif y.dim() != 2 or not y.is_floating_point() or y.shape[1] != self.num_outputs:
            raise LthError(f"dataset '{self.name}': '{split}_y' must be a float (N, {self.num_outputs}) tensor of "
                           f"regression targets, got {y.dtype} {tuple(y.shape)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example: what a model's first layer must accept."""
        return tuple(int(d) for d in self.train_x.shape[1:])

    def to(self, device: torch.device | str) -> Splits:
        """A new Splits with every tensor on `device` (move once, then index batches without copies)."""
        moved = {key: getattr(self, key).to(device) for key in TENSOR_FIELDS}
        return Splits(name=self.name, num_outputs=self.num_outputs, augment=self.augment, task=self.task, **moved)

    def state(self) -> dict[str, Any]:
        """A plain dict (CPU tensors, str, int, bool) for torch.save; loadable with torch.load(weights_only=True).

        Tensors go to the CPU so the file loads on a machine without the device it was made on.
        """
        state: dict[str, Any] = {"name": self.name, "num_outputs": self.num_outputs, "augment": self.augment,
                                 "task": self.task}
        state.update({key: getattr(self, key).cpu() for key in TENSOR_FIELDS})
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Splits:
        """Rebuild from `state()`; a missing key or a wrong type raises LthError naming it. A file written before
        tasks existed (classes as 'num_classes') reads as classification."""
        if not isinstance(state, dict):
            raise LthError(f"dataset splits: expected a dict, got {type(state).__name__}")
        if "num_outputs" not in state and "num_classes" in state:
            state = {**state, "num_outputs": state["num_classes"], "task": "classification"}
        names = [f.name for f in fields(cls)]
        missing = [key for key in names if key not in state]
        if missing:
            raise LthError(f"dataset splits: missing key(s) {', '.join(missing)}")
        return cls(**{key: state[key] for key in names})

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={getattr(self, f'{split}_x').shape[0]}" for split in SPLIT_NAMES)
        return (f"Splits(name={self.name!r}, {sizes}, input_shape={self.input_shape}, task={self.task}, "
                f"num_outputs={self.num_outputs}, augment={self.augment}, device={self.train_x.device})")


# ----------------------------------------------------------------------------------------------- splitting


def holdout_size(n_train: int) -> int:
    """Validation examples to hold out of `n_train`: 5,000, or 10% (at least 1) of a small training set."""
    if n_train >= SMALL_TRAIN_SET:
        return VALIDATION_SIZE
    return max(1, int(n_train * SMALL_HOLDOUT_FRACTION))


def split_indices(n: int, sizes: Sequence[int], seed: int = SPLIT_SEED) -> tuple[Tensor, ...]:
    """Cut one seeded permutation of range(n) into consecutive parts of `sizes` (which must sum to n).

    A local generator keeps the split independent of the global RNG, hence identical in every run.
    The parts are disjoint and keep the permutation's (shuffled, class-mixed) order.
    """
    if any(s < 0 for s in sizes) or sum(sizes) != n:
        raise ValueError(f"split sizes {tuple(sizes)} must be non-negative and sum to {n}")
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    return tuple(perm.split(list(sizes)))


def hold_out(name: str, x: Tensor, y: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """(train, validation) parts of a training set: the validation examples held out by `split_indices`."""
    n = x.shape[0]
    n_val = holdout_size(n)
    if n_val >= n:
        raise LthError(f"dataset '{name}': only {n} training examples, too few to hold out a validation set")
    val_idx, train_idx = split_indices(n, (n_val, n - n_val))
    return (x[train_idx], y[train_idx]), (x[val_idx], y[val_idx])


# ----------------------------------------------------------------------------------------------- normalising


def channel_stats(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population std of uint8 (N, C, H, W) images (or floats on their 0..255 scale) scaled
    to [0, 1].

    Accumulated in float64 over chunks of images, so 50k CIFAR images need neither a float64 copy nor a
    float32 sum that loses precision.
    """
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
    for part in x.split(chunk):
        part = part.to(torch.float64) / 255.0
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant channel: only centre it
    return mean, std


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (or 0..255 float) (N, C, H, W) -> float32 ((x / 255) - mean) / std, per channel."""
    out = x.to(torch.float32).div_(255.0)
    out.sub_(mean.to(torch.float32).view(1, -1, 1, 1)).div_(std.to(torch.float32).view(1, -1, 1, 1))
    return out


def build_image_splits(name: str, parts: dict[str, tuple[Tensor, Tensor]], num_outputs: int, augment: bool,
                       task: str = "classification") -> Splits:
    """Train/val/test images (uint8, or float on the same 0..255 scale) normalised with statistics of the training
    split alone; int64 labels for classification, float32 (N, outputs) targets for regression."""
    train_x = parts["train"][0]
    if train_x.shape[0] == 0:
        raise LthError(f"dataset '{name}': the training split is empty")
    mean, std = channel_stats(train_x)
    tensors: dict[str, Tensor] = {}
    for split in SPLIT_NAMES:
        x, y = parts[split]
        tensors[f"{split}_x"] = normalize(x, mean, std)
        tensors[f"{split}_y"] = y.to(torch.int64) if task == "classification" else y.to(torch.float32)
    return Splits(name=name, num_outputs=num_outputs, augment=augment, task=task, **tensors)
