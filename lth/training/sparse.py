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
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import torch
from torch import Tensor

from lth.core.errors import unknown_choice
from lth.training.hooks import Hook
from lth.training.sparse_schedule import METHODS, SparseSchedule

__all__ = ["METHODS", "SparseSchedule", "DynamicSparsity", "SparseHooks", "dense_gradients"]

if TYPE_CHECKING:
    from lth.training.state import LoopState

STATE_KEY = "dynamic_sparsity"  # the hook's state in the loop's extras (saved with mid-round checkpoints)


class DynamicSparsity(Hook):
    """The mask updates of one training loop: `names` are the sparse layers' weights, `methods[i]` and
    `seeds[i]` network i's method and growth seed. `history[i]` lists each update: iteration and, per layer,
    the weights dropped and grown."""

    def __init__(self, schedule: SparseSchedule, shapes: Mapping[str, tuple[int, ...]], methods: Sequence[str],
                 seeds: Sequence[int], nm: Optional[tuple[int, int]] = None):
        for method in methods:
            if method not in METHODS:
                raise unknown_choice("method", method, METHODS)
        self.schedule, self.shapes, self.methods, self.nm = schedule, dict(shapes), list(methods), nm
        self.names = list(shapes)
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.history: list[list[dict]] = [[] for _ in methods]

    def start(self, loop: "LoopState") -> None:
        params = loop.nets.params
        found = {id(w): j for j, w in enumerate(loop.weights)}  # the loop masks only tensors with a pruned weight
        self.index = {name: found[id(params[name])] for name in self.names if id(params[name]) in found}
        self.stop = int(self.schedule.stop_fraction * loop.total)
        # N:M groups are consecutive input weights of the standard layout: where each one sits in the loop's
        self.where = {name: torch.argsort(self._layout_of(loop, name)) for name in self.index} if self.nm else {}
        saved = loop.extras.get(STATE_KEY)
        if saved is not None:  # resumed from a mid-round checkpoint: the masks and draws as they were then
            with torch.no_grad():
                for target, value in zip(loop.multipliers, saved["multipliers"]):
                    target.copy_(value)
            self.history = [list(h) for h in saved["history"]]
            for generator, state in zip(self.generators, saved["generators"]):
                generator.set_state(state)
        self._save_state(loop)

    def _save_state(self, loop: "LoopState") -> None:
        """What a checkpoint must hold to resume the updates exactly: the live masks, the history, the draws."""
        loop.extras[STATE_KEY] = {"multipliers": loop.multipliers, "history": self.history,
                                  "generators": [g.get_state() for g in self.generators]}

    def _layout_of(self, loop: "LoopState", name: str) -> Tensor:
        """For each flat position of layer `name` in the loop's layout of one network (stacked MLPs store weights
        transposed), the flat index of the standard-layout element there."""
        shape, numel = self.shapes[name], math.prod(self.shapes[name])
        where = loop.nets.stack(name, [torch.arange(numel, dtype=torch.float64).view(shape)] * loop.count)
        return (where if loop.count == 1 else where[0]).reshape(-1).long()

    def end(self, loop: "LoopState") -> None:
        """Each network's final mask (name -> bool tensor in the weight's own shape), for its record."""
        # a layer the distribution keeps dense (ERK's small layers) has nothing to move and stays dense
        self.final_masks = [{name: torch.ones(self.shapes[name], dtype=torch.bool) for name in self.names
                             if name not in self.index} for _ in range(loop.count)]
        for name, j in self.index.items():
            shape, numel = self.shapes[name], math.prod(self.shapes[name])
            where = self._layout_of(loop, name).cpu()
            for i in range(loop.count):
                part = loop.multipliers[j] if loop.count == 1 else loop.multipliers[j][i]
                flat = torch.zeros(numel, dtype=torch.bool)
                flat[where] = part.reshape(-1).ne(0).cpu()
                self.final_masks[i][name] = flat.view(shape)

    def due(self, iteration: int) -> bool:
        return iteration % self.schedule.update_every == 0 and 0 < iteration < self.stop

    def after_step(self, loop: "LoopState") -> None:
        if not self.due(loop.iteration) or all(m == "static" for m in self.methods):
            return
        grads = dense_gradients(loop) if "rigl" in self.methods else None
        fraction = self.schedule.fraction(loop.iteration, self.stop)
        updates = [{"iteration": loop.iteration, "dropped": {}, "grown": {}} for _ in self.methods]
        with torch.no_grad():
            for name, j in self.index.items():
                if self.nm:
                    self._update_nm_layer(loop, name, j, grads, fraction, updates)
                else:
                    self._update_layer(loop, name, j, grads, fraction, updates)
        for i, update in enumerate(updates):
            if self.methods[i] != "static":
                self.history[i].append(update)
        self._save_state(loop)

    def _update_layer(self, loop: "LoopState", name: str, j: int, grads: list[Tensor] | None, fraction: float,
                      updates: list[dict]) -> None:
        """Drop and grow in layer `name` of every moving network at once (rows of one matrix: one topk for all of
        them runs faster than one per network)."""
        weight, multiplier = loop.weights[j], loop.multipliers[j]
        rows = [i for i, method in enumerate(self.methods) if method != "static"]
        flat_w, flat_m = weight.view(loop.count, -1), multiplier.view(loop.count, -1)  # loop layout, per network
        w, kept = flat_w[rows], flat_m[rows] != 0
        counts = [int(fraction * int(k)) for k in kept.sum(1)]
        most = max(counts)
        for i, n in zip(rows, counts):
            updates[i]["dropped"][name] = updates[i]["grown"][name] = n
        if most == 0:
            return
        first = torch.arange(most, device=w.device).unsqueeze(0) < torch.tensor(counts, device=w.device).unsqueeze(1)
        which = torch.arange(len(rows), device=w.device).unsqueeze(1).expand(-1, most)[first]
        alike = len(set(counts)) == 1  # every row drops as many (the same fraction and distribution): no order needed
        sizes = kept.sum(1)
        if alike and bool((sizes == sizes[0]).all()):  # rank only the kept weights (a tenth of them, say)
            positions = kept.nonzero()[:, 1].view(len(rows), -1)
            smallest = torch.topk(w.gather(1, positions).abs(), most, dim=1, largest=False, sorted=False).indices
            drop = positions.gather(1, smallest).reshape(-1)
        else:
            magnitude = torch.where(kept, w.abs(), torch.full_like(w, math.inf))
            drop = torch.topk(magnitude, most, dim=1, largest=False).indices[first]  # each row's n smallest kept
        after = kept.clone()
        after[which, drop] = False
        score = torch.stack([torch.rand(w.shape[1], generator=self.generators[i]).to(w.device)
                             if self.methods[i] == "set" else grads[j].view(loop.count, -1)[i].abs().to(w.dtype)
                             for i in rows])
        score = torch.where(after, torch.full_like(score, -math.inf), score)
        grow = torch.topk(score, most, dim=1, sorted=not alike).indices[first]  # each row's n best not kept
        after[which, grow] = True
        index = torch.tensor(rows, device=w.device)
        flat_m[index] = after.to(flat_m.dtype)
        changed_rows, changed = index[torch.cat([which, which])], torch.cat([drop, grow])
        flat_w[changed_rows, changed] = 0  # dropped weights vanish, grown ones start at zero
        for state in loop.optimizer.state.get(weight, {}).values():
            if isinstance(state, Tensor) and state.shape == weight.shape:
                state.view(loop.count, -1)[changed_rows, changed] = 0

    def _update_nm_layer(self, loop: "LoopState", name: str, j: int, grads: list[Tensor] | None,
                         fraction: float, updates: list[dict]) -> None:
        """`_update_layer` under an N:M pattern, one network after another."""
        weight, multiplier = loop.weights[j], loop.multipliers[j]
        states = [s for s in loop.optimizer.state.get(weight, {}).values()
                  if isinstance(s, Tensor) and s.shape == weight.shape]
        for i, method in enumerate(self.methods):
            if method == "static":
                continue
            w, m = weight.view(loop.count, -1)[i], multiplier.view(loop.count, -1)[i]
            g = grads[j].view(loop.count, -1)[i] if grads is not None else None
            changed, dropped = self._update_nm(w, m, g, method, fraction, i, self.where[name])
            for state in states:
                state.view(loop.count, -1)[i][changed] = 0
            updates[i]["dropped"][name] = updates[i]["grown"][name] = dropped

    def _update_nm(self, w: Tensor, m: Tensor, g: Tensor | None, method: str, fraction: float, i: int,
                   where: Tensor) -> tuple[Tensor, int]:
        """Network i's drop and grow under an N:M pattern (flat views): each group of M consecutive input weights
        (standard layout) that loses weights to the drop grows as many back among its own non-kept weights, so
        every group keeps N."""
        m_count = self.nm[1]
        kept = m[where] != 0  # standard layout, flat
        n = int(fraction * int(kept.sum()))
        if n == 0:
            return torch.zeros(0, dtype=torch.long, device=w.device), 0
        standard = w[where]
        magnitude = torch.where(kept, standard.abs(), torch.full_like(standard, math.inf))
        drop = torch.topk(magnitude, n, largest=False).indices
        after = kept.clone()
        after[drop] = False
        if method == "set":
            score = torch.rand(standard.shape, generator=self.generators[i]).to(w.device)
        else:
            score = g[where].abs().to(w.dtype)
        groups = after.view(-1, m_count)
        lost = (~after & kept).view(-1, m_count).sum(1, keepdim=True)  # weights each group dropped
        score = torch.where(groups, torch.full_like(score.view(-1, m_count), -math.inf), score.view(-1, m_count))
        rank = torch.argsort(torch.argsort(score, dim=1, descending=True, stable=True), dim=1, stable=True)
        grow = ((rank < lost) & ~groups).view(-1)
        after |= grow
        m[where] = after.to(m.dtype)
        changed = where[torch.cat([drop, grow.nonzero().view(-1)])]
        w[changed] = 0  # dropped weights vanish, grown ones start at zero
        return changed, n


