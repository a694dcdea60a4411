"""Clean interruption: Ctrl-C or SIGTERM asks the trainer to stop at the next step boundary.

Inside `graceful_stop()` the first SIGINT/SIGTERM only sets `STOP.signal`; the training loop checks it
once per step (one attribute read), saves its state and raises `Interrupted`, whose message says how
to resume. A second SIGINT raises KeyboardInterrupt at once, for a user who cannot wait. Signals are
process-wide, hence one process-wide flag.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

from lth.core.errors import LthError

HANDLED = (signal.SIGINT, signal.SIGTERM)


class StopFlag:
    """Which signal asked the process to stop, if any."""

    def __init__(self) -> None:
        self.signal: Optional[int] = None

    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else "request"


STOP = StopFlag()


class Interrupted(LthError):
    """Training stopped on request; the message says what was saved."""

    def __init__(self, message: str, signum: Optional[int] = None):
        super().__init__(message)
        self.signum = signum


def check(where: str) -> None:
    """Raise Interrupted if a stop was requested (for the places between training steps: rounds, stages)."""
    if STOP.signal is not None:
        raise Interrupted(f"interrupted by {STOP.name()} {where}", STOP.signal)


@contextmanager
def graceful_stop() -> Iterator[StopFlag]:
    """Turn SIGINT/SIGTERM into a stop request for the duration; restores the previous handlers after."""
    if threading.current_thread() is not threading.main_thread():
        yield STOP  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: object) -> None:
        if STOP.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop right now
        STOP.signal = signum

    previous = {s: signal.getsignal(s) for s in HANDLED}
    STOP.signal = None
    for s in HANDLED:
        signal.signal(s, handler)
    try:
        yield STOP
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        STOP.signal = None
