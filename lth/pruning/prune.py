"""Scores + current mask + rates -> next mask, per layer or globally.

Round r keeps round(n * (1 - rate)^r) of a layer's n weights (or of all participating weights,
for global pruning). Computing the target from the round number, not from the previous count,
keeps the schedule exact instead of accumulating rounding. Only surviving weights are
candidates, and ties are broken by a seeded random order so equal scores never favour low indices.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from lth.core.masks import Mask
from lth.core.seeds import derive_seed


def kept_after(total: int, rate: float, round_index: int) -> int:
    """How many of `total` weights survive `round_index` rounds of pruning at `rate` per round."""
    return int(round(total * (1.0 - rate) ** round_index))


def _top_k(scores: Tensor, alive: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """Boolean mask of the k best-scored alive entries; ties resolved by a seeded random order."""
    flat_scores = scores.flatten().float().cpu()
    flat_alive = alive.flatten().cpu()
    order = torch.randperm(flat_scores.numel(), generator=generator)
    shuffled = torch.where(flat_alive, flat_scores, torch.tensor(float("-inf")))[order]
    ranked = torch.sort(shuffled, descending=True, stable=True).indices
    keep = torch.zeros_like(flat_alive)
    keep[order[ranked[:k]]] = True
    return keep.view(alive.shape).to(alive.device)


def next_mask(
    scores: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    kinds: Mapping[str, str],
    rates: Mapping[str, float],
    method: str,
    round_index: int,
    seed: int,
) -> Mask:
    """The mask for round `round_index` (>= 1): prune the lowest-scored survivors of `mask`.

    `kinds` maps layer name -> 'conv' | 'fc' | 'output'; `rates` maps kind -> fraction pruned per round.
    Layers whose kind has rate 0 keep their mask unchanged.
    """
    if round_index < 1:
        raise ValueError("round 0 is the dense network; pruning starts at round 1")
    generator = torch.Generator().manual_seed(derive_seed(seed, "prune", round_index))
    pruned = [name for name in mask if rates.get(kinds[name], 0.0) > 0]
    new = {name: m.clone() for name, m in mask.items()}
    if method == "layerwise":
        for name in pruned:
            target = min(kept_after(mask[name].numel(), rates[kinds[name]], round_index), int(mask[name].sum()))
            new[name] = _top_k(scores[name], mask[name], target, generator)
    elif method == "global":
        if not pruned:
            return new
        rate = rates[kinds[pruned[0]]]
        total = sum(mask[n].numel() for n in pruned)
        alive = int(sum(int(mask[n].sum()) for n in pruned))
        target = min(kept_after(total, rate, round_index), alive)
        flat = _top_k(
            torch.cat([scores[n].flatten().float().cpu() for n in pruned]),
            torch.cat([mask[n].flatten().cpu() for n in pruned]),
            target,
            generator,
        )
        offset = 0
        for n in pruned:
            size = mask[n].numel()
            new[n] = flat[offset : offset + size].view(mask[n].shape).to(mask[n].device)
            offset += size
    else:
        raise ValueError(f"unknown pruning method {method!r}")
    return new


def random_mask_like(mask: Mapping[str, Tensor], seed: int) -> Mask:
    """A uniformly random mask with exactly the same number of kept weights in every layer as `mask`."""
    generator = torch.Generator().manual_seed(seed)
    out: Mask = {}
    for name, m in mask.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[name] = keep.view(m.shape).to(m.device)
    return out
