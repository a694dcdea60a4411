"""What a round of training produced, and the hook that measures it: the learning curve and early stopping.

Every `eval_every` steps (and at the end) each network's mean training loss since the last evaluation,
and its loss and the task's metrics (lth.tasks) on the validation and test sets, are appended to its
curve. The early-stop point is the evaluation with the lowest validation loss (Frankle & Carbin's
criterion), whatever the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from lth.core.durations import Step
from lth.training.hooks import Hook
from lth.training.networks import Networks
from lth.training.precision import autocast
from lth.training.state import TrainResult

if TYPE_CHECKING:
    from lth.tasks.base import Task
    from lth.training.state import LoopState


@torch.no_grad()
def sums(nets: Networks, x: Tensor, y: Tensor, task: "Task", batch_size: int = 2000,
         precision: str = "fp32") -> dict[str, Tensor]:
    """Per-network sums of the task's measures over a resident dataset, in large batches (lth.tasks.base).

    At the precision the networks train at, so the curve measures the network as trained.
    """
    nets.set_training(False)
    cast = autocast(x.device, precision)
    totals: Optional[dict[str, Tensor]] = None
    for start in range(0, len(x), batch_size):
        with cast():
            out = nets.shared(x[start : start + batch_size]).float()
        if totals is None:
            totals = task.zero_sums(nets.count, out.shape[-1], x.device)
        task.add_sums(totals, out, y[start : start + batch_size])
    nets.set_training(True)
    return totals if totals is not None else task.zero_sums(nets.count, 1, x.device)


def evaluate(nets: Networks, x: Tensor, y: Tensor, task: "Task", batch_size: int = 2000,
             precision: str = "fp32") -> dict[str, Tensor]:
    """Per-network loss and task metrics over a resident dataset: {'loss': (N,), 'acc': (N,) ...}."""
    return task.finish(sums(nets, x, y, task, batch_size, precision), y)


class Evaluation(Hook):
    """Appends an evaluation point to every network's curve at the start, every `eval_every` steps and at
    the end: the mean training loss since the last point, and the loss and the task's metrics on the
    validation and test sets (`val_loss`, `val_acc`, `test_loss`, `test_acc` for classification). With
    processes training together (lth.training.distributed) each evaluates its share of the data and the
    sums are exchanged."""

    def start(self, loop: "LoopState") -> None:
        self.every = max(1, Step.parse(loop.settings.eval_every).to_iterations(loop.per_epoch))
        if not loop.resumed:
            self.record(loop)

    def after_step(self, loop: "LoopState") -> None:
        if loop.iteration % self.every == 0 or loop.iteration == loop.total:
            self.record(loop)

    def record(self, loop: "LoopState") -> None:
        measured = {split: self.measure(loop, *splits_of(loop.splits, split)) for split in ("val", "test")}
        running, steps = loop.running, loop.steps_since_eval
        if loop.parallel:  # every process's running loss is over its share of the batches
            loop.parallel.sum_(running)
            running.div_(loop.parallel.world)
        train_loss = (running / steps).tolist() if steps else [float("nan")] * loop.count
        columns = {f"{split}_{name}": values.tolist() for split, metrics in measured.items()
                   for name, values in metrics.items()}
        for i, result in enumerate(loop.results):
            if i in loop.stopped:  # its training ended earlier (an early-bird ticket): its curve ends there
                continue
            result.curve.append({"iteration": loop.iteration, "train_loss": train_loss[i],
                                 **{key: values[i] for key, values in columns.items()}})
        running.zero_()
        loop.steps_since_eval = 0

    @staticmethod
    def measure(loop: "LoopState", x: Tensor, y: Tensor) -> dict[str, Tensor]:
        precision, parallel, task = loop.settings.precision, loop.parallel, loop.task
        if parallel is None:
            return evaluate(loop.nets, x, y, task, precision=precision)
        share = slice(parallel.rank * len(x) // parallel.world, (parallel.rank + 1) * len(x) // parallel.world)
        totals = sums(loop.nets, x[share], y[share], task, precision=precision)
        for total in totals.values():
            parallel.sum_(total)
        return task.finish(totals, y)


def splits_of(splits, split: str) -> tuple[Tensor, Tensor]:  # noqa: ANN001 - lth.datasets.Splits
    return getattr(splits, f"{split}_x"), getattr(splits, f"{split}_y")
