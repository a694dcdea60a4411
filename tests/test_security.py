"""Safe on a shared machine (SECURITY.md): another user hears nothing of a stage's warm start, no file of lth is
written through a path somebody else planted, and results are as readable as the user's umask says.

The tests that need a second user create one (`lthintruder`) and run it in a forked child with its uid; they
need root, which CI has, and are skipped with the reason elsewhere."""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lth.core import files
from lth.core.errors import LthError

REPO = Path(__file__).resolve().parents[1]
INTRUDER = "lthintruder"
CLIENT = "import sys; from stages._warm import run_in_server; print('cold' if run_in_server('probe') is None else 'warm')"


@pytest.fixture
def intruder() -> tuple[int, int]:
    if os.getuid() != 0:
        pytest.skip("needs root to create a second user and act as it (CI runs as root)")
    try:
        entry = pwd.getpwnam(INTRUDER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(INTRUDER)
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def shared_tmp():
    """A shared temp folder like /tmp (sticky, world-writable), which the second user can reach."""
    folder = Path(tempfile.mkdtemp(prefix="lth-shared-", dir="/tmp"))
    os.chmod(folder, 0o1777)
    yield folder
    for pid_file in folder.glob("lth-*/warm-*.pid"):
        try:
            os.kill(int(pid_file.read_text()), 15)
        except (ProcessLookupError, ValueError, PermissionError):
            pass
    shutil.rmtree(folder, ignore_errors=True)


def listen_as(uid: int, gid: int, path: Path, seconds: float = 30.0, make_dir: bool = False) -> tuple[int, int, int]:
    """A listener at `path` running as another user (a forked child with its uid); returns (pid, pipe, stop) whose
    pipe reports what it received: 'nothing', or 'connected:' and every byte sent to it. It listens until
    `heard` tells it through `stop` that the stages under test have finished (at most `seconds`)."""
    read, write = os.pipe()
    stop_read, stop_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the other user's process
        try:
            os.close(read)
            os.close(stop_write)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            if make_dir:
                os.mkdir(path.parent, 0o700)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(path))
            os.chmod(path, 0o777)
            listener.listen(4)
            os.write(write, b"ready\n")
            got = b"nothing"
            try:
                # a connection made before the stop is already queued: select reports the listener readable
                readable, _, _ = select.select([listener], [], [], 0) or ([], [], [])
                if not readable:
                    readable, _, _ = select.select([listener, stop_read], [], [], seconds)
                    if stop_read in readable:
                        readable, _, _ = select.select([listener], [], [], 0)
                if listener in readable:
                    conn, _ = listener.accept()
                    conn.settimeout(seconds)
                    got = b"connected:"
                    while chunk := conn.recv(65536):
                        got += chunk
            except OSError:
                pass
            os.write(write, got)
        finally:
            os._exit(0)
    os.close(write)
    os.close(stop_read)
    assert os.read(read, 6) == b"ready\n"
    return pid, read, stop_write


def heard(pid: int, pipe: int, stop: int) -> bytes:
    """What the listener received, once told that every stage under test has finished."""
    try:
        os.write(stop, b"x")
    except BrokenPipeError:  # it has finished already (a connection came and went)
        pass
    os.close(stop)
    os.waitpid(pid, 0)
    data = b""
    while chunk := os.read(pipe, 65536):
        data += chunk
    os.close(pipe)
    return data


