"""What hooks and mid-round checkpoints see of a running training loop, declared once beneath all of them.

The loop (lth.training.loop) owns this state; hooks (lth.training.hooks, evaluation, sparse training,
early-bird) read it and some write it (a curve point, a stopped network, their own `extras`); a
checkpoint (lth.training.checkpoint) saves the progress part and restores it. Declaring it here, as a
protocol, lets each of them name the type it works on without importing the loop, which imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from torch import Tensor

    from lth.tasks.base import Task
    from lth.training.networks import Networks
    from lth.training.settings import TrainSettings


@dataclass
class TrainResult:
    """What one network's round of training produced."""

    state: dict[str, "Tensor"] = field(default_factory=dict)
    curve: list[dict] = field(default_factory=list)
    iterations: int = 0

    @property
    def final(self) -> dict:
        return self.curve[-1]

    @property
    def early_stop(self) -> dict:
        """The evaluation with the lowest validation loss (the paper's early-stopping criterion)."""
        return min(self.curve, key=lambda p: (p["val_loss"], p["iteration"]))


class DataParallel(Protocol):
    """The processes that train the same networks together (`lth.training.distributed`, under torchrun).

    Each process takes its share of every batch; `wrap` returns networks whose backward averages the
    gradients over the processes (DistributedDataParallel), so every replica takes the same step.
    """

    rank: int
    world: int

    def wrap(self, nets: "Networks") -> "Networks": ...

    def sum_(self, tensor: "Tensor") -> None: ...  # in place: the sum over all processes


class LoopState(Protocol):
    """A training loop as hooks and checkpoints see it."""

    # what the loop was built with
    settings: "TrainSettings"
    splits: Any  # lth.datasets.Splits, on the training device
    task: "Task"
    nets: "Networks"
    parallel: Optional[DataParallel]
    count: int  # networks trained together
    per_epoch: int  # steps per epoch
    total: int  # steps in all
    local: int  # this process's share of a batch
    graph: bool  # the step is a replayed CUDA graph (its tensors are updated in place)
    hand_written: bool  # the networks compute their own gradients (lth.training.batched)
    weights: list["Tensor"]  # the weights with something pruned, and their masks
    multipliers: list["Tensor"]
    optimizer: Any
    schedule: Any
    order_gens: list  # data-order generators, one per network
    augment_gens: Optional[list]
    batch_index: "Tensor"  # the current batch's rows
    augmented: Optional["Tensor"]

    # progress: what a checkpoint saves and restores
    iteration: int
    steps_since_eval: int
    orders: Optional["Tensor"]  # the current epoch's data order; None at an epoch boundary
    running: "Tensor"  # summed training loss since the last evaluation
    results: list[TrainResult]
    stopped: dict[int, tuple[int, dict[str, "Tensor"]]]  # networks a hook stopped: iteration, state then
    extras: dict  # hooks' own state
    resumed: bool

    @property
    def finished(self) -> bool: ...

    def stop_network(self, i: int) -> None: ...
