"""What a task is: the loss a network minimises, the metrics it is judged by and the form of its targets.

Evaluation runs over a resident dataset in large batches and several stacked networks at once, so a task
measures in two parts: `add_sums` accumulates per-network sums batch by batch (they add up across batches
and across processes training together), `finish` turns the totals into the metrics. Metric names are
short ('acc', 'rmse', 'r2'); files name them by split and time ('early_stop_test_acc', lth.runs.records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Optional

if TYPE_CHECKING:
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class Metric:
    """One number a task reports: its short name, how a person reads it, and which way is better."""

    name: str  # 'acc', 'rmse', 'r2'
    label: str  # 'accuracy', 'RMSE', 'R²'
    higher_is_better: bool
    percent: bool = False  # a fraction a person reads as a percentage (tables only; files keep fractions)

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is at least as good as `b`."""
        return a >= b if self.higher_is_better else a <= b

    def show(self, value: Optional[float]) -> str:
        """The value as a table cell: accuracies in percent, everything else as it is."""
        if value is None:
            return "-"
        return f"{100 * value:.2f}" if self.percent else f"{value:.4g}"

    def brief(self, value: float) -> str:
        """The value with its unit in a few characters (progress lines, narrow tables): '96.2%', '0.213'."""
        return f"{100 * value:.1f}%" if self.percent else f"{value:.3g}"

    @property
    def unit(self) -> str:
        return "%" if self.percent else ""


class Task:
    """The base of every task (lth.tasks.classification, lth.tasks.regression); subclasses fill in the methods."""

    name = ""
    description = ""
    metrics: tuple[Metric, ...] = ()  # what evaluation reports beside the loss; the first is the headline
    error: Metric  # what the instability analysis measures along a line between two networks (lower is better)
    barrier_threshold: Optional[float] = None  # a barrier below it: linearly connected (None: no convention)

    @property
    def headline(self) -> Metric:
        """The metric a ticket is judged by (the report's y axis, 'matching the dense network')."""
        return self.metrics[0]

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    # --- the targets ------------------------------------------------------------------------------------

    def targets(self, y: "Tensor", where: str) -> "Tensor":
        """`y` in the task's form (validated); an LthError naming `where` when it cannot be."""
        raise NotImplementedError

    def num_outputs(self, targets: "list[Tensor]") -> int:
        """How many outputs a network needs for these targets (every split's)."""
        raise NotImplementedError

    # --- the loss ---------------------------------------------------------------------------------------

    def loss(self, outputs: "Tensor", targets: "Tensor") -> "Tensor":
        """The loss of each example: outputs (M, outputs), targets (M, ...) -> (M,)."""
        raise NotImplementedError

    def mean_loss(self, outputs: "Tensor", targets: "Tensor", temperature: float = 1.0) -> "Tensor":
        """The mean loss of a batch, for gradients (criteria, pruning at init). `temperature` softens a softmax
        (GraSP divides logits by 200); tasks without one ignore it."""
        raise NotImplementedError

    # Optional, for networks with a hand-written backward pass (lth.training.batched.StackedMLP):
    # `losses_and_output_grad(outputs (N, B, O), targets (N, B, ...)) -> (each network's mean loss (N,),
    # d(sum of those)/d(outputs))`, computed with the ops autograd would run so results are bit-identical.
    losses_and_output_grad = None

    # --- metrics ----------------------------------------------------------------------------------------

    def zero_sums(self, count: int, outputs: int, device: "torch.device") -> dict[str, "Tensor"]:
        """The accumulators of `count` networks' sums, before any batch."""
        raise NotImplementedError

    def add_sums(self, sums: dict[str, "Tensor"], outputs: "Tensor", targets: "Tensor") -> None:
        """Add a batch: outputs (N, B, O) of N networks, targets (B, ...) shared by all."""
        raise NotImplementedError

    def finish(self, sums: Mapping[str, "Tensor"], targets: "Tensor") -> dict[str, "Tensor"]:
        """{'loss': (N,), metric name: (N,) ...} from the totals over all of `targets` (the whole split)."""
        raise NotImplementedError

    def error_of(self, metrics: Mapping[str, float]) -> float:
        """The `error` metric of one network's metrics (the instability analysis' measure)."""
        raise NotImplementedError

    # --- relevance (the LRP criterion) ------------------------------------------------------------------

    def relevance(self, outputs: "Tensor", targets: "Tensor") -> "Tensor":
        """The scalar whose relevance is propagated back to the weights (LRP starts from it)."""
        raise NotImplementedError

    def reference_samples(self, targets: "Tensor", per_class: int, seed: int) -> "Tensor":
        """Indices of the training examples LRP explains (a few per class, or a seeded sample)."""
        raise NotImplementedError
