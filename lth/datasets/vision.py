"""The torchvision image datasets (MNIST, Fashion-MNIST, CIFAR-10/100): read from DATASET_DIR, downloaded there
when missing; the official test set stays the test set and the validation set is held out of the training set.

torchvision is imported inside the loaders: each pipeline stage is a fresh process and importing it costs
over a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from lth.core.errors import LthError, one_line
from lth.datasets.splits import Splits, build_image_splits, hold_out


@dataclass(frozen=True)
class TorchvisionSource:
    """Which torchvision class reads a dataset, where its files live under root, and how to get tensors."""

    class_name: str
    subdir: str  # relative to root: where the files are expected, named in error messages
    to_tensors: Callable[[Any], tuple[Tensor, Tensor]]  # dataset object -> uint8 (N, C, H, W), int64 (N,)


def mnist_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """MNIST-family `.data` is already a uint8 (N, 28, 28) tensor: add the channel axis."""
    return ds.data.unsqueeze(1).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)


def cifar_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """CIFAR `.data` is numpy uint8 (N, 32, 32, 3) and `.targets` a list: go channels-first."""
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ds.targets, dtype=torch.int64)


def prepare_root(root: Path) -> None:
    """Fail early, naming the path, when root is a file or cannot be created."""
    if root.exists() and not root.is_dir():
        raise LthError(f"dataset root '{root}' exists but is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LthError(f"cannot create dataset root '{root}': {exc.strerror or exc}") from exc


def _open(name: str, source: TorchvisionSource, root: Path, train: bool) -> Any:
    """Read from root; only when the files are missing (or fail their checksum) try to download them."""
    import torchvision.datasets  # lazy: see module docstring

    cls = getattr(torchvision.datasets, source.class_name)
    where = root / source.subdir
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass  # torchvision's "not found (or corrupted)": try a download below
    except Exception as exc:  # files exist but cannot be parsed
        raise LthError(f"dataset '{name}': cannot read the files in '{where}' ({one_line(exc)})") from exc
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as exc:  # offline, a mirror down, a bad archive: all mean the same to the user
        raise LthError(
            f"dataset '{name}': files not found in '{where}' and could not be downloaded ({one_line(exc)})"
        ) from exc


def load_torchvision(source: TorchvisionSource, name: str, num_classes: int, augment: bool, root: Path) -> Splits:
    """Official train set (minus the validation hold-out) and official test set of a torchvision dataset."""
    root = Path(root)
    prepare_root(root)
    x, y = source.to_tensors(_open(name, source, root, train=True))
    test = source.to_tensors(_open(name, source, root, train=False))
    train, val = hold_out(name, x, y)
    return build_image_splits(name, {"train": train, "val": val, "test": test}, num_classes, augment)
