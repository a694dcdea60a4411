"""Scores + current mask + rates -> next mask: which weights compete (METHODS) and what a unit is (GRANULARITIES).

Round r keeps round(n * (1 - rate)^r) of a layer's n weights (or of all participating weights, for
global pruning; lth.pruning.ranking). Only surviving weights are candidates.

Torch is imported inside the functions: the registries' names serve help texts and params.yaml
validation without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional

from lth.core.errors import unknown_choice
from lth.core.seeds import derive_seed
from lth.pruning.ranking import kept_after, top_k

if TYPE_CHECKING:
    import torch
    from torch import Tensor

    from lth.core.masks import Mask


def _layerwise(scores, mask, pruned, keep, generator) -> dict:  # noqa: ANN001
    """Each pruned layer keeps its own keep[name] best-scored weights."""
    return {name: top_k(scores[name], mask[name], min(keep[name], int(mask[name].sum())), generator)
            for name in pruned}


def _global(scores, mask, pruned, keep, generator) -> dict:  # noqa: ANN001
    """All pruned layers' weights compete together for sum(keep) places."""
    import torch

    if not pruned:
        return {}
    alive = int(sum(int(mask[n].sum()) for n in pruned))
    flat = top_k(torch.cat([scores[n].flatten().float().cpu() for n in pruned]),
                 torch.cat([mask[n].flatten().cpu() for n in pruned]),
                 min(sum(keep[n] for n in pruned), alive), generator)
    out, offset = {}, 0
    for n in pruned:
        size = mask[n].numel()
        out[n] = flat[offset : offset + size].view(mask[n].shape).to(mask[n].device)
        offset += size
    return out


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    # (scores, mask, pruned layer names, how many each keeps, generator) -> new masks of the pruned layers
    select: Callable[..., dict]
    # (layer sizes of the pruned layers, their rates, round) -> how many each keeps after the round
    counts: Callable[..., dict]


def _layerwise_counts(sizes, rates, round_index) -> dict:  # noqa: ANN001
    return {name: kept_after(n, rates[name], round_index) for name, n in sizes.items()}


def _global_counts(sizes, rates, round_index) -> dict:  # noqa: ANN001
    """One count for all pruned layers together (set on the first; the selection uses the sum)."""
    names = list(sizes)
    total = kept_after(sum(sizes.values()), rates[names[0]], round_index) if names else 0
    return {name: total if i == 0 else 0 for i, name in enumerate(names)}


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("layerwise", "each layer keeps its own fraction (Frankle & Carbin's LeNet and Conv nets)", _layerwise,
               _layerwise_counts),
        Method("global", "all pruned layers compete together (Frankle et al.'s VGG and ResNet)", _global,
               _global_counts),
    ]
}


def next_mask(
    scores: Mapping[str, "Tensor"],
    mask: Mapping[str, "Tensor"],
    kinds: Mapping[str, str],
    rates: Mapping[str, float],
    method: str,
    round_index: int,
    seed: int,
    keep: Optional[Mapping[str, int]] = None,
) -> "Mask":
    """The mask for round `round_index` (>= 1): prune the lowest-scored survivors of `mask`.

    `kinds` maps layer name -> 'conv' | 'fc' | 'output'; `rates` maps kind -> fraction pruned per round.
    Layers whose kind has rate 0 keep their mask unchanged. `keep` (layer -> count; for global pruning
    only its sum counts) replaces the schedule's counts (lth.pruning.schedule's one-shot).
    """
    import torch

    if round_index < 1:
        raise ValueError("round 0 is the dense network; pruning starts at round 1")
    if method not in METHODS:
        raise unknown_choice("pruning method", method, METHODS)
    generator = torch.Generator().manual_seed(derive_seed(seed, "prune", round_index))
    pruned = [name for name in mask if rates.get(kinds[name], 0.0) > 0]
    new = {name: m.clone() for name, m in mask.items()}
    if keep is None:
        keep = METHODS[method].counts({n: mask[n].numel() for n in pruned}, {n: rates[kinds[n]] for n in pruned},
                                      round_index)
    new.update(METHODS[method].select(scores, mask, pruned, keep, generator))
    return new


