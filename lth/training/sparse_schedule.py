"""What sparse training from scratch can do and when its masks move (lth.training.sparse), torch-free: the
settings of params.yaml's `sparse_train` group (lth.runs.sparse_train) name these without loading torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lth.core.errors import LthError

METHODS = {
    "static": "the starting mask, fixed",
    "set": "drop the smallest weights, grow at random (Mocanu et al. 2018)",
    "rigl": "drop the smallest weights, grow the largest gradients (Evci et al. 2020)",
}


@dataclass(frozen=True)
class SparseSchedule:
    """When and how much the masks move (each network's method is its own: DynamicSparsity's `methods`)."""

    update_every: int = 100  # ΔT, optimizer steps between mask updates
    drop_fraction: float = 0.3  # α at the first update, decaying with a cosine
    stop_fraction: float = 0.75  # no update after this fraction of training

    def check(self) -> "SparseSchedule":
        if self.update_every < 1:
            raise LthError(f"bad update_every {self.update_every}: at least 1 step")
        if not 0 < self.drop_fraction < 1:
            raise LthError(f"bad drop_fraction {self.drop_fraction}: it must be in (0, 1)")
        if not 0 < self.stop_fraction <= 1:
            raise LthError(f"bad stop_fraction {self.stop_fraction}: it must be in (0, 1]")
        return self

    def fraction(self, iteration: int, stop: int) -> float:
        """The drop fraction at `iteration` (cosine decay to 0 at `stop`)."""
        return self.drop_fraction / 2 * (1 + math.cos(math.pi * iteration / stop))
