"""Fractions of the weights, one convention for every option and setting that takes one: '5%' is a percentage,
a bare number is a fraction in (0, 1], and a bare number above 1 is an error that suggests the % form
(`--target-remaining 0.05` and `--target-remaining 5%` both keep 5% of the weights; `5` is refused, since it
could mean either)."""

from __future__ import annotations

from lth.core.errors import LthError

CONVENTION = "a fraction such as 0.05, or a percentage such as 5%"
HELP = f"{CONVENTION} (a bare number above 1 is refused: write 5% for five percent)"  # said in every --help


def parse_fraction(value: str | float, what: str) -> float:
    """The fraction in (0, 1] that `value` ('5%', '0.05', 0.05) means; an LthError naming `what` otherwise."""
    if isinstance(value, bool):
        raise LthError(f"bad {what} {value!r}: expected {CONVENTION}")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = float(text[:-1].strip() if percent else text)
    except ValueError:
        raise LthError(f"bad {what} '{value}': expected {CONVENTION}") from None
    fraction = number / 100 if percent else number
    if not percent and number > 1:
        raise LthError(f"bad {what} '{value}': a bare number is a fraction of the weights in (0, 1]; for "
                       f"{number:g} percent write '{number:g}%'")
    if not 0 < fraction <= 1:
        raise LthError(f"bad {what} '{value}': the weights kept must be more than 0 and at most all of them "
                       f"({CONVENTION})")
    return fraction


def show_fraction(fraction: float) -> str:
    """0.05 -> '5%': how a person reads a fraction of the weights."""
    return f"{100 * fraction:g}%"
