"""Your own data: arrays from a `.npz` / `.pt` file, a `package.module:callable`, or a dict given to the API.

The arrays are `x_train`, `y_train`, `x_test`, `y_test` and optionally `x_val`, `y_val` (otherwise the
validation set is held out of the training set by the same seeded split the registered datasets use),
plus an optional flag `normalize` (default true). Inputs may have any example shape: flat vectors (N, D)
are standardised per feature, anything with more axes (N, C, ...: images, channels-first sequences) per
channel, with the training split's mean and standard deviation. Targets decide the task unless one is
asked for (lth.tasks): integer labels are classification, floats regression. Every problem (a missing
array, lengths that disagree, NaN or infinity, float labels for classification) is one LthError naming
the array.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from lth.core.errors import LthError, one_line
from lth.datasets.splits import SPLIT_NAMES, Splits, hold_out

REQUIRED = ("x_train", "y_train", "x_test", "y_test")
OPTIONAL = ("x_val", "y_val")
FLAGS = ("normalize",)
DESCRIBE = (f"arrays {', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)}; the flag 'normalize', "
            "default true)")


def read_file(path: Path) -> dict[str, Any]:
    """The arrays of a `.npz` (no pickles) or `.pt` file (tensors only: weights_only=True)."""
    if not path.is_file():
        where = "" if path.is_absolute() else f" (in {Path.cwd()})"
        raise LthError(f"dataset file {path} does not exist{where}")
    if path.suffix.lower() == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
        except Exception as exc:  # noqa: BLE001 - a truncated zip, pickled object arrays ...
            raise LthError(f"cannot read dataset file {path} ({one_line(exc)})") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable archive is the same problem to the user
        raise LthError(f"cannot read dataset file {path} ({type(exc).__name__}); it must be a dict of tensors "
                       "saved with torch.save") from None
    if not isinstance(data, Mapping):
        raise LthError(f"dataset file {path} holds a {type(data).__name__}; expected a dict of {DESCRIBE}")
    return dict(data)


def call_loader(ref: str, dataset_dir: Path) -> Any:
    """What a dataset callable returns; it is given DATASET_DIR when it takes an argument."""
    from lth.core import plugins

    loader = plugins.load_callable(ref, "dataset")
    try:
        takes_dir = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                        for p in inspect.signature(loader).parameters.values())
    except (TypeError, ValueError):
        takes_dir = False
    return plugins.call(loader, ref, "dataset", *([Path(dataset_dir)] if takes_dir else []))


def from_arrays(name: str, arrays: Mapping[str, Any], task: str = "auto") -> Splits:
    """Splits from a mapping of arrays (numpy arrays, tensors or nested lists), validated and normalised."""
    from lth.tasks import get_task, infer_task

    if not isinstance(arrays, Mapping):
        raise LthError(f"dataset '{name}' gave a {type(arrays).__name__}; expected a dict of {DESCRIBE}")
    unknown = sorted(set(arrays) - set(REQUIRED) - set(OPTIONAL) - set(FLAGS))
    if unknown:
        raise LthError(f"dataset '{name}': unknown array(s) {', '.join(map(str, unknown))}; expected {DESCRIBE}")
    missing = [key for key in REQUIRED if key not in arrays]
    if missing:
        held = ", ".join(map(str, arrays)) or "nothing"
        raise LthError(f"dataset '{name}' has no {', '.join(missing)} (it holds: {held}); expected {DESCRIBE}")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise LthError(f"dataset '{name}': give both x_val and y_val, or neither (then the validation set is held "
                       "out of the training set)")
    tensors = {key: _tensor(name, key, arrays[key]) for key in (*REQUIRED, *OPTIONAL) if key in arrays}
    splits = ("train", "val", "test") if "x_val" in tensors else ("train", "test")
    for split in splits:
        x, y = tensors[f"x_{split}"], tensors[f"y_{split}"]
        if x.dim() < 2:
            raise LthError(f"dataset '{name}': x_{split} must hold one example per row, shape (N, ...), got "
                           f"{tuple(x.shape)}")
        if x.shape[0] != y.shape[0]:
            raise LthError(f"dataset '{name}': x_{split} has {x.shape[0]} examples but y_{split} has {y.shape[0]}")
        if tuple(x.shape[1:]) != tuple(tensors["x_train"].shape[1:]):
            raise LthError(f"dataset '{name}': x_{split} examples are {tuple(x.shape[1:])}, x_train examples are "
                           f"{tuple(tensors['x_train'].shape[1:])}")
    for split in splits:
        if tensors[f"x_{split}"].shape[0] == 0:
            raise LthError(f"dataset '{name}': x_{split} is empty")
    chosen = infer_task(tensors["y_train"], task, f"dataset '{name}'")
    spec = get_task(chosen)
    targets = {split: spec.targets(tensors[f"y_{split}"], f"dataset '{name}': y_{split}") for split in splits}
    if chosen == "regression":
        for split in splits:
            if targets[split].shape[1] != targets["train"].shape[1]:
                raise LthError(f"dataset '{name}': y_{split} has {targets[split].shape[1]} target columns, y_train "
                               f"has {targets['train'].shape[1]}")
    parts = {split: (tensors[f"x_{split}"], targets[split]) for split in splits}
    if "val" not in parts:
        parts["train"], parts["val"] = hold_out(name, *parts["train"])
    inputs = [parts[split][0] for split in SPLIT_NAMES]
    if _flag(name, arrays.get("normalize", True)):
        inputs = standardized(inputs)
    else:
        inputs = [x.to(torch.float32) for x in inputs]
    num_outputs = spec.num_outputs([parts[split][1] for split in SPLIT_NAMES])
    return Splits(name=name, train_x=inputs[0], train_y=parts["train"][1], val_x=inputs[1], val_y=parts["val"][1],
                  test_x=inputs[2], test_y=parts["test"][1], num_outputs=num_outputs, augment=False, task=chosen)


def _tensor(name: str, key: str, value: Any) -> Tensor:
    """An array as a tensor; object arrays, strings and non-finite numbers are errors naming `key`."""
    try:
        tensor = value if isinstance(value, Tensor) else torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise LthError(f"dataset '{name}': {key} is not a numeric array ({one_line(exc)})") from None
    if tensor.is_complex():
        raise LthError(f"dataset '{name}': {key} is complex; expected real numbers")
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point():
        bad = ~torch.isfinite(tensor)
        if bool(bad.any()):
            first = int(bad.reshape(len(tensor), -1).any(1).nonzero()[0]) if tensor.dim() else 0
            raise LthError(f"dataset '{name}': {key} holds {int(bad.sum())} NaN or infinite value(s) (first in "
                           f"example {first})")
    if tensor.dtype == torch.bool and key.startswith("x_"):
        tensor = tensor.to(torch.uint8)
    return tensor


def _flag(name: str, value: Any) -> bool:
    try:
        flag = value.item() if hasattr(value, "item") else value
    except (ValueError, RuntimeError):
        flag = None
    if not isinstance(flag, (bool, int)) or isinstance(flag, int) and flag not in (0, 1):
        raise LthError(f"dataset '{name}': 'normalize' must be true or false, got {value!r}")
    return bool(flag)


def standardized(inputs: list[Tensor], chunk: int = 8192) -> list[Tensor]:
    """float32 copies of train, val, test inputs, standardised with the training split's statistics: per
    feature for (N, D) inputs, per channel (axis 1) for (N, C, ...) inputs. Statistics are accumulated in
    float64; a constant feature or channel is only centred."""
    train = inputs[0]
    dims = (0,) if train.dim() == 2 else (0, *range(2, train.dim()))
    total = torch.zeros(train.shape[1], dtype=torch.float64)
    total_sq = torch.zeros(train.shape[1], dtype=torch.float64)
    for part in train.split(chunk):
        part = part.to(torch.float64)
        total += part.sum(dim=dims)
        total_sq += (part * part).sum(dim=dims)
    count = train.numel() // train.shape[1]
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-12 * mean.abs().clamp_min(1.0), std, torch.ones_like(std))
    view = (1, -1, *([1] * (train.dim() - 2)))
    return [((x.to(torch.float64) - mean.view(view)) / std.view(view)).to(torch.float32) for x in inputs]


def dataset_name(arrays: Mapping[str, Any]) -> str:
    """A name for arrays given directly (the Python API): their content's checksum, so a run's settings
    (and its fingerprint) tell two datasets apart."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(arrays):
        t = _tensor("arrays", key, arrays[key]).contiguous() if key not in FLAGS else torch.as_tensor(arrays[key])
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).numpy().view("uint8").tobytes() if t.numel() else b"")
    return f"arrays-{digest.hexdigest()[:12]}"
