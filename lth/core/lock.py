"""One run per output directory: a lock file naming its owner, and stale locks of dead processes recognised.

Two runs writing the same run directory would interleave rounds and checkpoints. The lock is a plain
file `DIR/.lth.core.lock` holding the owner's pid, host and process start time; a lock whose owner process
no longer exists (killed with -9, machine rebooted) is recognised as stale and taken over. The start
time guards against a recycled pid. Checking and taking the lock happen under an flock on the
directory itself, so two processes that both find a stale lock cannot both take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Optional

from lth.core.errors import LthError

LOCK_NAME = ".lth.core.lock"


def process_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of `pid` (Linux /proc), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22, counted after the parenthesised command name


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (permission errors mean it exists, owned by someone else)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`with RunLock(out):` — holds `out/.lth.core.lock` for the duration; refuses if a live process holds it."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._held = False

    def owner(self) -> Optional[dict]:
        """The lock file's contents, or None when there is none; an unreadable lock counts as stale. A lock that
        is a symbolic link (somebody planted it) is refused: lth never reads or writes through one."""
        if self.path.is_symlink():
            raise LthError(f"{self.path} is a symbolic link, not an lth lock file: delete it (and check who made it)")
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError:
            return {}
        try:
            with os.fdopen(fd) as handle:
                data = json.loads(handle.read())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_stale(self, owner: dict) -> bool:
        """A lock is stale when its process is gone (or the pid now belongs to a newer process)."""
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return True
        if owner.get("host") != socket.gethostname():
            return False  # another machine's process: we cannot tell, so we respect it
        if not pid_alive(pid):
            return True
        started = owner.get("started")
        return started is not None and process_start_time(pid) not in (None, started)

    def acquire(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        guard = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(guard, fcntl.LOCK_EX)
            owner = self.owner()
            if owner is not None and not self.is_stale(owner) and owner.get("pid") != os.getpid():
                where = f" on {owner.get('host')}" if owner.get("host") != socket.gethostname() else ""
                raise LthError(
                    f"{self.directory} is in use by another lth run (pid {owner.get('pid')}{where}); wait for it to "
                    f"finish or use another --out. If no such run exists, delete {self.path}"
                )
            me = {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start_time(os.getpid())}
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f"{LOCK_NAME}.", suffix=".tmp")  # O_EXCL, random
            with os.fdopen(fd, "w") as handle:
                handle.write(json.dumps(me))
                os.fchmod(handle.fileno(), 0o644)
            os.replace(tmp, self.path)  # takes over a stale lock in one step
            self._held = True
        finally:
            os.close(guard)  # also drops the flock

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        owner = self.owner()
        if owner and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: Optional[type], exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.release()
