"""How a sparse network's weights are shared among its layers, for training sparse from scratch.

- `uniform`: every prunable layer keeps the same fraction.
- `erk` (Erdős–Rényi-Kernel, Evci et al. 2020): a layer's density is proportional to
  (sum of its weight's dimensions) / (product of them), so small layers (the output layer, a first conv)
  stay denser and big ones give up more; layers whose density would exceed 1 are kept dense and the rest
  rescaled until the total is met.
- `erk-power`: the ERK scale raised to the power 0.5, halfway between uniform (power 0) and ERK (power 1).

Counts are exact: the network keeps round(remaining x total) weights, and a layer's share is apportioned by
largest remainder (ties in layer order), as the one-shot schedule does.
"""

from __future__ import annotations

import math
from typing import Mapping

from lth.core.errors import LthError, unknown_choice

DISTRIBUTIONS = {
    "uniform": "every layer keeps the same fraction",
    "erk": "Erdős–Rényi-Kernel: density proportional to (sum of dims) / (product of dims)",
    "erk-power": "ERK's scale to the power 0.5: between uniform and ERK",
}
POWERS = {"uniform": 0.0, "erk": 1.0, "erk-power": 0.5}


def densities(shapes: Mapping[str, tuple[int, ...]], remaining: float, distribution: str) -> dict[str, float]:
    """Each layer's target density (before rounding to whole weights)."""
    if distribution not in DISTRIBUTIONS:
        raise unknown_choice("distribution", distribution, DISTRIBUTIONS)
    if not 0 < remaining <= 1:
        raise LthError(f"bad remaining fraction {remaining}: it must be in (0, 1]")
    if not shapes:
        raise LthError("the model has no prunable layer to share the weights among")
    unscalable = [name for name, shape in shapes.items() if len(shape) < 2 or 0 in shape]
    if POWERS[distribution] and unscalable:  # (sum of dims) / (product of dims) needs a weight matrix or kernel
        name = unscalable[0]
        raise LthError(f"distribution {distribution} cannot scale layer '{name}' (weight shape {tuple(shapes[name])}): "
                       "it needs a weight of at least two non-empty dimensions; use the distribution uniform")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: (sum(shape) / sizes[name]) ** POWERS[distribution] for name, shape in shapes.items()}
    budget = remaining * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        left = budget - sum(sizes[name] for name in dense)
        scale = left / sum(raw[name] * sizes[name] for name in free)
        over = [name for name in free if scale * raw[name] > 1]
        if not over:
            return {name: 1.0 if name in dense else scale * raw[name] for name in shapes}
        dense.update(over)


def layer_counts(shapes: Mapping[str, tuple[int, ...]], remaining: float, distribution: str) -> dict[str, int]:
    """Weights each layer keeps: exact in total (round(remaining x total)), apportioned by largest remainder."""
    wanted = densities(shapes, remaining, distribution)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    total = round(remaining * sum(sizes.values()))
    ideal = {name: wanted[name] * sizes[name] for name in shapes}
    counts = {name: min(math.floor(ideal[name]), sizes[name]) for name in shapes}
    order = sorted(shapes, key=lambda name: -(ideal[name] - counts[name]))  # stable: ties keep layer order
    short = total - sum(counts.values())
    for name in order:
        if short <= 0:
            break
        if counts[name] < sizes[name]:
            counts[name] += 1
            short -= 1
    return counts
