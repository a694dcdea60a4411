"""How networks train: a round's training, supermask learning, and how processes share a round.

Declared once (lth.core.config): params.yaml validation, the CLI's help and `lth list settings` read
these fields. No torch here: every stage validates its params before deciding what to import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lth.core.config import check_choices, registry, setting
from lth.core.errors import LthError
from lth.core.durations import Step


@dataclass(frozen=True)
class TrainSettings:
    """How one round trains: optimizer, schedule, batch size, duration, evaluation cadence, precision."""

    optimizer: str = setting("adam", "Optimizer.", choices=registry("lth.training.optimizers", "OPTIMIZERS"), inline=True)
    lr: float = setting(1.2e-3, "Learning rate.")
    batch_size: int = setting(60, "Batch size (the last partial batch of an epoch is dropped).")
    duration: str = setting("50ep", "Training length of a round: a step string such as '50ep', '30000it', "
                                    "'2ep100it'.")
    momentum: float = setting(0.0, "SGD momentum.")
    nesterov: bool = setting(False, "Nesterov momentum (SGD, needs momentum > 0).")
    weight_decay: float = setting(0.0, "Weight decay.")
    warmup: str = setting("0it", "Linear learning-rate warmup, a step string ('0it': none).")
    milestones: tuple[str, ...] = setting((), "Steps at which the learning rate is multiplied by gamma.")
    gamma: float = setting(0.1, "Learning-rate factor at each milestone.")
    eval_every: str = setting("100it", "Evaluate on the validation and test sets every this many steps.")
    precision: str = setting("fp32", "Precision of forward and backward passes.", choices=registry("lth.training.precision", "PRECISIONS"), inline=True)

    def validate(self) -> "TrainSettings":
        """Every value in its valid range; raises LthError naming the first bad one."""
        check_choices(self)
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            if not math.isfinite(getattr(self, name)):
                raise LthError(f"bad {name} {getattr(self, name)}: must be a finite number")
        if not self.lr > 0:
            raise LthError(f"bad lr {self.lr}: must be > 0")
        if self.batch_size < 1:
            raise LthError(f"bad batch_size {self.batch_size}: must be >= 1")
        for name in ("momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise LthError(f"bad {name} {getattr(self, name)}: must be >= 0")
        if self.nesterov and self.momentum <= 0:
            raise LthError("nesterov needs momentum > 0 (set train.momentum / --momentum)")
        if not 0 < self.gamma <= 1:
            raise LthError(f"bad gamma {self.gamma}: must be in (0, 1]")
        for name in ("duration", "warmup", "eval_every"):
            Step.parse(getattr(self, name))
        for milestone in self.milestones:
            Step.parse(milestone)
        if Step.parse(self.duration) == Step():
            raise LthError(f"bad duration '{self.duration}': must be at least one iteration")
        if Step.parse(self.eval_every) == Step():
            raise LthError(f"bad eval_every '{self.eval_every}': must be at least one iteration")
        return self


SUPERMASK_WEIGHTS = {
    "init": "θ0 itself",
    "signed_constant": "sign(θ0) x the layer's init std (Zhou et al.)",
}


@dataclass(frozen=True)
class SupermaskSettings:
    """How a supermask is learned over frozen weights (lth.training.supermask)."""

    weights: str = setting("signed_constant", "Frozen weights under the mask.", choices=lambda: SUPERMASK_WEIGHTS,
                           label="supermask weights", inline=True)
    lr: float = setting(0.1, "Adam learning rate of the mask scores.")
    batch_size: int = setting(60, "Batch size.")
    duration: str = setting("50ep", "Training length, a step string.")
    init_prob: float = setting(0.5, "Initial keep probability sigmoid(score) of every weight.")
    rescale: bool = setting(True, "Dynamic weight rescaling per layer (kept weights scaled by total / kept).")
    eval_every: str = setting("1ep", "Evaluation cadence, a step string.")

    def validate(self) -> "SupermaskSettings":
        check_choices(self)
        if not self.lr > 0:
            raise LthError(f"bad supermask lr {self.lr}: must be > 0")
        if self.batch_size < 1:
            raise LthError(f"bad supermask batch_size {self.batch_size}: must be >= 1")
        if not 0 < self.init_prob < 1:
            raise LthError(f"bad supermask init_prob {self.init_prob}: must be in (0, 1)")
        for value in (self.duration, self.eval_every):
            Step.parse(value)
        if Step.parse(self.duration) == Step():
            raise LthError(f"bad supermask duration '{self.duration}': must be at least one iteration")
        return self


DISTRIBUTED_MODES = {
    "data": "every network's batches split over the processes (DistributedDataParallel)",
    "trials": "the round's networks (trials x arms) dealt out to the processes, each trained alone",
}


@dataclass(frozen=True)
class DistributedSettings:
    """How many processes a training stage runs under torchrun on its machine, and how they share a round
    (lth.training.distributed)."""

    nproc: int = setting(1, "Processes per training stage (torchrun on this machine).")
    mode: str = setting("data", "How the processes share a round.", choices=lambda: DISTRIBUTED_MODES,
                        label="distributed mode", inline=True)

    def validate(self, where: str = "train.distributed") -> "DistributedSettings":
        if self.nproc < 1:
            raise LthError(f"{where}.nproc: must be >= 1, got {self.nproc}")
        check_choices(self)
        return self
