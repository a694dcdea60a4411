"""What happens to weights between rounds: a mask-1 action on kept weights, a mask-0 action on pruned ones.

Each action is a pure function of one layer's tensors. `rewind_state` assembles a network's
starting state for the next round from them; everything that is not a prunable weight
(biases, BatchNorm, buffers) goes back to the rewind point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import Tensor

from lth.errors import unknown_choice


@dataclass(frozen=True)
class LayerState:
    """One prunable layer at the moment of rewinding."""

    w_init: Tensor  # θ0
    w_rewind: Tensor  # θk, the rewind point (θ0 when rewinding to iteration 0)
    w_final: Tensor  # end of the round just trained
    mask: Tensor  # the new mask, True = kept


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    values: Callable[[LayerState], Tensor]


KEPT_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        Action("reset", "kept weights restart from the rewind point (θ0, or θk with --rewind k)", lambda s: s.w_rewind),
    ]
}

PRUNED_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        Action("zero", "pruned weights are set to 0 and stay 0", lambda s: torch.zeros_like(s.w_rewind)),
    ]
}


def rewind_state(
    rewind_point: Mapping[str, Tensor],
    init: Mapping[str, Tensor],
    final: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    kept: str = "reset",
    pruned: str = "zero",
) -> dict[str, Tensor]:
    """The next round's starting state: kept and pruned weights by their actions, the rest rewound."""
    if kept not in KEPT_ACTIONS:
        raise unknown_choice("mask-1 action", kept, KEPT_ACTIONS)
    if pruned not in PRUNED_ACTIONS:
        raise unknown_choice("mask-0 action", pruned, PRUNED_ACTIONS)
    state = {name: t.clone() for name, t in rewind_point.items()}
    for name, m in mask.items():
        layer = LayerState(init[name], rewind_point[name], final[name], m)
        state[name] = torch.where(m, KEPT_ACTIONS[kept].values(layer), PRUNED_ACTIONS[pruned].values(layer))
    return state
