"""How far each round prunes: IMP's iterative schedule, or one shot straight to a target.

Iterative (the default): round r keeps round(n (1 - rate)^r) of a layer's n weights (lth.pruning.ranking).
One-shot: a single pruning round (r01) straight to `target` of all prunable weights, with the per-layer
fractions IMP would reach at that sparsity: every pruned layer keeps n (1 - rate)^e for the one real
exponent e at which the kept weights add up to the target, so a one-shot ticket and IMP's round of equal
sparsity differ in how they were pruned, not in how sparse each layer is. Counts are apportioned by
largest remainder, so the total is exactly round(N x target). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from lth.core.errors import LthError


@dataclass(frozen=True)
class Schedule:
    name: str
    description: str


SCHEDULES: dict[str, Schedule] = {
    s.name: s
    for s in [
        Schedule("iterative", "IMP: every round removes `rates` of each layer kind's survivors"),
        Schedule("oneshot", "one pruning round straight to `target` (IMP's per-layer fractions at that sparsity)"),
    ]
}


def oneshot_keep(sizes: Mapping[str, int], kinds: Mapping[str, str], rates: Mapping[str, float], method: str,
                 target: float) -> dict[str, int]:
    """How many weights each layer keeps when pruning dense layers of `sizes` to `target` of all in one shot.

    Layers whose kind has rate 0 are not pruned. `method` 'global' only fixes the total (all pruned layers
    then compete for it); 'layerwise' also fixes each layer's share.
    """
    if not 0 < target < 1:
        raise LthError(f"bad target {target!r}: the fraction of weights remaining must be in (0, 1)")
    total = sum(sizes.values())
    pruned = [name for name in sizes if rates.get(kinds[name], 0.0) > 0]
    fixed = total - sum(sizes[n] for n in pruned)
    wanted = round(total * target) - fixed  # what the pruned layers keep together
    if not pruned or wanted < 1:
        raise LthError(f"target {100 * target:g}% cannot be reached: the layers that are never pruned (rate 0) "
                       f"already hold {100 * fixed / total:.2f}% of the weights; prune them too (rates) or aim higher")
    if method == "global":
        fractions = {n: float(wanted) / sum(sizes[p] for p in pruned) for n in pruned}
    else:
        exponent = _exponent({n: (sizes[n], 1.0 - rates[kinds[n]]) for n in pruned}, wanted)
        fractions = {n: (1.0 - rates[kinds[n]]) ** exponent for n in pruned}
    return {**{n: sizes[n] for n in sizes if n not in pruned}, **_apportion({n: sizes[n] * fractions[n] for n in pruned},
                                                                            wanted)}


def _exponent(layers: Mapping[str, tuple[int, float]], wanted: int) -> float:
    """The e >= 0 with sum(n * keep^e) = wanted (it decreases in e): bisection to float precision."""
    kept = lambda e: sum(n * keep**e for n, keep in layers.values())  # noqa: E731
    low, high = 0.0, 1.0
    while kept(high) > wanted:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if kept(middle) > wanted else (low, middle)
    return (low + high) / 2


def _apportion(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer counts close to `shares` that add up to `total`: floors, then the largest remainders get one more."""
    counts = {n: int(share) for n, share in shares.items()}
    by_remainder = sorted(shares, key=lambda n: (-(shares[n] - counts[n]), n))
    for n in by_remainder[: total - sum(counts.values())]:
        counts[n] += 1
    return counts
