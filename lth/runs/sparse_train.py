"""params.yaml's `sparse_train` group (and `python -m lth sparse-train`'s defaults), checked by every stage that
reads params.yaml, most of which never train a sparse network: torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from lth.core.config import setting
from lth.core.errors import LthError
from lth.training.sparse_schedule import METHODS, SparseSchedule


def _distributions() -> dict[str, str]:
    from lth.pruning.distributions import DISTRIBUTIONS

    return DISTRIBUTIONS


@dataclass(frozen=True)
class SparseTrainSettings:
    """params.yaml `sparse_train` (and `python -m lth sparse-train`'s defaults): the networks trained sparse from
    scratch beside the tickets, and the papers' update schedule (Evci et al. 2020's RigL settings)."""

    methods: tuple[str, ...] = setting(("static", "set", "rigl"), "Sparse-training methods, one DVC stage each.",
                                       choices=lambda: METHODS, label="method", inline=True)
    distributions: tuple[str, ...] = setting(("erk",), "How the kept weights are shared among the layers.",
                                             choices=_distributions, label="distribution", inline=True)
    remaining: tuple[str, ...] = setting(("10%", "3.5%", "1%"), "Fractions of the prunable weights kept, each in "
                                                                "(0, 100%]: 0.1 or 10%.")
    nm: str = setting("", "N:M masks instead ('2:4': N kept in every M consecutive input weights of every layer; "
                          "`remaining` and `distributions` do not apply); '' for none.")
    trials: int = setting(2, "Seeds per network (each its own θ0 and starting mask).")
    update_every: int = setting(100, "ΔT: optimizer steps between mask updates.")
    drop_fraction: float = setting(0.3, "α: fraction of a layer's kept weights dropped at the first update "
                                        "(cosine decay to 0 at the stop).")
    stop_fraction: float = setting(0.75, "No mask update after this fraction of training.")
    duration: str = setting("", "Training length, a step string ('20ep'); '' : the run's train.duration.")

    @property
    def schedule(self) -> SparseSchedule:
        return SparseSchedule(self.update_every, self.drop_fraction, self.stop_fraction)

    def fractions(self) -> list[float]:
        """`remaining` as fractions (N/M alone with `nm`)."""
        from lth.core.fractions import parse_fraction

        if self.nm:
            n, m = self.pattern()
            return [n / m]
        return [parse_fraction(value, "sparse_train.remaining") for value in self.remaining]

    def pattern(self) -> Optional[tuple[int, int]]:
        from lth.pruning.nm import parse_nm

        return parse_nm(self.nm) if self.nm else None

    def validate(self, where: str = "sparse_train") -> "SparseTrainSettings":
        from lth.core.config import check_choices
        from lth.core.durations import Step

        check_choices(self)
        for values, what in ((self.methods, "methods"), (self.distributions, "distributions"),
                             (self.remaining, "remaining")):
            if not values:
                raise LthError(f"{where}.{what}: name at least one")
            if len(set(values)) != len(values):
                raise LthError(f"{where}.{what}: {list(values)} names one twice")
        if not 1 <= self.trials <= 100:
            raise LthError(f"{where}.trials: {self.trials} must be between 1 and 100")
        try:
            self.fractions()
            self.schedule.check()
            if self.duration:
                Step.parse(self.duration)
        except LthError as exc:
            raise LthError(f"{where}: {exc}") from None
        return self


def load_settings(group: Any, where: str) -> SparseTrainSettings:
    """params.yaml's `sparse_train` group, validated (errors name `where`.key)."""
    from lth.core.config import build

    return build(SparseTrainSettings, group if group is not None else {}, where).validate(where)
