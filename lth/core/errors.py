"""The one exception type that reaches the user as a clear one-line message (exit code 2, no traceback)."""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path
from typing import Iterable


class LthError(Exception):
    """Bad input or a bad file: the message names the bad value and what would be valid.

    The message is always one line: line breaks and other control characters in a quoted bad value
    (a params.yaml key such as "\\n") are shown escaped.
    """

    def __init__(self, message: object = "", *args: object):
        text = str(message)
        if not text.isprintable():
            text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        super().__init__(text, *args)


DEBUG_VARIABLE = "LTH_DEBUG"  # set to 1 to see the traceback of an unexpected error


def describe_unexpected(exc: BaseException) -> str:
    """One line for an error nobody anticipated: what it is, where, and how to see more."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (in {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split()) or "no message"
    return (f"unexpected {type(exc).__name__}: {message}{where}; this is a bug in lth or an environment problem: "
            f"rerun with {DEBUG_VARIABLE}=1 for the traceback")


def one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception of a library or of the user's code as one short line ('ValueError: width must be even'),
    for an LthError message, which is always one line."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unknown_choice(what: str, value: object, choices: Iterable[str]) -> LthError:
    """Build the standard 'unknown X' error, with a did-you-mean hint when one is close (a slip of case too:
    'SGD' -> 'sgd')."""
    choices = sorted(choices)
    same_but_case = [c for c in choices if c.lower() == str(value).lower()]
    hint = same_but_case or get_close_matches(str(value), choices, n=1) or get_close_matches(
        str(value).lower(), choices, n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return LthError(f"unknown {what} '{value}'{suggestion}; valid choices: {', '.join(choices)}")
