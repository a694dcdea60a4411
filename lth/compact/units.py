"""Dead-unit analysis: which units (neurons / conv channels) of a masked ticket can be cut out, and why.

A unit (neuron / conv channel, see `lth.pruning.structured`) is cut out when it is *dead*:
- dead-out: all its outgoing weights (input columns of its consumers, among their surviving rows) are
  zero, so its value never reaches the output (unstructured masks make these by pruning columns);
- dead-in: all its incoming weights (among surviving input columns) are zero, so its value is a
  constant (activation of its bias / BatchNorm shift); `lth.compact.surgery` folds it into the consumers.
Removing units can make others dead, so the search runs to a fixpoint. A layer always keeps at least
one unit, the output layer's units (classes) and the network's input are never removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from lth.pruning.structured import UnitLayer, unit_span


@dataclass
class UnitPlan:
    """Per unit layer: which units stay, and why the others go."""

    keep: Tensor  # bool (units,)
    dead_in: Tensor  # bool (units,): removed with a constant value (folded into the consumers)
    dead_out: Tensor  # bool (units,): removed, its value never reached the output


def _connections(weight: Tensor) -> Tensor:
    """(out, in) bool: whether any weight links output unit o to input column i (kernels reduced)."""
    nonzero = weight != 0
    return nonzero.flatten(2).any(2) if nonzero.dim() > 2 else nonzero


def plan_units(layers: list[UnitLayer], weights: Mapping[str, Tensor]) -> dict[str, UnitPlan]:
    """Find every dead unit of `weights` (the masked tensors), iterating until no removal exposes another."""
    links = {name: _connections(w.detach().cpu()) for name, w in weights.items()}
    keep = {layer.weight: torch.ones(weights[layer.weight].shape[0], dtype=torch.bool) for layer in layers}
    feeders: dict[str, list[UnitLayer]] = {}
    for layer in layers:
        for consumer in layer.consumers:
            feeders.setdefault(consumer, []).append(layer)

    def kept_columns(name: str) -> Tensor:
        columns = torch.ones(links[name].shape[1], dtype=torch.bool)
        for producer in feeders.get(name, []):
            span = unit_span(tuple(weights[producer.weight].shape), tuple(weights[name].shape))
            columns &= keep[producer.weight].repeat_interleave(span)
        return columns

    def kept_rows(name: str) -> Tensor:
        return keep.get(name, torch.ones(links[name].shape[0], dtype=torch.bool))

    dead_in = {name: torch.zeros_like(k) for name, k in keep.items()}
    dead_out = {name: torch.zeros_like(k) for name, k in keep.items()}
    changed = True
    while changed:
        changed = False
        for layer in layers:
            name = layer.weight
            has_in = (links[name] & kept_columns(name)[None, :]).any(1)
            has_out = torch.zeros_like(has_in)
            for consumer in layer.consumers:
                span = unit_span(tuple(weights[name].shape), tuple(weights[consumer].shape))
                reach = (links[consumer] & kept_rows(consumer)[:, None]).any(0)
                has_out |= reach.view(-1, span).any(1)
            new_keep = keep[name] & has_in & has_out
            if not new_keep.any():  # a layer keeps one unit, so no tensor becomes empty
                new_keep = torch.zeros_like(new_keep)
                new_keep[int(keep[name].nonzero()[0])] = True
            if not torch.equal(new_keep, keep[name]):
                gone = keep[name] & ~new_keep
                dead_out[name] |= gone & ~has_out
                dead_in[name] |= gone & has_out & ~has_in
                keep[name] = new_keep
                changed = True
    return {name: UnitPlan(keep[name], dead_in[name], dead_out[name]) for name in keep}
