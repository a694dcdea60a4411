"""Sparse training from scratch: masks that stay fixed (static) or change during training (SET, RigL), as a
hook of the ordinary training loop, so trials and methods batch like any round.

Every `update_every` steps until `stop_fraction` of training (the papers' 75%), each network drops a
fraction of each layer's kept weights, the smallest in magnitude, and grows as many among the weights not
kept after the drop: at random (SET, Mocanu et al. 2018) or those with the largest gradient magnitude on
the current batch (RigL, Evci et al. 2020). The fraction decays with a cosine from `drop_fraction` to 0 at
the stop. Counts per layer stay exact (as many grown as dropped); grown weights start at zero; the
optimizer's state (Adam's moments, SGD's momentum) of every dropped or grown weight is set to zero, so no
weight comes back with old momentum. Static training never changes its mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import Tensor

from lth.core.errors import unknown_choice
from lth.training.hooks import Hook

if TYPE_CHECKING:
    from lth.training.loop import TrainingLoop

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
        from lth.core.errors import LthError

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


def _slice(t: Tensor, i: int, count: int, shape: torch.Size) -> Tensor:
    """Network i's part of a (possibly stacked) tensor, flattened, as a view."""
    return (t if count == 1 and t.shape == shape else t[i]).reshape(-1)


class DynamicSparsity(Hook):
    """The mask updates of one training loop: `names` are the sparse layers' weights, `methods[i]` and
    `seeds[i]` network i's method and growth seed. `history[i]` lists each update: iteration and, per layer,
    the weights dropped and grown."""

    def __init__(self, schedule: SparseSchedule, shapes: Mapping[str, tuple[int, ...]], methods: Sequence[str],
                 seeds: Sequence[int]):
        for method in methods:
            if method not in METHODS:
                raise unknown_choice("method", method, METHODS)
        self.schedule, self.shapes, self.methods = schedule, dict(shapes), list(methods)
        self.names = list(shapes)
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.history: list[list[dict]] = [[] for _ in methods]

    def start(self, loop: "TrainingLoop") -> None:
        params = loop.nets.params
        found = {id(w): j for j, w in enumerate(loop.weights)}  # the loop masks only tensors with a pruned weight
        self.index = {name: found[id(params[name])] for name in self.names if id(params[name]) in found}
        self.stop = int(self.schedule.stop_fraction * loop.total)

    def end(self, loop: "TrainingLoop") -> None:
        """Each network's final mask (name -> bool tensor in the weight's own shape), for its record."""
        # a layer the distribution keeps dense (ERK's small layers) has nothing to move and stays dense
        self.final_masks = [{name: torch.ones(self.shapes[name], dtype=torch.bool) for name in self.names
                             if name not in self.index} for _ in range(loop.count)]
        for name, j in self.index.items():
            shape, numel = self.shapes[name], math.prod(self.shapes[name])
            # where each standard-layout element sits in the loop's layout (stacked MLPs store weights transposed)
            where = loop.nets.stack(name, [torch.arange(numel, dtype=torch.float64).view(shape)] * loop.count)
            where = (where if loop.count == 1 else where[0]).reshape(-1).long().cpu()
            for i in range(loop.count):
                part = loop.multipliers[j] if loop.count == 1 else loop.multipliers[j][i]
                flat = torch.zeros(numel, dtype=torch.bool)
                flat[where] = part.reshape(-1).ne(0).cpu()
                self.final_masks[i][name] = flat.view(shape)

    def due(self, iteration: int) -> bool:
        return iteration % self.schedule.update_every == 0 and 0 < iteration < self.stop

    def after_step(self, loop: "TrainingLoop") -> None:
        if not self.due(loop.iteration) or all(m == "static" for m in self.methods):
            return
        grads = dense_gradients(loop) if "rigl" in self.methods else None
        fraction = self.schedule.fraction(loop.iteration, self.stop)
        updates = [{"iteration": loop.iteration, "dropped": {}, "grown": {}} for _ in self.methods]
        with torch.no_grad():
            for name, j in self.index.items():
                weight, multiplier = loop.weights[j], loop.multipliers[j]
                shape = loop.nets.params[name].shape[1:] if loop.count > 1 else weight.shape
                states = [s for s in loop.optimizer.state.get(weight, {}).values()
                          if isinstance(s, Tensor) and s.shape == weight.shape]
                for i, method in enumerate(self.methods):
                    if method == "static":
                        continue
                    w, m = _slice(weight, i, loop.count, shape), _slice(multiplier, i, loop.count, shape)
                    g = _slice(grads[j], i, loop.count, shape) if grads is not None else None
                    changed, dropped = self._update(w, m, g, method, fraction, i)
                    for state in states:
                        _slice(state, i, loop.count, shape)[changed] = 0
                    updates[i]["dropped"][name] = updates[i]["grown"][name] = dropped
        for i, update in enumerate(updates):
            if self.methods[i] != "static":
                self.history[i].append(update)

    def _update(self, w: Tensor, m: Tensor, g: Tensor | None, method: str, fraction: float, i: int
                ) -> tuple[Tensor, int]:
        """Drop and grow in network i's layer (flat views); the positions that changed, and how many dropped."""
        kept = m != 0
        n = int(fraction * int(kept.sum()))
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=w.device), 0
        magnitude = torch.where(kept, w.abs(), torch.full_like(w, math.inf))
        drop = torch.topk(magnitude, n, largest=False).indices
        after = kept.clone()
        after[drop] = False
        if method == "set":
            score = torch.rand(w.shape, generator=self.generators[i]).to(w.device)
        else:
            score = g.abs().to(w.dtype)
        score = torch.where(after, torch.full_like(score, -math.inf), score)
        grow = torch.topk(score, n).indices
        after[grow] = True
        m.copy_(after.to(m.dtype))
        changed = torch.cat([drop, grow])
        w[changed] = 0  # dropped weights vanish, grown ones start at zero
        return changed, n


def dense_gradients(loop: "TrainingLoop") -> list[Tensor]:
    """Every sparse layer's gradient on the current batch, pruned positions included (RigL's growth score)."""
    from lth.training.loop import rows

    splits = loop.splits
    x = loop.augmented if loop.augmented is not None else rows(splits.train_x, loop.batch_index)
    y = rows(splits.train_y, loop.batch_index)
    if loop.hand_written:
        loop.nets.losses_and_grads(x, y, loop.task)  # type: ignore[attr-defined]
    else:
        for w in loop.nets.params.values():
            w.grad = None
        with torch.enable_grad():
            outputs = loop.nets(x)
            losses = loop.task.loss(outputs.flatten(0, 1), y.flatten(0, 1)).view(loop.count, loop.local).mean(1)
            losses.sum().backward()
    return [w.grad.detach().clone() for w in loop.weights]
