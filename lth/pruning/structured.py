"""Structured pruning: whole neurons and conv channels instead of single weights.

A *unit* is a row of a Linear weight (a neuron) or an output channel of a Conv2d weight (a filter).
A unit's score is the mean of the criterion registry's per-weight scores over its surviving weights
(for large_final that is its L1 norm / fan-in, for movement its mean movement ...), so every criterion
of `lth.pruning.criteria` works at unit level unchanged. Each round keeps round(n * (1 - rate)^r) of a
layer's n units, as `lth.pruning.prune` does for weights.

Masks keep today's shapes: a pruned unit is a zero row of its layer *and* zero input columns of
the layers that read it (its consumers), so training, rewinding and the actions need no change, the
reported weight counts are what a compacted network really holds, and `lth.compact` can cut the unit
out without changing the network's function. The output layer's units (the classes) are never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import Tensor

from lth.core.errors import LthError
from lth.core.masks import Mask
from lth.pruning.ranking import kept_after, top_k
from lth.core.seeds import derive_seed

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class UnitLayer:
    """A layer whose output units can be pruned, and the layers that read those units as input columns."""

    weight: str  # e.g. 'fc1.weight'; its units are dim 0
    consumers: tuple[str, ...]  # e.g. ('fc2.weight',); the units are their dim-1 columns (span columns each)


def unit_span(producer_shape: tuple[int, ...], consumer_shape: tuple[int, ...]) -> int:
    """Input columns of the consumer per unit of the producer: 1, or H*W where a conv map is flattened into a Linear."""
    units, columns = producer_shape[0], consumer_shape[1]
    if columns % units:
        raise ValueError(f"consumer with {columns} input columns cannot read {units} units")
    return columns // units


def unit_layers(model: "nn.Module", kinds: Mapping[str, str]) -> list[UnitLayer]:
    """The prunable units of `model` (whose prunable layers and kinds are `kinds`), producer before consumer.

    A model that says what its units are (`structured_units(kinds)`: lth's ResNet, its blocks' inner
    channels) is taken at its word; any other must be a chain of layers (lth.models.topology), each
    prunable layer but the output one feeding its units to the next.
    """
    from lth.models.layers import weight_name
    from lth.models.topology import chain_layers

    own = getattr(model, "structured_units", None)
    if own is not None:
        return [UnitLayer(weight, tuple(consumers)) for weight, consumers in own(kinds)]
    names = [weight_name(name) for name in chain_layers(model)]
    return [UnitLayer(a, (b,)) for a, b in zip(names, names[1:]) if kinds[a] != "output"]


def unit_scores(scores: Tensor, alive: Tensor) -> Tensor:
    """Per unit: the mean score of its surviving weights (-inf for a unit with none left)."""
    flat_scores = scores.flatten(1).float()
    flat_alive = alive.flatten(1)
    count = flat_alive.sum(1)
    total = torch.where(flat_alive, flat_scores, torch.zeros_like(flat_scores)).sum(1)
    return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("-inf")))


def alive_units(mask: Tensor) -> Tensor:
    """Units with at least one kept weight."""
    return mask.flatten(1).any(1)


def _broadcast(keep: Tensor, dim: int, ndim: int) -> Tensor:
    shape = [1] * ndim
    shape[dim] = -1
    return keep.view(shape)


def structured_next_mask(
    scores: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    kinds: Mapping[str, str],
    rates: Mapping[str, float],
    method: str,
    round_index: int,
    seed: int,
    units: Sequence[UnitLayer],
) -> Mask:
    """The mask for round `round_index` (>= 1) with whole units pruned at each unit layer's rate.

    `units` are the model's unit layers (`unit_layers`). A unit layer keeps round(units * (1 - rate)^round) of its units (the best mean scores among the
    survivors; ties broken by a seeded random order); the rows of the dropped units and their input
    columns in every consumer become False. Layers with rate 0 keep their units.
    """
    if round_index < 1:
        raise ValueError("round 0 is the dense network; pruning starts at round 1")
    if method != "layerwise":
        raise LthError(f"structured pruning is per layer; got pruning method '{method}'")
    generator = torch.Generator().manual_seed(derive_seed(seed, "structured", round_index))
    new = {name: m.clone() for name, m in mask.items()}
    for layer in units:
        m = new[layer.weight]  # already without the input columns of units its producer dropped this round
        alive = alive_units(m).cpu()
        rate = rates.get(kinds[layer.weight], 0.0)
        if rate > 0:
            target = min(kept_after(m.shape[0], rate, round_index), int(alive.sum()))
            keep = top_k(unit_scores(scores[layer.weight].cpu(), m.cpu()), alive, target, generator)
        else:
            keep = alive
        keep = keep.to(m.device)
        new[layer.weight] &= _broadcast(keep, 0, m.dim())
        for consumer in layer.consumers:
            columns = keep.repeat_interleave(unit_span(tuple(m.shape), tuple(mask[consumer].shape)))
            new[consumer] &= _broadcast(columns, 1, mask[consumer].dim())
    return new
