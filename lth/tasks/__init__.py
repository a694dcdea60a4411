"""Tasks: what a network is trained to do, and how it is judged (the loss, the metrics, the form of the targets).

A task is one small module beside its siblings and one line in TASKS; everything that computes a loss or a
metric (the training loop, evaluation, gradient criteria, pruning at initialization, compaction, stability,
the report) asks the data's task, never spells a loss itself. No torch at import: the registry's names
serve settings validation and help texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Mapping

from lth.core.errors import LthError, unknown_choice

if TYPE_CHECKING:
    from torch import Tensor

    from lth.tasks.base import Metric, Task

AUTO = "auto"


@dataclass(frozen=True)
class TaskEntry:
    name: str
    module: str  # imported on demand (it imports torch)
    description: str


TASKS: dict[str, TaskEntry] = {
    t.name: t
    for t in [
        TaskEntry("classification", "lth.tasks.classification",
                  "integer class labels; cross-entropy loss; accuracy (higher is better)"),
        TaskEntry("regression", "lth.tasks.regression",
                  "float targets, one or more per example; mean squared error; RMSE (lower is better) and R²"),
    ]
}

TASK_CHOICES = {AUTO: "inferred from the targets: integer labels -> classification, floats -> regression",
                **{name: entry.description for name, entry in TASKS.items()}}

_LOADED: dict[str, "Task"] = {}


def get_task(name: str) -> "Task":
    """The task `name` (one instance per process)."""
    if name not in TASKS:
        raise unknown_choice("task", name, TASKS)
    if name not in _LOADED:
        _LOADED[name] = getattr(import_module(TASKS[name].module), "TASK")
    return _LOADED[name]


def metric_named(name: str) -> "Metric":
    """A metric of any task by its short name ('acc', 'rmse', 'r2'): how a table shows a results file's column."""
    for entry in TASKS.values():
        for metric in get_task(entry.name).metrics:
            if metric.name == name:
                return metric
    raise LthError(f"unknown metric '{name}'")


def headline_in(results: Mapping[str, object], when: str = "early_stop", split: str = "test") -> "Metric":
    """The headline metric of a results entry, from its keys (`early_stop_test_acc` -> accuracy)."""
    for entry in TASKS.values():
        metric = get_task(entry.name).headline
        if f"{when}_{split}_{metric.name}" in results:
            return metric
    raise LthError(f"no {when}_{split}_<metric> in {sorted(results)}")


def infer_task(targets: "Tensor", requested: str = AUTO, where: str = "the dataset") -> str:
    """The task of a dataset: the one requested, or from its targets' dtype (integers: classification)."""
    if requested != AUTO:
        if requested not in TASKS:
            raise unknown_choice("task", requested, TASK_CHOICES)
        return requested
    import torch

    if targets.dtype == torch.bool or targets.is_complex():
        raise LthError(f"{where}: targets of dtype {targets.dtype} are neither class labels nor numbers")
    return "regression" if targets.is_floating_point() else "classification"
