"""What happens to weights between rounds: a mask-1 action on kept weights, a mask-0 action on pruned ones.

Each action is a pure function of one layer's tensors (Zhou et al. 2019). `rewind_state` assembles a
network's starting state for the next round from them; everything that is not a prunable weight
(biases, BatchNorm, buffers) goes back to the rewind point. Whether pruned weights are then frozen
(held at their starting value through every optimizer step) or trainable is a property of the mask-0
action; the trainer reads it from `PRUNED_ACTIONS[name].frozen`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from lth.core.errors import LthError, unknown_choice


@dataclass(frozen=True)
class LayerState:
    """One prunable layer at the moment of rewinding."""

    w_init: Tensor  # θ0
    w_rewind: Tensor  # θk, the rewind point (θ0 when the rewind step is 0)
    w_final: Tensor  # end of the round just trained
    w_fresh: Optional[Tensor]  # a fresh draw from the model's init distribution (for actions that need one)
    mask: Tensor  # the new mask, True = kept
    generator: torch.Generator  # seeded randomness for shuffles and random signs


@dataclass(frozen=True)
class Action:
    name: str
    description: str
    values: Callable[[LayerState], Tensor]  # the layer's new values (used where the mask selects this action)
    needs_fresh: bool = False
    frozen: bool = True  # mask-0 actions only: are pruned weights held fixed during training?


def _init_std(s: LayerState) -> float:
    """The per-layer constant of the signed-constant actions: the std of the layer's initial weights."""
    return float(s.w_init.float().std())


def _random_sign(s: LayerState) -> Tensor:
    signs = torch.randint(0, 2, s.w_init.shape, generator=s.generator).to(s.w_init) * 2 - 1
    return signs


def _reshuffle(s: LayerState) -> Tensor:
    """θ0's values at the kept positions, randomly permuted among those positions."""
    out = s.w_init.clone()
    kept = s.mask.flatten().nonzero().squeeze(1).cpu()
    flat = out.view(-1)
    flat[kept] = flat[kept[torch.randperm(len(kept), generator=s.generator)]]
    return out


def _fresh(s: LayerState) -> Tensor:
    if s.w_fresh is None:
        raise LthError("internal: a reinit action needs fresh initial weights")
    return s.w_fresh


def _moved_toward_zero(s: LayerState) -> Tensor:
    return torch.where(s.w_final.abs() < s.w_init.abs(), torch.zeros_like(s.w_init), s.w_init)


KEPT_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        Action("reset", "kept weights restart from θ0 (Frankle & Carbin)", lambda s: s.w_init),
        Action("rewind", "kept weights restart from θk, their value at the rewind step", lambda s: s.w_rewind),
        Action("reinit", "kept weights drawn afresh from the model's init distribution", _fresh, needs_fresh=True),
        Action("reshuffle", "kept weights take θ0's values permuted among the kept positions", _reshuffle),
        Action("signed_constant", "sign(θ0) x the layer's init std", lambda s: torch.sign(s.w_init) * _init_std(s)),
        Action("rand_signed_constant", "random sign x the layer's init std",
               lambda s: _random_sign(s) * _init_std(s)),
    ]
}

PRUNED_ACTIONS: dict[str, Action] = {
    a.name: a
    for a in [
        Action("zero", "pruned weights set to 0 and frozen (Frankle & Carbin)", lambda s: torch.zeros_like(s.w_init)),
        Action("freeze_init", "pruned weights frozen at θ0", lambda s: s.w_init),
        Action("freeze_init_zero_mask",
               "pruned weights frozen at 0 if they moved toward zero in training, else at θ0", _moved_toward_zero),
        Action("reinit_trainable", "pruned weights drawn afresh and left trainable (re-initialise instead of prune)",
               _fresh, needs_fresh=True, frozen=False),
    ]
}


def get_actions(kept: str, pruned: str) -> tuple[Action, Action]:
    if kept not in KEPT_ACTIONS:
        raise unknown_choice("mask-1 action", kept, KEPT_ACTIONS)
    if pruned not in PRUNED_ACTIONS:
        raise unknown_choice("mask-0 action", pruned, PRUNED_ACTIONS)
    return KEPT_ACTIONS[kept], PRUNED_ACTIONS[pruned]


def rewind_state(
    rewind_point: Mapping[str, Tensor],
    init: Mapping[str, Tensor],
    final: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    kept: str = "reset",
    pruned: str = "zero",
    fresh: Optional[Mapping[str, Tensor]] = None,
    seed: int = 0,
) -> dict[str, Tensor]:
    """The next round's starting state: kept and pruned weights by their actions, the rest rewound."""
    kept_action, pruned_action = get_actions(kept, pruned)
    generator = torch.Generator().manual_seed(seed)
    state = {name: t.clone() for name, t in rewind_point.items()}
    for name, m in mask.items():
        layer = LayerState(init[name], rewind_point[name], final[name], None if fresh is None else fresh[name], m,
                           generator)
        state[name] = torch.where(m, kept_action.values(layer), pruned_action.values(layer))
    return state
