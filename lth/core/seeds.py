"""Seeds derived from the run's seed, so every random choice is reproducible and independent of the others."""

from __future__ import annotations

import hashlib


def trial_seed(seed: int, trial: int) -> int:
    """Trial 0 uses the run's seed itself (a 1-trial run is the plain run); later trials get fresh seeds."""
    return seed if trial == 0 else derive_seed(seed, "trial", trial)


def derive_seed(*parts: object) -> int:
    """A stable 62-bit seed from any tuple of ints/strings (same parts, same seed, on every machine)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**62 - 1)
