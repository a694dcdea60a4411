"""Where a stage process spends its time, for benchmarks/pipeline_profile.py.

Only active when the environment variable LTH_PROFILE names a file: each stage process then appends
one JSON line to it (its argv, the kernel's start time of the process, when the stage's own code began,
when its run was set up, the seconds spent loading data, and when it ended). Otherwise every call here
is a dictionary update and nothing is written.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator, Optional

MARKS: dict[str, float] = {}
SPENT: dict[str, float] = {}


def mark(name: str) -> None:
    """The first time the process reached `name` (wall-clock seconds)."""
    MARKS.setdefault(name, time.time())


@contextmanager
def timed(phase: str) -> Iterator[None]:
    """Adds the time spent inside to `phase`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        SPENT[phase] = SPENT.get(phase, 0.0) + time.perf_counter() - start


def process_start() -> Optional[float]:
    """When the kernel started this process (wall-clock seconds, to a clock tick; Linux), or None."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def write_record() -> None:
    """Append this process's record to $LTH_PROFILE, if set."""
    path = os.environ.get("LTH_PROFILE")
    if not path:
        return
    record = {"argv": sys.argv, "start": process_start(), "marks": MARKS, "spent": SPENT, "end": time.time()}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
