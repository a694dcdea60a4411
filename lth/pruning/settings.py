"""How a round's mask is derived from the scores: which weights compete, and how many go per round.

Declared once (lth.core.config); no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth.core.config import check_choices, setting
from lth.core.errors import LthError, unknown_choice
from lth.models import LAYER_KINDS


def _methods():
    from lth.pruning.prune import METHODS

    return METHODS


@dataclass(frozen=True)
class PruneSettings:
    """Per layer or globally, and the fraction of each kind of layer's survivors removed per round."""

    method: str = setting("layerwise", "Which weights compete for survival.", choices=_methods,
                          label="pruning method", inline=True)
    rates: dict[str, float] = setting(
        help="Fraction of the surviving weights removed per round, per layer kind (conv, fc, output).",
        default_factory=lambda: {"conv": 0.1, "fc": 0.2, "output": 0.1})

    def validate(self) -> "PruneSettings":
        check_choices(self)
        for kind in self.rates:
            if kind not in LAYER_KINDS:
                raise unknown_choice("layer kind in rates", kind, LAYER_KINDS)
        for kind, rate in self.rates.items():
            if not 0 <= rate < 1:
                raise LthError(f"bad pruning rate {kind}={rate}: must be in [0, 1)")
        if self.method == "global":
            distinct = {r for r in self.rates.values() if r > 0}
            if len(distinct) > 1:
                raise LthError(
                    f"global pruning needs one rate for every pruned layer kind, got {dict(self.rates)}; "
                    "set the kinds to prune to the same rate and the others to 0"
                )
        return self
