"""Control arms of a round: networks trained beside the ticket to show what the ticket's mask and weights buy.

A control never feeds the next round's mask; it is trained and evaluated, nothing more.
- reinit: this round's ticket mask on freshly initialised weights (Frankle & Carbin's "random reinit");
- random-prune: a random mask with the same per-layer sparsity on the rewound weights ("random pruning").
Torch is imported when a control is made, so the registry's names serve help texts without loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping

from lth.core.seeds import derive_seed

if TYPE_CHECKING:
    from torch import Tensor

    from lth.core.masks import Mask

State = dict[str, "Tensor"]


@dataclass(frozen=True)
class ControlInputs:
    """What a control may use: the trial's ticket this round and the points it was rewound from."""

    model: str
    input_shape: tuple[int, int, int]
    num_outputs: int
    seed: int  # the trial's seed
    round_index: int
    mask: Mapping[str, "Tensor"]  # the ticket's mask this round
    rewind: Callable[[Mapping[str, "Tensor"]], State]  # the ticket's mask-1 / mask-0 actions, for another mask


@dataclass(frozen=True)
class Control:
    name: str
    description: str
    make: Callable[[ControlInputs], tuple[State, "Mask"]]  # -> (starting weights, mask)


def _reinit(c: ControlInputs) -> tuple[State, "Mask"]:
    from lth.core.masks import apply_mask
    from lth.models import build_model

    fresh = build_model(c.model, c.input_shape, c.num_outputs, derive_seed(c.seed, "reinit", c.round_index))
    mask = {k: v.clone() for k, v in c.mask.items()}
    return apply_mask({k: v.detach().clone() for k, v in fresh.state_dict().items()}, mask), mask


def _random_prune(c: ControlInputs) -> tuple[State, "Mask"]:
    from lth.pruning.prune import random_mask_like

    mask = random_mask_like(c.mask, derive_seed(c.seed, "random-prune", c.round_index))
    return c.rewind(mask), mask


CONTROLS: dict[str, Control] = {
    c.name: c
    for c in [
        Control("reinit", "the ticket's mask on freshly initialised weights", _reinit),
        Control("random-prune", "a random mask of the same per-layer sparsity on the rewound weights", _random_prune),
    ]
}
