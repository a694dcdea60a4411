"""Warm starts for DVC stages: one server process keeps torch imported, each stage runs in a fork of it.

Every DVC stage is a fresh `python -m stages.<name>`, and importing torch costs about 2 s of the few
seconds most stages take; the default experiment runs ~90 of them. The first stage starts a server
that imports torch, numpy, yaml and pandas (third-party code only: never lth or stages, so a stage
always runs the code on disk) and waits on a UNIX socket. A later stage process sends the server its
working directory, arguments, its stdin/stdout/stderr and the part of its environment that differs
from the server's; the server forks, and the fork runs the stage module as `__main__` exactly as
`python -m` would, writing to the stage's own streams. The stage process waits, forwards Ctrl-C /
SIGTERM to the fork and exits with its exit status, so DVC sees an ordinary process. A fork whose
stage process disappears (kill -9) stops as on SIGTERM.

On a shared machine only the user's own server hears a stage: the socket, the pid file and the start
lock live in a directory private to the user (`$XDG_RUNTIME_DIR/lth`, else `$TMPDIR/lth-<uid>`: created
0700, used only while it is a real directory owned by the user that nobody else can enter), and each
side checks the other's uid (SO_PEERCRED) before sending anything. The environment crosses the socket
only where it differs from the server's (which the stage learns as salted hashes), so a secret both
share never does; nothing of it is logged. SECURITY.md states the threat model.

Whenever anything is unusual (LTH_WARM=0, no private directory, a peer of another uid, no server yet,
another Python, no fork or UNIX sockets, any error before the fork has started) the stage simply runs
in its own process. The server exits after IDLE_SECONDS without a request. Results are the same either
way: the same code runs on the same inputs (tests/test_warm.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

IDLE_SECONDS = 120
PRELOAD = ("numpy", "yaml", "pandas", "torch", "torch.nn.functional", "torch.func", "torch.optim",
           "torch._dynamo")  # the optimizers import torch._dynamo on first use: ~2 s
_HEADER = struct.Struct("!I")
_FDS = struct.Struct("3i")
_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid
HELLO_SECONDS = 10  # a server that does not greet a stage this soon is not used


def private_dir() -> Optional[Path]:
    """A directory only this user can enter, for the server's socket and files; None when none can be trusted:
    `$XDG_RUNTIME_DIR/lth` (a per-user directory by the XDG spec) or `$TMPDIR/lth-<uid>`, created 0700 and
    used only while it is a real directory (not a symlink) owned by this user with no access for others."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    candidates = [Path(runtime) / "lth"] if runtime else []
    candidates.append(Path(os.environ.get("TMPDIR", "/tmp")) / f"lth-{os.getuid()}")
    for folder in candidates:
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            pass
        except OSError:
            continue
        try:
            info = os.lstat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
            return folder
    return None


