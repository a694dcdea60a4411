"""The arithmetic precision of forward and backward passes.

bf16 runs forward and backward under bfloat16 autocast; weights, masks, gradients and optimizer state
stay fp32, so pruned weights stay exactly zero and the optimizer's arithmetic is unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from lth.core.errors import unknown_choice

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Precision:
    name: str
    description: str
    autocast_dtype: Optional[str]  # a torch dtype name, None: no autocast


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in [
        Precision("fp32", "plain float32 (or the data's own dtype)", None),
        Precision("bf16", "bfloat16 autocast for forward and backward; weights, masks and optimizer stay fp32",
                  "bfloat16"),
    ]
}


def autocast(device: "torch.device", precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for the forward pass at `precision` ('fp32': no autocast at all).

    The weight-cast cache is off: inside a CUDA graph a cached cast would be recorded once and go stale.
    """
    import torch

    if precision not in PRECISIONS:
        raise unknown_choice("precision", precision, PRECISIONS)
    dtype = PRECISIONS[precision].autocast_dtype
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=getattr(torch, dtype), cache_enabled=False)
