"""Ranking survivors: how many of a layer's weights a round keeps, and which k of them score best.

Round r keeps round(n * (1 - rate)^r) of n weights: computed from the round number, not from the
previous count, so the schedule stays exact instead of accumulating rounding. Ties are broken by a
seeded random order, so equal scores never favour low indices. Shared by single-weight pruning
(lth.pruning.prune) and unit pruning (lth.pruning.structured).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def kept_after(total: int, rate: float, round_index: int) -> int:
    """How many of `total` weights survive `round_index` rounds of pruning at `rate` per round."""
    return int(round(total * (1.0 - rate) ** round_index))


def top_k(scores: "Tensor", alive: "Tensor", k: int, generator: "torch.Generator") -> "Tensor":
    """Boolean mask of the k best-scored alive entries; ties resolved by a seeded random order."""
    import torch

    flat_scores = scores.flatten().float().cpu()
    flat_alive = alive.flatten().cpu()
    order = torch.randperm(flat_scores.numel(), generator=generator)
    shuffled = torch.where(flat_alive, flat_scores, torch.tensor(float("-inf")))[order]
    ranked = torch.sort(shuffled, descending=True, stable=True).indices
    keep = torch.zeros_like(flat_alive)
    keep[order[ranked[:k]]] = True
    return keep.view(alive.shape).to(alive.device)