def stage_env(shared: Path) -> dict:
    env = {**os.environ, "TMPDIR": str(shared), "PYTHONPATH": str(REPO), "SECRET_TOKEN": "s3cr3t"}
    for name in ("LTH_WARM", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    return env


def run_code_stage(shared: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """A real stage (`code`) in a copy of the project, with the shared temp folder: it must just work."""
    work = tmp_path / "work"
    if not work.exists():
        for package in ("lth", "stages"):
            shutil.copytree(REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    return subprocess.run([sys.executable, "-m", "stages.code"], cwd=work, env=stage_env(shared), capture_output=True,
                          text=True, timeout=120)


def warm_client(shared: Path) -> str:
    result = subprocess.run([sys.executable, "-c", CLIENT], cwd=REPO, env=stage_env(shared), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def key() -> str:
    from stages._warm import server_key

    return server_key()


def test_a_listener_at_the_old_predictable_address_hears_nothing(intruder, shared_tmp, tmp_path):
    """Before, a stage connected to $TMPDIR/lth-warm-<uid>-<key>.sock whoever listened there, and sent it its
    whole environment."""
    pid, pipe, stop = listen_as(*intruder, shared_tmp / f"lth-warm-{os.getuid()}-{key()}.sock")
    assert warm_client(shared_tmp) == "cold"
    result = run_code_stage(shared_tmp, tmp_path)
    assert result.returncode == 0 and "code fingerprints of" in result.stdout, result.stderr
    assert heard(pid, pipe, stop) == b"nothing"


def test_a_private_folder_squatted_by_another_user_is_not_used(intruder, shared_tmp, tmp_path):
    squat = shared_tmp / f"lth-{os.getuid()}"
    pid, pipe, stop = listen_as(*intruder, squat / f"warm-{key()}.sock", make_dir=True)
    assert warm_client(shared_tmp) == "cold"
    result = run_code_stage(shared_tmp, tmp_path)
    assert result.returncode == 0 and "code fingerprints of" in result.stdout, result.stderr
    assert heard(pid, pipe, stop) == b"nothing"
    assert not list(squat.glob("warm-*.pid"))  # no server of ours was started in it either


def test_a_server_of_another_uid_in_our_folder_gets_no_byte(intruder, shared_tmp, tmp_path):
    """The folder is ours (0700), but the process listening in it runs as somebody else: SO_PEERCRED says so, and
    the stage says nothing to it."""
    private = shared_tmp / f"lth-{os.getuid()}"
    pid, pipe, stop = listen_as(*intruder, private / f"warm-{key()}.sock", make_dir=True)
    os.chown(private, os.getuid(), os.getgid())
    os.chmod(private, 0o700)
    assert warm_client(shared_tmp) == "cold"
    assert heard(pid, pipe, stop) == b"connected:"  # it accepted the connection and received nothing at all
    result = run_code_stage(shared_tmp, tmp_path)
    assert result.returncode == 0 and "code fingerprints of" in result.stdout, result.stderr


def test_a_world_writable_private_folder_is_not_trusted(tmp_path):
    from stages._warm import private_dir

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f"lth-{os.getuid()}").mkdir(mode=0o777)
    os.chmod(shared / f"lth-{os.getuid()}", 0o777)
    env = stage_env(shared)
    result = subprocess.run([sys.executable, "-c", "from stages._warm import private_dir; print(private_dir())"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "None", result.stderr
    (shared / f"lth-{os.getuid()}").rmdir()
    (shared / "target").mkdir()
    os.symlink(shared / "target", shared / f"lth-{os.getuid()}")  # a symlink to a folder of ours: not used either
    result = subprocess.run([sys.executable, "-c", "from stages._warm import private_dir; print(private_dir())"],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "None", result.stderr
    assert private_dir is not None


def test_the_warm_server_hears_only_what_differs_from_its_own_environment(tmp_path):
    """A secret the stage and the server share never crosses the socket; what differs does, so the stage sees
    exactly its own environment (tests/test_warm.py runs it)."""
    from stages._warm import _digest, environment_change

    server = {"HOME": "/root", "SECRET_TOKEN": "s3cr3t", "OPENBLAS_NUM_THREADS": "1"}
    salt = "abc"
    hashes = {k: _digest(salt, v) for k, v in server.items()}
    changed, removed = environment_change(hashes, salt, {"HOME": "/root", "SECRET_TOKEN": "s3cr3t", "NEW": "1"})
    assert changed == {"NEW": "1"} and removed == ["OPENBLAS_NUM_THREADS"]
    changed, _ = environment_change(hashes, salt, {"SECRET_TOKEN": "other"})
    assert changed == {"SECRET_TOKEN": "other"}


# --- planted symlinks ---------------------------------------------------------------------------------------


def test_planted_symlinks_at_lock_temp_and_report_paths_are_not_followed(tmp_path):
    from lth.core.lock import LOCK_NAME, RunLock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / f"{LOCK_NAME}.{os.getpid()}.tmp")  # the lock's temp name of old: not used
    with RunLock(run):
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert victim.read_text() == "precious"

    os.symlink(victim, run / LOCK_NAME)  # a lock that is a symlink: refused, never read or written through
    with pytest.raises(LthError, match="is a symbolic link, not an lth lock file"):
        RunLock(run).acquire()
    assert victim.read_text() == "precious"

    (run / LOCK_NAME).unlink()
    os.symlink(victim, run / "result.json")  # a result path that is a symlink: replaced, not followed
    files.write_json(run / "result.json", {"ok": 1})
    assert victim.read_text() == "precious" and not (run / "result.json").is_symlink()

    from test_report import fake_run
    from lth.report import make_report

    layout = fake_run(tmp_path / "fake", rounds=2)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("keep")
    os.symlink(other, tmp_path / ".report.old")  # the old report's name of old: not used
    for _ in range(2):
        make_report([str(layout.root)], tmp_path / "report")
    assert (other / "keep.txt").read_text() == "keep" and (tmp_path / "report" / "index.html").is_file()


def test_planted_warm_start_files_are_not_followed(tmp_path, shared_tmp):
    from stages import _warm

    shared = shared_tmp  # a short path: a UNIX socket's path is at most 107 bytes
    env = stage_env(shared)
    private = shared / f"lth-{os.getuid()}"
    private.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    address = private / f"warm-{key()}.sock"
    os.symlink(victim, address.with_suffix(".pid"))
    server = subprocess.Popen([sys.executable, "-I", str(Path(_warm.__file__)), "serve", str(address)],
                              env={**env, "OPENBLAS_NUM_THREADS": "1"},  # as _start_server starts it
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (address.with_suffix(".pid").exists() and not address.with_suffix(".pid").is_symlink()):
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.1)
        assert victim.read_text() == "precious"
        assert address.with_suffix(".pid").read_text() == str(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    os.symlink(victim, address.with_suffix(".starting"))  # a planted start lock: no server, nothing written
    assert subprocess.run([sys.executable, "-c", CLIENT], cwd=REPO, env=env, capture_output=True,
                          text=True).stdout.strip() == "cold"
    assert victim.read_text() == "precious"


# --- results colleagues can read ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_results_and_reports_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    from test_report import fake_run
    from lth.report import make_report

    previous = os.umask(umask)
    try:
        files.write_json(tmp_path / "metrics" / "summary.json", {"a": 1})
        files.save_tensors(tmp_path / "mask.pt", "mask", "m", {})
        layout = fake_run(tmp_path / "run", rounds=2)
        make_report([str(layout.root)], tmp_path / "report")
    finally:
        os.umask(previous)
    for path in (tmp_path / "metrics" / "summary.json", tmp_path / "mask.pt", tmp_path / "report" / "index.html",
                 tmp_path / "report" / "summary.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == file_mode, path
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == dir_mode
