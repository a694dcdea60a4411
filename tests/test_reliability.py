"""Fault injection: kill -9 and resume, SIGINT/SIGTERM, damaged files, concurrent runs, a full disk, GPU OOM,
inconsistent settings. Every scenario ends in the same masks as an uninterrupted run or in one clear error."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import RunFiles, fake_mnist, tiny_splits
from lth.core import files
from lth.training.checkpoint import Checkpoint
from lth.core.errors import LthError
from lth.core.interrupt import Interrupted, graceful_stop
from lth.core.lock import LOCK_NAME, RunLock
from lth.steps.rounds import run_rounds
from lth.runs.run import SilentReporter
from lth.runs.settings import check_data, defaults_for, from_dict, replace

REPO = Path(__file__).resolve().parents[1]


def lenet(**changes):
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="12it",
                   train__eval_every="5it")
    return replace(base, **changes)


def same_results(a: Path, b: Path, rounds: int, trials: int = 1) -> None:
    """Masks, trained weights and round records of two run directories are identical."""
    la, lb = RunFiles(a), RunFiles(b)
    for r in range(rounds):
        for t in range(trials):
            for kind, path in (("mask", RunFiles.mask), ("weights", RunFiles.final)):
                x = files.load_tensors(path(la, t, r), kind)
                y = files.load_tensors(path(lb, t, r), kind)
                assert all(torch.equal(x[k], y[k]) for k in x), f"round {r} trial {t}: {kind} differ"
        assert results_only(la.round_metrics(r)) == results_only(lb.round_metrics(r)), r


def results_only(path: Path) -> dict:
    """A round record without the wall seconds of its networks' training (a measurement, not a result)."""
    record = json.loads(path.read_text())
    for net in record["networks"]:
        net.pop("seconds", None)
    return record


class SignalAt(SilentReporter):
    """Sends `signum` to this process once round `at` has reached iteration `iteration`."""

    def __init__(self, at: int, iteration: int, signum: int = signal.SIGINT):
        self.at, self.iteration, self.signum, self.current, self.sent = at, iteration, signum, -1, False

    def round_started(self, round_index, weights_remaining, networks):
        self.current = round_index

    def progress(self, iteration, total, point):
        if self.current == self.at and iteration >= self.iteration and not self.sent:
            self.sent = True
            signal.raise_signal(self.signum)


# --- interruption ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum,settings", [
    (signal.SIGINT, lenet(trials=2, controls=("reinit",))),  # batched path: 4 networks in one vmapped step
    (signal.SIGTERM, lenet()),  # single-network path
])
def test_signal_saves_state_mid_round_and_resume_is_bit_identical(tmp_path, signum, settings):
    splits = tiny_splits()
    run_rounds(settings, 2, tmp_path / "straight", splits)
    with graceful_stop(), pytest.raises(Interrupted, match=r"at iteration \d+ of 12; training state saved to"):
        run_rounds(settings, 2, tmp_path / "resumed", splits, SignalAt(1, 6, signum), checkpoint_every="4it")
    layout = RunFiles(tmp_path / "resumed")
    assert layout.checkpoint(1).exists() and not layout.round_metrics(1).exists()
    assert not (tmp_path / "resumed" / LOCK_NAME).exists(), "lock released on interruption"
    run_rounds(settings, 2, tmp_path / "resumed", splits, checkpoint_every="4it")
    same_results(tmp_path / "straight", tmp_path / "resumed", 3, settings.trials)
    assert not layout.checkpoint(1).exists(), "checkpoint removed once the round is finished"


def test_sequential_networks_resume_per_network(tmp_path):
    """Conv nets on a CPU train one network after another: each has its own checkpoint, finished ones are kept."""
    settings = replace(defaults_for("conv-2", "cifar-10"), train__batch_size=10, train__duration="4it",
                       train__eval_every="2it", controls=("random-prune",))
    splits = tiny_splits(n_train=40, n_eval=10, shape=(3, 8, 8))
    run_rounds(settings, 1, tmp_path / "straight", splits)

    class SecondNetwork(SignalAt):
        calls = 0

        def progress(self, iteration, total, point):
            if self.current == 1 and iteration == 0:
                self.calls += 1
            if self.calls == 2 and iteration >= 2 and not self.sent:  # the control arm, after the ticket finished
                self.sent = True
                signal.raise_signal(signal.SIGINT)

    with graceful_stop(), pytest.raises(Interrupted):
        run_rounds(settings, 1, tmp_path / "resumed", splits, SecondNetwork(1, 0), checkpoint_every="0it")
    checkpoints = tmp_path / "resumed" / "data" / "checkpoints"
    names = sorted(p.name for p in checkpoints.glob("train-r01-*.pt"))
    assert names == ["train-r01-0.pt", "train-r01-1.pt"]
    run_rounds(settings, 1, tmp_path / "resumed", splits)
    same_results(tmp_path / "straight", tmp_path / "resumed", 2)
    assert not list(checkpoints.glob("*.pt"))