class SparseHooks:
    """`hooks_for` of lth.training.trainer.train_networks for sparse training: the DynamicSparsity hook of each
    training loop, network i with method `methods[i]` and growth seed `seeds[i]`. Picklable and rebuilt by
    every process under torchrun (lth.training.distributed: `distributable`), where `fingerprint` shows that
    every process made the same mask updates."""

    distributable = True

    def __init__(self, schedule: SparseSchedule, shapes: Mapping[str, tuple[int, ...]], methods: Sequence[str],
                 seeds: Sequence[int], nm: Optional[tuple[int, int]] = None):
        self.schedule, self.shapes, self.methods, self.seeds, self.nm = schedule, dict(shapes), list(methods), \
            list(seeds), nm
        self.made: list[tuple[DynamicSparsity, list[int]]] = []

    def __getstate__(self) -> dict:
        return {**self.__dict__, "made": []}  # what is sent is the recipe, not a loop's hooks

    def __call__(self, indices: Sequence[int]) -> list[Hook]:
        indices = list(indices)
        hook = DynamicSparsity(self.schedule, self.shapes, [self.methods[i] for i in indices],
                               [self.seeds[i] for i in indices], self.nm)
        self.made.append((hook, indices))
        return [hook]

    def results(self) -> dict[int, tuple[dict[str, Tensor], list[dict]]]:
        """Network index -> (its final mask, its update history)."""
        return {i: (hook.final_masks[position], hook.history[position])
                for hook, indices in self.made for position, i in enumerate(indices)}

    def fingerprint(self) -> str:
        """A digest of every final mask and update history."""
        import hashlib
        import json

        digest = hashlib.sha256()
        for i, (mask, history) in sorted(self.results().items()):
            digest.update(json.dumps([i, history], sort_keys=True).encode())
            for name in sorted(mask):
                digest.update(mask[name].cpu().numpy().tobytes())
        return digest.hexdigest()[:16]


def dense_gradients(loop: "LoopState") -> list[Tensor]:
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
