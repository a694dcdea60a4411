"""A round on two processes under torchrun (gloo, CPU): the same CLI, ranks in lockstep, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lth.training.distributed import World, world_from_env
from lth.core.errors import LthError

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = Path(sys.executable).parent / "torchrun"
ARGS = ["find-ticket", "lenet-300-100", "mnist-5k", "--rounds", "1", "--iterations", "40", "--eval-every", "20it",
        "--device", "cpu", "--control", "random-prune", "-q"]
# round 1 keeps 80% of the hidden layers' weights and 90% of the output layer's (the paper's LeNet rates)
ROUND1_REMAINING = (0.8 * (784 * 300 + 300 * 100) + 0.9 * 100 * 10) / (784 * 300 + 300 * 100 + 100 * 10)


def cli_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return [*ARGS[:3], str(tmp_path / "datasets"), *ARGS[3:], "--out", str(tmp_path / name), *extra]


def launch(tmp_path: Path, name: str, *extra: str) -> subprocess.Popen:
    """tests/ddp_worker.py (the CLI plus a per-rank recorder) under torchrun, 2 processes."""
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(LTH_RECORD=str(tmp_path / name / "record"), PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}",
               COLUMNS="200")
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(REPO / "tests" / "ddp_worker.py"),
               *cli_args(tmp_path, name, *extra)]
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=300)
    assert process.returncode == 0, out
    return out


def recorded(tmp_path: Path, name: str) -> dict[tuple[int, str], dict]:
    """(rank, 'round1-trial0-ticket') -> {'mask': ..., 'state': ...}."""
    files = sorted((tmp_path / name / "record").glob("rank*.pt"))
    out = {}
    for f in files:
        rank, _, network = f.stem.partition("-")
        out[(int(rank.removeprefix("rank")), network)] = torch.load(f, weights_only=True)
    return out


def ticket_metrics(tmp_path: Path, name: str, round_index: int) -> dict:
    record = json.loads((tmp_path / name / "metrics" / "rounds" / f"r{round_index:02d}.json").read_text())
    return {n["arm"]: n for n in record["networks"]}


def assert_pruned_weights_zero(entry: dict) -> None:
    for layer, mask in entry["mask"].items():
        weights = entry["state"][layer]
        assert torch.all(weights[~mask.bool()] == 0), layer


@pytest.mark.heavy
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this Python")
def test_torchrun_two_processes_match_one(tmp_path, monkeypatch, capsys):
    import lth.training.trainer
    from ddp_worker import recorder
    from lth.cli import main
    from lth.datasets import load_dataset

    load_dataset("mnist-5k", tmp_path / "datasets")  # once, before the processes read it
    runs = {"data": launch(tmp_path, "data"), "trials": launch(tmp_path, "trials", "--distributed-mode", "trials")}
    # meanwhile the same run in this process, without torchrun
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(lth.training.trainer, "train_networks", recorder(tmp_path / "single" / "record", 0))
    monkeypatch.setattr(sys, "argv", ["lth", *cli_args(tmp_path, "single")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert not exit_info.value.code, capsys.readouterr()
    outputs = {name: finish(process) for name, process in runs.items()}
    header = {name: " ".join(text.split()) for name, text in outputs.items()}  # rich folds lines at 80 columns
    assert "2 processes (data)" in header["data"] and "2 processes (trials)" in header["trials"]

    single, data, trials = (recorded(tmp_path, n) for n in ("single", "data", "trials"))
    networks = {"round0-trial0-ticket", "round1-trial0-ticket", "round1-trial0-random-prune"}
    assert {net for _, net in single} == networks

    # data parallel: both ranks trained every network, under the same mask, to the same weights
    assert set(data) == {(rank, net) for rank in (0, 1) for net in networks}
    for net in networks:
        zero, one = data[(0, net)], data[(1, net)]
        assert all(torch.equal(zero["mask"][k], one["mask"][k]) for k in zero["mask"]), net
        assert all(torch.equal(zero["state"][k], one["state"][k]) for k in zero["state"]), net
        assert all(torch.equal(zero["mask"][k], single[(0, net)]["mask"][k]) for k in zero["mask"]), net
        for rank in (0, 1):
            assert_pruned_weights_zero(data[(rank, net)])
        # half batches on two ranks, gradients averaged: the single-process step up to float rounding
        for k, value in zero["state"].items():
            torch.testing.assert_close(value, single[(0, net)]["state"][k], atol=1e-4, rtol=1e-3)

    # trials: the round's two networks went to different ranks, each trained as it would be alone
    assert {(rank, net) for rank, net in trials if net.startswith("round1")} == {
        (0, "round1-trial0-ticket"), (1, "round1-trial0-random-prune")}
    for (rank, net), entry in trials.items():
        assert_pruned_weights_zero(entry)
        assert all(torch.equal(entry["mask"][k], single[(0, net)]["mask"][k]) for k in entry["mask"]), net

    # only rank 0 wrote the run; sparsity as requested; accuracy as in one process
    for name in ("data", "trials"):
        on_disk = ticket_metrics(tmp_path, name, 1)
        alone = ticket_metrics(tmp_path, "single", 1)
        assert on_disk["ticket"]["weights_remaining"] == pytest.approx(ROUND1_REMAINING, abs=1e-6)
        assert on_disk["ticket"]["nonzero_weights_remaining"] <= on_disk["ticket"]["weights_remaining"]
        for arm in ("ticket", "random-prune"):
            assert on_disk[arm]["end_test_acc"] == pytest.approx(alone[arm]["end_test_acc"], abs=0.02), (name, arm)
            assert on_disk[arm]["end_val_loss"] == pytest.approx(alone[arm]["end_val_loss"], rel=0.05), (name, arm)
        assert on_disk["ticket"]["end_test_acc"] > 0.5  # it learned something in 40 steps
    assert all((tmp_path / name / "metrics" / "networks.csv").is_file() for name in ("data", "trials"))


def test_world_from_env():
    assert world_from_env({}) is None
    assert world_from_env({"WORLD_SIZE": "1", "RANK": "0"}) is None
    assert world_from_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == World(3, 4, 1)
    with pytest.raises(LthError, match="RANK 5 outside 0..3"):
        world_from_env({"WORLD_SIZE": "4", "RANK": "5"})
    with pytest.raises(LthError, match="must be integers"):
        world_from_env({"WORLD_SIZE": "two", "RANK": "0"})


def test_unknown_distributed_mode_is_a_clear_error(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-m", "lth", *ARGS[:3], str(tmp_path), *ARGS[3:],
                             "--distributed-mode", "ranks", "--out", str(tmp_path / "run")],
                            cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown distributed mode 'ranks'" in result.stderr and "data, trials" in result.stderr
    assert not (tmp_path / "run").exists()


def test_params_train_distributed(tmp_path):
    import yaml

    from lth.runs.params import load_params
    from lth.training.settings import DistributedSettings

    base = yaml.safe_load((REPO / "params.yaml").read_text())
    plain = load_params(REPO / "params.yaml")
    assert plain.distributed == DistributedSettings(1, "data")
    base["train"]["distributed"] = {"nproc": 4, "mode": "trials"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    params = load_params(tmp_path / "params.yaml")
    assert params.distributed == DistributedSettings(4, "trials")
    assert params.settings.fingerprint() == plain.settings.fingerprint()  # processes do not define the results
    for bad, message in (({"nproc": 0}, "nproc: must be >= 1"), ({"mode": "ranks"}, "unknown distributed mode"),
                         ({"nprocs": 2}, "did you mean 'nproc'")):
        base["train"]["distributed"] = bad
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
        with pytest.raises(LthError, match=message):
            load_params(tmp_path / "params.yaml")


def test_batch_that_does_not_split_over_the_processes_is_refused_up_front():
    from lth.training.distributed import Session
    from lth.runs.settings import defaults_for, replace

    settings = replace(defaults_for("lenet-300-100"), train__batch_size=61)
    with pytest.raises(LthError, match="bad batch_size 61: it must split evenly over the 2 processes"):
        Session(World(1, 2, 1), torch.device("cpu"), "data").check(settings.train)
    Session(World(1, 2, 1), torch.device("cpu"), "trials").check(settings.train)  # whole batches per network: fine
    Session(None, torch.device("cpu"), "data").check(settings.train)


@pytest.mark.heavy
@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed next to this Python")
def test_sparse_training_under_torchrun_moves_the_masks_alike_on_every_process(tmp_path):
    """Two processes (gloo) train SET and RigL networks data-parallel: each moves its own masks (SET's draws are
    seeded, RigL's gradients are DDP's averages), and the processes' digests of every final mask and update
    history are compared at the end (a disagreement is an error, exit 2); the result has exact counts."""
    from lth.datasets import load_dataset
    from lth.training.sparse import SparseHooks, SparseSchedule

    load_dataset("mnist-5k", tmp_path / "datasets")
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200")
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "lth", "sparse-train", "lenet-300-100",
               "mnist-5k", str(tmp_path / "datasets"), "--method", "set", "--method", "rigl", "--remaining", "10%",
               "--trials", "1", "--iterations", "30", "--eval-every", "10it", "--update-every", "5", "--device", "cpu",
               "--out", str(tmp_path / "st.json")]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "st.json").read_text())
    assert [n["method"] for n in result["networks"]] == ["set", "rigl"]
    assert all(n["updates"] == 4 for n in result["networks"])  # at 5, 10, 15, 20 (< 75% of 30)
    masks = torch.load(tmp_path / "st.masks.pt", weights_only=True)
    for i, net in enumerate(result["networks"]):
        assert {name: int(masks[f"{i}.{name}"].sum()) for name in net["counts"]} == net["counts"]

    # the digest the processes compare tells masks and histories apart
    hooks = SparseHooks(SparseSchedule(), {"w": (2, 2)}, ["set"], [1])

    class Done:
        final_masks = [{"w": torch.tensor([[True, False], [False, True]])}]
        history = [[{"iteration": 5, "dropped": {"w": 1}, "grown": {"w": 1}}]]

    hooks.made = [(Done(), [0])]
    before = hooks.fingerprint()
    Done.final_masks[0]["w"][0, 1] = True
    assert hooks.fingerprint() != before
