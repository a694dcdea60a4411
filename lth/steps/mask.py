"""Step `mask@rNN`: the next mask, keeping the best-scored survivors of the previous mask at the configured
rates, per layer or globally, single weights or whole units (lth.pruning.prune)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional

from lth.core.seeds import derive_seed
from lth.runs.params import round_index
from lth.runs.run import Run, State
from lth.runs.settings import RunSettings


def outputs(run: Run, key: str) -> list[Path]:
    return [run.layout.trial_file(run.layout.round_dir(key, "mask"), t) for t in run.trials]


def next_mask(settings: RunSettings, scores: Mapping, mask: Mapping, kinds: Mapping[str, str], next_round: int,
              units: Optional[Callable[[], list]] = None) -> State:
    """The mask for `next_round`: the lowest-scored survivors of `mask` removed at the configured rates
    (one trial's settings).

    With a trainable mask-0 action (reinit_trainable) nothing is ever removed for good: every round
    selects the top (1 - rate) of all weights afresh, so the network keeps changing instead of shrinking.
    The one-shot schedule (lth.pruning.schedule) prunes the dense mask straight to its target in round 1.
    `units` gives the model's unit layers (`Run.units`); structured pruning needs it.
    """
    import torch

    from lth.pruning.actions import PRUNED_ACTIONS
    from lth.pruning.prune import GRANULARITIES
    from lth.pruning.schedule import oneshot_keep

    granularity = GRANULARITIES[settings.pruning]
    prune = granularity.next_mask
    rates, method = settings.prune.rates, settings.prune.method
    keep = granularity.options(settings.prune)  # N:M's pattern; the iterative schedule's counts are prune's own
    if settings.prune.schedule == "oneshot":
        check_oneshot_round(next_round)
        keep["keep"] = oneshot_keep({n: m.numel() for n, m in mask.items()}, kinds, rates, method,
                                    settings.prune.target)
    if not PRUNED_ACTIONS[settings.mask0_action].frozen:
        everything = {name: torch.ones_like(m) for name, m in mask.items()}
        return prune(scores, everything, kinds, rates, method, 1, derive_seed(settings.seed, "reselect", next_round),
                     units, **keep)
    return prune(scores, mask, kinds, rates, method, next_round, settings.seed, units, **keep)


def check_oneshot_round(round_index: int) -> None:
    """The one-shot schedule has one pruning round (r01)."""
    from lth.core.errors import LthError

    if round_index != 1:
        raise LthError(f"the one-shot schedule prunes once, in round r01; round r{round_index:02d} was asked for: "
                       "run 1 pruning round (--rounds 1; params.yaml: rounds: {r01: {prev: r00}})")


def execute(run: Run, key: str) -> float:
    """Writes every trial's mask; returns the fraction of weights trial 0 keeps."""
    from lth.core.masks import remaining_fraction

    layout, prev, r = run.layout, run.previous(key), round_index(key)
    kept = 1.0
    for t in run.trials:
        scores = run.load_scores(layout.trial_file(layout.round_dir(key, "scores"), t))
        mask = next_mask(run.trial_settings(t), scores, run.mask(layout.round_dir(prev, "mask"), t), run.kinds, r,
                         run.units)
        run.save(layout.trial_file(layout.round_dir(key, "mask"), t), "mask", mask, round=r)
        kept = remaining_fraction(mask) if t == 0 else kept
    return kept
