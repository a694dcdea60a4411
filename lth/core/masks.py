"""The Mask type: one boolean tensor per prunable weight (True = kept), and what we report about it."""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

import torch
from torch import Tensor

Mask = dict[str, Tensor]


def ones_mask(model: torch.nn.Module, prunable: Iterable[str]) -> Mask:
    """The dense mask: every prunable weight kept."""
    params = dict(model.named_parameters())
    return {name: torch.ones_like(params[name], dtype=torch.bool) for name in prunable}


def kept_counts(mask: Mapping[str, Tensor]) -> dict[str, tuple[int, int]]:
    """Per layer: (weights kept, weights in the layer)."""
    return {name: (int(m.sum()), m.numel()) for name, m in mask.items()}


def remaining_fraction(mask: Mapping[str, Tensor]) -> float:
    """The fraction of prunable weights kept, over all layers (files keep fractions; tables show percent)."""
    counts = kept_counts(mask).values()
    total = sum(n for _, n in counts)
    return sum(k for k, _ in counts) / max(total, 1)


def tensor_remaining_fraction(state: Mapping[str, Tensor], names: Iterable[str]) -> dict[str, float]:
    """The fraction of nonzero entries actually present in the weights, per layer and overall ('all').

    Measured from the tensors themselves, so the sparsity we report is the sparsity that exists.
    """
    result: dict[str, float] = {}
    nonzero = total = 0
    for name in names:
        t = state[name]
        nz = int(torch.count_nonzero(t))
        result[name] = nz / t.numel()
        nonzero += nz
        total += t.numel()
    result["all"] = nonzero / max(total, 1)
    return result


def apply_mask(state: dict[str, Tensor], mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A copy of `state` with masked-out weights set to exactly zero."""
    out = dict(state)
    for name, m in mask.items():
        out[name] = state[name] * m.to(state[name].dtype)
    return out


def mask_distance(a: Mapping[str, Tensor], b: Mapping[str, Tensor],
                  within: Optional[Mapping[str, Tensor]] = None) -> float:
    """Normalised Hamming distance of two masks: the fraction of positions where they differ, counting only
    the positions kept by `within` (default: all), e.g. the weights that could still be pruned this round.

    0 for identical masks, 1 for complementary ones (You et al. 2020's early-bird distance).
    """
    differ = total = 0
    for name, m in a.items():
        diff = m.bool() ^ b[name].bool()
        if within is not None:
            room = within[name].bool()
            diff, size = diff & room, int(room.sum())
        else:
            size = diff.numel()
        differ += int(diff.sum())
        total += size
    return differ / total if total else 0.0
