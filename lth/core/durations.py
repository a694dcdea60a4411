"""Training durations as step strings: '50000it', '50ep', '2ep100it' — one parser, used everywhere.

A duration given in epochs only becomes a number of iterations once the dataset and batch size
are known, so a `Step` keeps both parts and converts on demand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lth.core.errors import LthError

_STEP = re.compile(r"^\s*(?:(\d+)\s*ep)?\s*(?:(\d+)\s*it)?\s*$")


@dataclass(frozen=True, order=True)
class Step:
    """A point in training: `epochs` full passes plus `iterations` more optimizer steps."""

    epochs: int = 0
    iterations: int = 0

    @classmethod
    def parse(cls, text: str | int) -> "Step":
        """Parse '50ep', '1000it', '2ep100it' (or a bare int = iterations)."""
        if isinstance(text, bool):
            raise LthError(f"bad step '{text}': expected a string like '50ep', '1000it' or '2ep100it'")
        if isinstance(text, int):
            if text < 0:
                raise LthError(f"bad step '{text}': must not be negative")
            return cls(0, text)
        match = _STEP.match(str(text)) if text is not None else None
        if not match or not str(text).strip() or (match.group(1) is None and match.group(2) is None):
            raise LthError(f"bad step '{text}': expected a string like '50ep', '1000it' or '2ep100it'")
        return cls(int(match.group(1) or 0), int(match.group(2) or 0))

    def to_iterations(self, iterations_per_epoch: int) -> int:
        """Total optimizer steps, given how many make one epoch."""
        return self.epochs * iterations_per_epoch + self.iterations

    def __str__(self) -> str:
        if self.epochs and self.iterations:
            return f"{self.epochs}ep{self.iterations}it"
        return f"{self.epochs}ep" if self.epochs else f"{self.iterations}it"

