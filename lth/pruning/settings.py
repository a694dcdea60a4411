"""How a round's mask is derived from the scores: which weights compete, and how many go per round.

Declared once (lth.core.config); no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth.core.config import check_choices, registry, setting
from lth.core.errors import LthError, unknown_choice
from lth.models import LAYER_KINDS, default_rates


def _fraction(value, what: str) -> float:  # noqa: ANN001 - a number or a string with %
    from lth.core.fractions import parse_fraction

    return parse_fraction(value, what)


def _nm_text(value) -> str:  # noqa: ANN001 - as written in params.yaml / settings.json
    """YAML 1.1 reads an unquoted 2:4 as the base-60 number 124: refuse it instead of misreading it."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise LthError(f"bad prune.nm {value}: write the N:M pattern in quotes, e.g. nm: '2:4' (YAML reads an "
                       "unquoted 2:4 as the number 124)")
    return value


@dataclass(frozen=True)
class PruneSettings:
    """Per layer or globally, how much of each kind of layer goes per round (or in one shot), and when a round's
    training may stop early (early-bird)."""

    method: str = setting("layerwise", "Which weights compete for survival.", choices=registry("lth.pruning.prune", "METHODS"),
                          label="pruning method", inline=True)
    rates: dict[str, float] = setting(
        help="Fraction of the surviving weights removed per round, per layer kind (conv, fc, output).",
        default_factory=default_rates)
    schedule: str = setting("iterative", "How far each round prunes.", choices=registry("lth.pruning.schedule", "SCHEDULES"), inline=True)
    target: float = setting(0.05, "Weights the one-shot schedule keeps, of all prunable ones: a fraction such as "
                                  "0.05, or a percentage such as 5%.", parse=lambda v: _fraction(v, "prune.target"))
    nm: str = setting("2:4", "N:M pattern of pruning 'nm': N kept in every M consecutive input weights (quote it "
                             "in YAML: nm: '2:4').", parse=_nm_text)
    early_bird: bool = setting(False, "Stop a round's training once the mask it would give has settled "
                                      "(You et al. 2020's early-bird tickets).")
    early_bird_distance: float = setting(0.1, "Early-bird: the mask has settled when its normalised Hamming "
                                              "distance to the previous check's stays below this for 5 checks "
                                              "(one per train.eval_every).")

    def validate(self) -> "PruneSettings":
        check_choices(self)
        for kind in self.rates:
            if kind not in LAYER_KINDS:
                raise unknown_choice("layer kind in rates", kind, LAYER_KINDS)
        for kind, rate in self.rates.items():
            if not 0 <= rate < 1:
                raise LthError(f"bad pruning rate {kind}={rate}: must be in [0, 1)")
        if not 0 < _fraction(self.target, "prune.target") < 1:
            raise LthError(f"bad prune.target {self.target!r}: one-shot pruning keeps fewer than all the weights "
                           "(a fraction such as 0.05, or a percentage such as 5%)")
        from lth.pruning.nm import parse_nm

        parse_nm(self.nm)
        if not 0 < self.early_bird_distance <= 1:
            raise LthError(f"bad early_bird_distance {self.early_bird_distance!r}: a normalised Hamming distance, "
                           "in (0, 1]")
        if self.method == "global":
            distinct = {r for r in self.rates.values() if r > 0}
            if len(distinct) > 1:
                raise LthError(
                    f"global pruning needs one rate for every pruned layer kind, got {dict(self.rates)}; "
                    "set the kinds to prune to the same rate and the others to 0"
                )
        return self