def _cli(out: Path, data: Path, checkpoint_every: str = "4it") -> list[str]:
    return [sys.executable, "-m", "lth", "find-ticket", "lenet-300-100", "mnist", str(data), "--iterations", "40",
            "--batch-size", "20", "--eval-every", "10it", "--rounds", "2", "--device", "cpu", "--quiet",
            "--checkpoint-every", checkpoint_every, "--out", str(out)]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cli_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    fake_mnist(root, "MNIST", n_train=200, n_test=20)
    straight = root / "straight"
    result = subprocess.run(_cli(straight, root, "0it"), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return root, straight


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_masks(tmp_path, cli_data):
    data, straight = cli_data
    out = tmp_path / "killed"
    rng = random.Random(9)
    kills = 0
    for attempt in range(3):  # three kills into the same directory, each resumed by the next start
        proc = subprocess.Popen(_cli(out, data), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        _wait_for(RunFiles(out).init(0), proc)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is None:
            proc.kill()  # SIGKILL: no handler, no cleanup
            kills += 1
        proc.wait()
    assert kills >= 2
    result = subprocess.run(_cli(out, data), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # the dead processes' locks were recognised as stale
    same_results(straight, out, 3)


def test_sigint_to_the_cli_exits_cleanly_and_resumes_and_a_second_run_meanwhile_is_refused(tmp_path, cli_data):
    data, straight = cli_data
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(_cli(out, data, "2it"), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(RunFiles(out).checkpoint(0), proc)
        proc.send_signal(signal.SIGSTOP)  # hold the first run mid-round while a second one starts
        second = subprocess.run(_cli(out, data, "2it"), cwd=REPO, env=_env(), capture_output=True, text=True)
        assert second.returncode == 2 and f"in use by another lth run (pid {proc.pid})" in second.stderr
        assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
        proc.send_signal(signal.SIGINT)  # delivered as it continues
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT" in err and "rerun the same command to resume" in err and "Traceback" not in err
    assert not (out / LOCK_NAME).exists()
    result = subprocess.run(_cli(out, data, "2it"), cwd=REPO, env=_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    same_results(straight, out, 3)


# --- damaged, foreign and mismatched files ---------------------------------------------------------------


def test_checkpoint_corruption_truncation_and_foreign_checkpoints_are_clear_errors(tmp_path):
    splits = tiny_splits()
    with graceful_stop(), pytest.raises(Interrupted):
        run_rounds(lenet(), 1, tmp_path, splits, SignalAt(0, 6), checkpoint_every="0it")
    path = RunFiles(tmp_path).checkpoint(0)
    good = path.read_bytes()
    for damaged, message in [
        (good[: len(good) // 2], "corrupted or truncated checkpoint"),
        (good[:-100] + bytes(b ^ 0xFF for b in good[-100:]), "corrupted or truncated checkpoint"),
        (b"garbage", "is not an lth checkpoint"),
    ]:
        path.write_bytes(damaged)
        with pytest.raises(LthError, match=message):
            run_rounds(lenet(), 1, tmp_path, splits)
    path.write_bytes(good)
    other = Checkpoint(path, identity={"settings": "someone-else", "round": 0})
    with pytest.raises(LthError, match="belongs to another run"):
        other.load()
    assert Checkpoint(path, identity={"settings": "x", "round": 5}).load() is None  # an earlier round's: stale
    run_rounds(lenet(), 1, tmp_path, splits)  # the good checkpoint resumes
    assert RunFiles(tmp_path).round_metrics(1).exists()


def test_bit_flip_in_a_tensor_file_and_files_of_another_run_are_refused(tmp_path):
    splits = tiny_splits()
    run_rounds(lenet(), 1, tmp_path / "a", splits)
    run_rounds(lenet(seed=3), 1, tmp_path / "b", splits)
    a, b = RunFiles(tmp_path / "a"), RunFiles(tmp_path / "b")
    data = bytearray(a.final(0, 1).read_bytes())
    middle = len(data) // 2  # inside fc1.weight's bytes: the zip archive itself does not notice
    data[middle] ^= 0x01
    a.final(0, 1).write_bytes(bytes(data))
    with pytest.raises(LthError, match="do not match the checksum"):
        files.load_tensors(a.final(0, 1), "weights")
    with pytest.raises(LthError, match="do not match the checksum|corrupted or truncated"):
        run_rounds(lenet(), 2, tmp_path / "a", splits)
    b.final(0, 1).replace(a.final(0, 1))  # a file copied over from another run
    with pytest.raises(LthError, match="saved by a run with settings fingerprint"):
        run_rounds(lenet(), 2, tmp_path / "a", splits)


# --- concurrency ---------------------------------------------------------------------------------------------


def test_second_run_into_a_locked_directory_is_refused_and_stale_locks_are_taken_over(tmp_path):
    import socket

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = tmp_path / LOCK_NAME
        tmp_path.mkdir(exist_ok=True)
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(LthError, match=rf"in use by another lth run \(pid {sleeper.pid}\).*delete .*{LOCK_NAME}"):
            run_rounds(lenet(), 1, tmp_path, tiny_splits())
        assert not (tmp_path / "settings.json").exists(), "refused before any work"
    finally:
        sleeper.kill()
        sleeper.wait()
    run_rounds(lenet(), 1, tmp_path, tiny_splits())  # the owner is dead now: a stale lock
    assert not lock.exists()
    # a recycled pid (alive, but started at another time than the lock says) is stale too
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "1"}))
    with RunLock(tmp_path):
        assert json.loads(lock.read_text())["started"] != "1"


# --- resources -------------------------------------------------------------------------------------------


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    splits = tiny_splits()
    run_rounds(lenet(), 1, tmp_path / "straight", splits)
    checkpoint = RunFiles(tmp_path / "full").checkpoint(0)
    real_fsync = os.fsync

    def fsync(fd):  # the first checkpoint is written; every later one finds the disk full
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".train-r00.pt.") and checkpoint.exists():
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(LthError, match="no space left on the device while writing .*train-r00.pt.*intact"):
        run_rounds(lenet(), 1, tmp_path / "full", splits, checkpoint_every="3it")
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not [p for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")], "temp file left behind"
    saved = Checkpoint(checkpoint).read()  # intact: its checksum matches
    assert saved["identity"]["round"] == 0 and saved["state"]["iteration"] == 3
    run_rounds(lenet(), 1, tmp_path / "full", splits, checkpoint_every="3it")
    same_results(tmp_path / "straight", tmp_path / "full", 2)


def test_cuda_out_of_memory_suggests_smaller_batch_or_cpu(tmp_path, monkeypatch):
    import lth.training.trainer

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(lth.training.trainer, "train", oom)
    with pytest.raises(LthError, match=r"out of .* memory .*batch size 20: use a smaller --batch-size.*--device cpu"):
        run_rounds(lenet(), 1, tmp_path, tiny_splits())


# --- settings that cannot work together -------------------------------------------------------------------


@pytest.mark.parametrize("data,message", [
    ({"train": {"batch_szie": 10}}, r"unknown key 'batch_szie' \(did you mean 'batch_size'\?\)"),
    ({"criterion": [1]}, "criterion: expected a string"),
    ({"train": {"lr": float("nan")}}, "bad lr nan: must be a finite number"),
    ({"train": {"momentum": float("inf")}}, "bad momentum inf"),
    ({"seed": 2**70}, "bad seed"),
    ({"rewind": "2ep", "mask1_action": "rewind", "train": {"duration": "1ep"}}, "beyond the training length"),
    ({"prune": {"method": "global", "rates": {"conv": 0.1, "fc": 0.2}}}, "global pruning needs one rate"),
    ({"mask1_action": "rewind"}, "mask1_action 'rewind' with rewind step 0it is the same as 'reset'"),
])
def test_inconsistent_or_malformed_settings_are_refused(data, message):
    with pytest.raises(LthError, match=message):
        from_dict(data)


def test_checks_against_the_data_run_before_any_work(tmp_path):
    settings = lenet(rewind="1ep", mask1_action="rewind", train__duration="4it")  # 6 iterations per epoch
    with pytest.raises(LthError, match=r"rewind step '1ep' \(6 iterations\) is beyond the training length '4it'"):
        run_rounds(settings, 1, tmp_path / "a", tiny_splits())
    with pytest.raises(LthError, match="batch_size 500: larger than the 120 training examples"):
        run_rounds(lenet(train__batch_size=500), 1, tmp_path / "b", tiny_splits())
    with pytest.raises(LthError, match=r"warmup '30it' \(30 iterations\) is longer than the training length '12it'"):
        run_rounds(lenet(train__warmup="30it"), 1, tmp_path / "c", tiny_splits())
    with pytest.raises(LthError, match="dataset root .* exists but is not a directory"):
        from lth.datasets import load_dataset

        (tmp_path / "file").write_text("x")
        load_dataset("mnist-5k", tmp_path / "file")
    with pytest.raises(LthError, match=r"model 'vgg-19' does not fit .* 1x4x4 inputs"):
        check_data(replace(defaults_for("vgg-19"), train__batch_size=10), tiny_splits(shape=(1, 4, 4)))
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_stage_interruption_and_bad_files_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    from stages._common import run_stage

    def interrupted():
        raise Interrupted("interrupted by SIGTERM at iteration 5 of 10; training state saved to x")

    def bad_file():
        files.load_tensors(tmp_path / "nope.pt", "weights")

    for stage, text in ((interrupted, "rerun `dvc repro` to continue"), (bad_file, "missing weights file")):
        with pytest.raises(SystemExit) as info:
            run_stage(stage)
        err = capsys.readouterr().err
        assert info.value.code == 2 and text in err and len(err.strip().splitlines()) == 1