THREAD_SETTINGS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""Read once, when torch is imported: a fork keeps its server's thread count whatever the stage's environment
says, so stages with other values use another server."""


def server_key() -> str:
    """One server per Python interpreter, installed torch, version of this file and thread settings."""
    import importlib.util

    torch = importlib.util.find_spec("torch")
    stamp = os.stat(torch.origin).st_mtime_ns if torch and torch.origin else 0
    threads = "|".join(f"{name}={os.environ.get(name, '')}" for name in THREAD_SETTINGS)
    blob = f"{sys.executable}|{sys.version}|{stamp}|{threads}|".encode() + Path(__file__).read_bytes()
    return hashlib.sha256(blob).hexdigest()[:16]


def _address() -> Optional[Path]:
    """The server's socket in the user's private directory (None: there is none to trust)."""
    folder = private_dir()
    return None if folder is None else folder / f"warm-{server_key()}.sock"


def _peer_is_me(conn: socket.socket) -> bool:
    """Whether the process at the other end of a UNIX socket runs as this user (False where it cannot be told)."""
    if not hasattr(socket, "SO_PEERCRED"):
        return False
    try:
        _, uid, _ = _CREDENTIALS.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CREDENTIALS.size))
    except OSError:
        return False
    return uid == os.getuid()


def _digest(salt: str, value: str) -> str:
    return hashlib.sha256(f"{salt}|{value}".encode()).hexdigest()


def environment_change(hashes: dict, salt: str, environ: dict) -> tuple[dict, list]:
    """What turns the server's environment (known by its salted hashes) into `environ`: the variables to set
    (new or different) and those to remove. A variable with the same value on both sides is not sent."""
    changed = {k: v for k, v in environ.items() if hashes.get(k) != _digest(salt, v)}
    return changed, sorted(k for k in hashes if k not in environ)


def _send(conn: socket.socket, message: dict) -> None:
    data = json.dumps(message).encode()
    conn.sendall(_HEADER.pack(len(data)) + data)


def _receive(conn: socket.socket) -> Optional[dict]:
    head = _exactly(conn, _HEADER.size)
    body = None if head is None else _exactly(conn, _HEADER.unpack(head)[0])
    return None if body is None else json.loads(body)


def _exactly(conn: socket.socket, size: int) -> Optional[bytes]:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


# --- the stage process ----------------------------------------------------------------------------------


def run_in_server(module: str) -> Optional[int]:
    """Run `python -m module` (with this process's argv) in a fork of the warm server and return its exit
    status; None when it could not be started there (the caller then runs the stage itself)."""
    if os.environ.get("LTH_WARM", "1") == "0" or not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX"):
        return None
    try:
        address = _address()
        if address is None:
            return None  # no directory private to this user: no warm starts
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(str(address))
        except OSError:
            conn.close()
            _start_server(address)  # warm for the stages after this one
            return None
        with conn, _Forwarding() as forwarding:  # from before the fork can run: its output may come first
            if not _peer_is_me(conn):
                return None  # not this user's server: say nothing to it
            conn.settimeout(HELLO_SECONDS)
            hello = _receive(conn)
            conn.settimeout(None)
            if not hello or "env" not in hello:
                return None
            env_set, env_unset = environment_change(hello["env"], hello["salt"], dict(os.environ))
            request = {"module": module, "argv": sys.argv, "cwd": os.getcwd(), "env_set": env_set,
                       "env_unset": env_unset, "path0": os.path.abspath(sys.path[0] or os.getcwd())}
            data = json.dumps(request).encode()
            conn.sendmsg([_HEADER.pack(len(data)) + data],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, _FDS.pack(0, 1, 2))])
            started = _receive(conn)
            if not started or "pid" not in started:
                return None  # the signals held meanwhile are raised here once forwarding ends
            forwarding.to(int(started["pid"]))
            done = _receive(conn)
            return 1 if done is None else int(done["status"])  # None: the fork died without reporting (killed)
    except OSError:
        return None


class _Forwarding:
    """SIGINT and SIGTERM sent to this process go on to the fork running the stage. Signals that arrive
    before the fork's pid is known are held and sent on once it is, or, if the stage never starts there,
    raised in this process when forwarding ends (the caller then runs the stage itself)."""

    def __enter__(self) -> "_Forwarding":
        self.pid: Optional[int] = None
        self.held: list[int] = []
        self.previous = {s: signal.signal(s, self._forward) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _forward(self, signum: int, frame: object) -> None:
        if self.pid is None:
            self.held.append(signum)
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def to(self, pid: int) -> None:
        self.pid = pid
        for signum in self.held:
            self._forward(signum, None)
        self.held.clear()

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        for signum in self.held:  # never forwarded: the stage did not start in the server
            signal.raise_signal(signum)


def _start_server(address: Path) -> None:
    """Start the server in the background, unless another stage is doing so; never waits for it."""
    starting = address.with_suffix(".starting")
    try:
        os.close(os.open(starting, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
    except FileExistsError:
        if time.time() - starting.stat().st_mtime > 60:
            starting.unlink(missing_ok=True)  # left by a server that died while starting
        return
    env = {k: v for k, v in os.environ.items() if k != "LTH_PROFILE"}
    env["OPENBLAS_NUM_THREADS"] = "1"  # numpy's BLAS thread pool would make forking unsafe; lth uses torch's
    subprocess.Popen([sys.executable, "-I", str(Path(__file__).resolve()), "serve", str(address)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env=env, cwd="/")


# --- the server -----------------------------------------------------------------------------------------


def serve(address: Path) -> None:
    """Import the heavy libraries once, then fork one child per stage; exit after IDLE_SECONDS idle."""
    starting = address.with_suffix(".starting")
    try:
        for name in PRELOAD:
            __import__(name)
        if _threads() > 1:
            return  # a library started worker threads: forking it would be unsafe, so serve nothing
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel
        if private_dir() != address.parent:
            return  # started for another folder, or it is no longer private: serve nothing
        address.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        umask = os.umask(0o077)  # the socket is this user's only
        try:
            listener.bind(str(address))
        finally:
            os.umask(umask)
        listener.listen(16)
        listener.settimeout(IDLE_SECONDS)
        address.with_suffix(".pid").unlink(missing_ok=True)
        pid = os.open(address.with_suffix(".pid"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(pid, "w") as handle:
            handle.write(str(os.getpid()))
    finally:
        starting.unlink(missing_ok=True)
    with listener:
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                break
            if os.fork() == 0:
                listener.close()
                _become_the_stage(conn)  # never returns
            conn.close()
    address.unlink(missing_ok=True)
    address.with_suffix(".pid").unlink(missing_ok=True)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _become_the_stage(conn: socket.socket) -> None:
    """In the fork: check the peer is this user, greet it with the environment's salted hashes, take the stage
    process's streams, directory, environment change and argv, run it, report."""
    status = 1
    try:
        if not _peer_is_me(conn):
            os._exit(1)  # another user's process: it learns nothing, not even the hashes
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the stage's own subprocesses (torchrun) need waitpid
        salt = os.urandom(16).hex()
        _send(conn, {"salt": salt, "env": {k: _digest(salt, v) for k, v in os.environ.items()}})
        request, fds = _request(conn)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        for name in request["env_unset"]:
            os.environ.pop(name, None)
        os.environ.update(request["env_set"], LTH_WARM="0")  # the stage itself must not ask the server again
        sys.argv = request["argv"]
        extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [request["path0"], *extra]  # as `python -m` in that directory would have it
        sys.stdout.reconfigure(line_buffering=True)
        _send(conn, {"pid": os.getpid()})
        _stop_when_orphaned(conn)
        status = _run_module(request["module"])
    finally:
        try:
            _send(conn, {"status": status})
        except OSError:
            pass
        os._exit(status)


def _request(conn: socket.socket) -> tuple[dict, list[int]]:
    """The stage's request and its three stream descriptors (received with the first bytes)."""
    head, ancillary, _, _ = conn.recvmsg(_HEADER.size, socket.CMSG_SPACE(_FDS.size))
    fds = [fd for level, kind, payload in ancillary if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
           for fd in _FDS.unpack(payload[: _FDS.size])]
    body = _exactly(conn, _HEADER.unpack(head)[0]) if len(head) == _HEADER.size else None
    if body is None or len(fds) != 3:
        raise OSError("incomplete request")
    return json.loads(body), fds


def _run_module(module: str) -> int:
    """`python -m module` in this process: its exit status, after the exit handlers a plain process runs."""
    import atexit
    import runpy

    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as an uncaught exception of a plain process would be
        import traceback

        traceback.print_exc()
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return status


def _stop_when_orphaned(conn: socket.socket) -> None:
    """If the stage process disappears (kill -9), stop this fork as SIGTERM would (train stages save first)."""
    import threading

    def watch() -> None:
        try:
            while conn.recv(1):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "serve":
    serve(Path(sys.argv[2]))