def random_mask_like(mask: Mapping[str, "Tensor"], seed: int) -> "Mask":
    """A uniformly random mask with exactly the same number of kept weights in every layer as `mask`."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out: Mask = {}
    for name, m in mask.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[: int(m.sum())]] = True
        out[name] = keep.view(m.shape).to(m.device)
    return out


# --- what one pruned unit is ------------------------------------------------------------------------------


def _unstructured(scores, mask, kinds, rates, method, round_index, seed, units, keep=None) -> "Mask":  # noqa: ANN001
    return next_mask(scores, mask, kinds, rates, method, round_index, seed, keep)


def _structured(scores, mask, kinds, rates, method, round_index, seed, units) -> "Mask":  # noqa: ANN001
    from lth.pruning.structured import structured_next_mask

    if units is None:
        raise ValueError("structured pruning needs the model's unit layers")
    return structured_next_mask(scores, mask, kinds, rates, method, round_index, seed, units())


def kept_per_group(n: int, m: int, rate: float, round_index: int) -> int:
    """N:M pruning's round r keeps max(N, min(M, round(M (1 - rate)^r))) of every group of M: IMP's gradual
    schedule within each group, exactly N:M once that reaches N."""
    return max(n, min(m, kept_after(m, rate, round_index)))


def _nm(scores, mask, kinds, rates, method, round_index, seed, units, keep=None, nm=(2, 4)) -> "Mask":  # noqa: ANN001
    """Per group of M consecutive input weights of every pruned layer, the best-scored survivors (lth.pruning.nm);
    the one-shot schedule (`keep` given; its counts do not apply) goes straight to N:M."""
    from lth.core.errors import LthError
    from lth.pruning.nm import check_nm_shapes, nm_keep

    if round_index < 1:
        raise ValueError("round 0 is the dense network; pruning starts at round 1")
    if method != "layerwise":
        raise LthError(f"N:M pruning is per group of weights within each layer; got pruning method '{method}'")
    n, m = nm
    pruned = [name for name in mask if rates.get(kinds[name], 0.0) > 0]
    check_nm_shapes({name: tuple(mask[name].shape) for name in pruned}, m)
    new = {name: t.clone() for name, t in mask.items()}
    for name in pruned:
        k = n if keep is not None else kept_per_group(n, m, rates[kinds[name]], round_index)
        new[name] = nm_keep(scores[name], mask[name], k, m)
    return new


def _nm_options(prune) -> dict:  # noqa: ANN001 - lth.pruning.settings.PruneSettings
    from lth.pruning.nm import parse_nm

    return {"nm": parse_nm(prune.nm)}


@dataclass(frozen=True)
class Granularity:
    """What one pruned unit is; `next_mask(scores, mask, kinds, rates, method, round, seed, units, **options)`,
    `units` a function giving the model's unit layers (lth.pruning.structured.unit_layers; only structured calls
    it), `options(prune settings)` the further keyword arguments its next_mask takes from the pruning settings
    (N:M's pattern)."""

    name: str
    description: str
    next_mask: Callable[..., "Mask"]
    options: Callable[..., dict] = lambda prune: {}


GRANULARITIES: dict[str, Granularity] = {
    g.name: g
    for g in [
        Granularity("unstructured", "single weights (Frankle & Carbin's IMP)", _unstructured),
        Granularity("structured", "whole neurons and conv channels, per layer; see lth.pruning.structured",
                    _structured),
        Granularity("nm", "N:M: N kept in every M consecutive input weights (prune.nm; 2:4 runs as GPU "
                          "semi-structured sparsity, lth compact --nm), tightening per round like IMP", _nm,
                    _nm_options),
    ]
}
