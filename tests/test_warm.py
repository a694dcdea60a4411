"""Warm starts (stages/_warm.py): a stage run in a fork of the server behaves as its own process would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = "import sys; from stages._warm import run_in_server; status = run_in_server('probe'); " \
         "print('cold' if status is None else f'warm {status}', file=sys.stderr); sys.exit(status or 0)"
PROBE = textwrap.dedent("""
    import os, signal, sys, time
    print("preloaded torch:", "torch" in sys.modules, "lth:", "lth" in sys.modules)
    print("cwd:", os.getcwd(), "argv:", sys.argv[1:], "env:", os.environ.get("PROBE_VALUE"))
    print("to stderr", file=sys.stderr)
    print("threads:", __import__("torch").get_num_threads())
    if sys.argv[1:] == ["wait"]:
        signal.signal(signal.SIGINT, lambda *_: sys.exit(7))
        print("waiting", flush=True)
        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1:] and sys.argv[1].isdigit() else 0)
""")


@pytest.fixture
def warm(tmp_path):
    """A working directory with a probe module, and an environment whose server lives under tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe.py").write_text(PROBE)
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(REPO), "PROBE_VALUE": "42"}
    env.pop("LTH_WARM", None)
    env.pop("XDG_RUNTIME_DIR", None)  # the server's files under tmp_path
    yield work, env, tmp_path
    for pid_file in tmp_path.glob(PID_FILES):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


def client(work: Path, env: dict, *args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CLIENT, *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=60, **options)


PID_FILES = "lth-*/warm-*.pid"  # in the user's private directory under TMPDIR


def wait_for_server(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(PID_FILES)):
        assert time.monotonic() < deadline, "the warm server never came up"
        time.sleep(0.1)


def test_a_stage_runs_in_a_fork_of_the_warm_server_as_in_its_own_process(warm):
    work, env, tmp_path = warm
    first = client(work, env, "3")
    assert first.returncode == 0 and "cold" in first.stderr  # no server yet: the caller runs the stage itself
    wait_for_server(tmp_path)
    second = client(work, env, "3")
    assert "warm 3" in second.stderr and second.returncode == 3  # exit status passed through
    assert "preloaded torch: True lth: False" in second.stdout  # torch warm, no project code in the server
    assert f"cwd: {work}" in second.stdout and "argv: ['3']" in second.stdout and "env: 42" in second.stdout
    changed = client(work, {**env, "PROBE_VALUE": "43"}, "0")  # another value: the fork has the stage's own
    assert "warm 0" in changed.stderr and "env: 43" in changed.stdout
    unset = client(work, {k: v for k, v in env.items() if k != "PROBE_VALUE"}, "0")
    assert "warm 0" in unset.stderr and "env: None" in unset.stdout
    assert "to stderr" in second.stderr  # the stage writes to the stage process's own streams
    off = client(work, {**env, "LTH_WARM": "0"}, "0")
    assert "cold" in off.stderr


def test_a_stage_with_other_thread_settings_is_not_served_by_the_server(warm):
    """Torch reads OMP_NUM_THREADS once, at import: a stage run in a server started with other thread settings
    would keep the server's count (a `make run` after the tests, whose workers use one thread, trained 30%
    slower). The settings are part of the server's key, so such a stage runs itself (and starts its own)."""
    from stages._warm import THREAD_SETTINGS

    work, env, tmp_path = warm
    one = {**{k: v for k, v in env.items() if k not in THREAD_SETTINGS}, "OMP_NUM_THREADS": "1"}
    client(work, one)
    wait_for_server(tmp_path)
    served = client(work, one)
    assert "warm 0" in served.stderr and "threads: 1" in served.stdout
    unset = {k: v for k, v in one.items() if k != "OMP_NUM_THREADS"}  # torch's own default, as in `make run`
    assert "cold" in client(work, unset).stderr


def test_ctrl_c_reaches_the_fork_and_its_exit_status_comes_back(warm):
    work, env, tmp_path = warm
    client(work, env)
    wait_for_server(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, "wait"], cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("preloaded torch: True")
    while "waiting" not in proc.stdout.readline():
        pass
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 7 and "warm 7" in err


@pytest.mark.heavy
def test_dvc_stages_give_the_same_files_warm_and_cold(tmp_path):
    """The pipeline's first steps, run warm and cold: byte-identical outputs."""
    from test_pipeline import ENV, tiny_project

    outputs = {}
    for mode in ("1", "0"):
        root = tiny_project(tmp_path / f"warm{mode}", rounds=1)
        env = {**ENV, "LTH_WARM": mode, "TMPDIR": str(tmp_path)}
        env.pop("XDG_RUNTIME_DIR", None)
        for target in ("prepare", "mask@r01"):
            result = subprocess.run(["dvc", "repro", target], cwd=root, env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            if mode == "1" and target == "prepare":
                wait_for_server(tmp_path)  # init, rewind_point, train_dense, score and mask then run warm
        outputs[mode] = {p.relative_to(root): p.read_bytes() for p in (root / "data").rglob("*.pt")}
    for pid_file in tmp_path.glob(PID_FILES):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    assert outputs["1"].keys() == outputs["0"].keys() and len(outputs["1"]) >= 5
    assert all(outputs["1"][k] == outputs["0"][k] for k in outputs["1"]), "warm and cold outputs differ"


def test_signals_before_the_forks_pid_is_known_are_held_then_forwarded_or_raised():
    """The fork may print (and a user press Ctrl-C) before the stage process has its pid: such a signal is
    held and sent on once the pid comes, or raised here if the stage never starts in the server."""
    from stages._warm import _Forwarding

    child = subprocess.Popen([sys.executable, "-c", "import signal, sys, time; "
                              "signal.signal(signal.SIGINT, lambda *_: sys.exit(7)); print('ready', flush=True); "
                              "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    with _Forwarding() as forwarding:
        os.kill(os.getpid(), signal.SIGINT)  # arrives before the pid is known: held, not a KeyboardInterrupt
        assert forwarding.held == [signal.SIGINT] and child.poll() is None
        forwarding.to(child.pid)
    assert child.wait(timeout=30) == 7
    with pytest.raises(KeyboardInterrupt):
        with _Forwarding():
            os.kill(os.getpid(), signal.SIGINT)
