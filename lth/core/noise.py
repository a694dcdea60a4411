"""How much of a difference between two results is noise: the one rule lth judges "matching" and "beyond
noise" by (metrics/summary.json's `sparsest_matching`, `lth compare`, the report's tables).

Why: float32 arithmetic differs in its last bits between CPU kinds, a weight at the pruning threshold flips,
and one trial on 500 test digits drifts by a point; a judgement made on single numbers as if they were exact
moves from one machine to the next. Each arm's result is the mean over its trials, and its standard error is
the larger of
- the spread over trials: s / sqrt(k) (sample standard deviation s of k >= 2 trials), and
- for a fraction of test examples (accuracy), the binomial sampling error of a test set of n examples:
  sqrt(p (1 - p) / (n k)) — what one test set of that size can tell apart at all.
Two means differ *beyond noise* when |a - b| > Z x sqrt(se_a² + se_b²) (Z = 2: about 95% under a normal
approximation); a ticket *matches* the dense network unless it is worse beyond noise (and by more than a
stated tolerance, default 0). Pure arithmetic: no torch, usable from any layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import fmean, stdev
from typing import Optional, Sequence

Z = 2.0
"""Standard errors a difference must exceed to count as real (about a 95% two-sided interval)."""

RULE = "not worse than dense by > z x SE"
"""The matching rule, as metrics/summary.json states it beside `z` and `test_examples` (short: `dvc metrics diff`
shows it in a column when it changes). SE: the standard error of the difference, from the trials' spread and at
least the test set's sampling error (the module docstring)."""


@dataclass(frozen=True)
class Estimate:
    """An arm's result over its trials: the mean, its standard error, and how many trials it rests on."""

    mean: float
    se: float
    trials: int
    std: float = 0.0  # sample standard deviation over the trials (0 for one trial)


def estimate(values: Sequence[float], test_size: Optional[int] = None, binomial: bool = False) -> Estimate:
    """The mean of `values` (one per trial) and its standard error: the trials' spread, floored by the binomial
    sampling error of `test_size` examples when the values are fractions of test examples (`binomial`)."""
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return Estimate(math.nan, math.nan, 0)
    return from_spread(fmean(values), stdev(values) if len(values) > 1 else 0.0, len(values), test_size, binomial)


def from_spread(mean: float, std: float, trials: int, test_size: Optional[int] = None,
                binomial: bool = False) -> Estimate:
    """`estimate` from a mean and the sample standard deviation of `trials` values (a table that kept only those)."""
    se = std / math.sqrt(trials)
    if binomial and test_size:
        p = min(max(mean, 0.0), 1.0)
        se = max(se, math.sqrt(p * (1 - p) / (test_size * trials)))
    return Estimate(mean, se, trials, std)


@dataclass(frozen=True)
class Difference:
    """b - a with its standard error and the verdict."""

    diff: float
    se: float
    beyond_noise: bool


def difference(a: Estimate, b: Estimate, z: float = Z) -> Difference:
    """b minus a, and whether it is beyond noise (|b - a| > z x the standard error of the difference)."""
    se = math.sqrt(a.se ** 2 + b.se ** 2)
    diff = b.mean - a.mean
    return Difference(diff, se, abs(diff) > z * se)


def matches(ticket: Estimate, dense: Estimate, higher_is_better: bool, tolerance: float = 0.0, z: float = Z) -> bool:
    """Whether the ticket matches the dense network: it is not worse beyond noise and the tolerance (a ticket
    better than dense always matches)."""
    worse_by = (dense.mean - ticket.mean) if higher_is_better else (ticket.mean - dense.mean)
    return worse_by <= max(tolerance, z * math.sqrt(ticket.se ** 2 + dense.se ** 2))


def binomial_halfwidth(p: float, test_size: int, z: float = Z) -> float:
    """± of one trial's accuracy near p on `test_size` examples (z standard errors): what the report states."""
    return z * math.sqrt(max(p * (1 - p), 0.0) / test_size)
