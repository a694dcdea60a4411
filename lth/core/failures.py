"""How an entry point ends when something goes wrong: one line and an exit code, never a traceback (unless
LTH_DEBUG=1 asks for an unexpected error's). The CLI (lth.cli.main) and every DVC stage (stages/_common.py)
run their body through `report_failures`; they differ only in how a line is printed and what an
interruption tells the user to do next."""

from __future__ import annotations

import os
import sys
from typing import Callable

from lth.core.errors import DEBUG_VARIABLE, LthError, describe_unexpected
from lth.core.interrupt import Interrupted


def report_failures(body: Callable[[], None], tell_error: Callable[[str], None],
                    tell_interrupted: Callable[[str], None], interrupted_code: int) -> None:
    """Run `body`. A bad value or file (LthError) or any unexpected exception becomes one line through
    `tell_error` and exit code 2; an interruption (Ctrl-C, SIGTERM: lth.core.interrupt; its message, or ''
    for a bare KeyboardInterrupt) one line through `tell_interrupted` and `interrupted_code`."""
    try:
        body()
    except Interrupted as exc:
        tell_interrupted(str(exc))
        sys.exit(interrupted_code)
    except LthError as exc:
        tell_error(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        tell_interrupted("")
        sys.exit(interrupted_code)
    except Exception as exc:  # noqa: BLE001 - the user gets one line; LTH_DEBUG=1 shows the traceback
        if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
            raise
        tell_error(describe_unexpected(exc))
        sys.exit(2)
