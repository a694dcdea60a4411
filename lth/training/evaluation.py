"""What a round of training produced, and the hook that measures it: the learning curve and early stopping.

Every `eval_every` steps (and at the end) each network's mean training loss since the last evaluation,
and its loss and accuracy on the validation and test sets, are appended to its curve. The early-stop
point is the evaluation with the lowest validation loss (Frankle & Carbin's criterion).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from lth.core.steps import Step
from lth.training.hooks import Hook
from lth.training.networks import Networks
from lth.training.precision import autocast

if TYPE_CHECKING:
    from lth.training.loop import TrainingLoop


@dataclass
class TrainResult:
    """What one network's round of training produced."""

    state: dict[str, Tensor] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)
    iterations: int = 0

    @property
    def final(self) -> dict:
        return self.curve[-1]

    @property
    def early_stop(self) -> dict:
        """The evaluation with the lowest validation loss (the paper's early-stopping criterion)."""
        return min(self.curve, key=lambda p: (p["val_loss"], p["iteration"]))


@torch.no_grad()
def evaluate(nets: Networks, x: Tensor, y: Tensor, batch_size: int = 2000,
             precision: str = "fp32") -> tuple[Tensor, Tensor]:
    """Per-network (mean cross-entropy, accuracy) over a resident dataset, in large batches: (N,) tensors.

    At the precision the networks train at, so the curve measures the network as trained.
    """
    nets.set_training(False)
    cast = autocast(x.device, precision)
    loss = torch.zeros(nets.count, device=x.device, dtype=torch.float64)
    correct = torch.zeros(nets.count, device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        with cast():
            out = nets.shared(x[start : start + batch_size]).float()
        target = y[start : start + batch_size].expand(nets.count, -1)
        loss += F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(nets.count, -1).sum(1)
        correct += (out.argmax(dim=2) == target).sum(1)
    nets.set_training(True)
    n = max(len(x), 1)
    return loss / n, correct.double() / n  # float64: accuracies like 0.96 print as 0.96


class Evaluation(Hook):
    """Appends an evaluation point to every network's curve at the start, every `eval_every` steps and at
    the end. With processes training together (lth.training.distributed) each evaluates its share of
    the data and the sums are exchanged."""

    def start(self, loop: "TrainingLoop") -> None:
        self.every = max(1, Step.parse(loop.settings.eval_every).to_iterations(loop.per_epoch))
        if not loop.resumed:
            self.record(loop)

    def after_step(self, loop: "TrainingLoop") -> None:
        if loop.iteration % self.every == 0 or loop.iteration == loop.total:
            self.record(loop)

    def record(self, loop: "TrainingLoop") -> None:
        val_loss, val_acc = self.measure(loop, loop.splits.val_x, loop.splits.val_y)
        test_loss, test_acc = self.measure(loop, loop.splits.test_x, loop.splits.test_y)
        running, steps = loop.running, loop.steps_since_eval
        if loop.parallel:  # every process's running loss is over its share of the batches
            loop.parallel.sum_(running)
            running.div_(loop.parallel.world)
        train_loss = (running / steps).tolist() if steps else [float("nan")] * loop.count
        columns = zip(train_loss, val_loss.tolist(), val_acc.tolist(), test_loss.tolist(), test_acc.tolist())
        for i, (result, (tl, vl, va, sl, sa)) in enumerate(zip(loop.results, columns)):
            if i in loop.stopped:  # its training ended earlier (an early-bird ticket): its curve ends there
                continue
            result.curve.append(dict(iteration=loop.iteration, train_loss=tl, val_loss=vl, val_acc=va,
                                     test_loss=sl, test_acc=sa))
        running.zero_()
        loop.steps_since_eval = 0

    @staticmethod
    def measure(loop: "TrainingLoop", x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        precision = loop.settings.precision
        parallel = loop.parallel
        if parallel is None:
            return evaluate(loop.nets, x, y, precision=precision)
        rank, world = parallel.rank, parallel.world
        share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        loss, acc = evaluate(loop.nets, x[share], y[share], precision=precision)
        size = len(x[share])
        totals = torch.stack([loss * size, (acc * size).round()])  # summed loss, correct predictions
        parallel.sum_(totals)
        return totals[0] / max(len(x), 1), totals[1] / max(len(x), 1)

