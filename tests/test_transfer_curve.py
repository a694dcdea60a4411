"""The transfer curve (lth.experiments.transfer.transfer_curve, `experiment transfer --rounds`, the
exp_transfer_domains stage's settings) and its report section, on tiny data.

Tickets move to another task (regression: a fresh dense output layer of the target's size) and another
domain; every arm trains `trials` times; weights remaining, means and spreads are checked against the
masks and the per-trial values themselves.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli, tiny_splits
from lth.core.errors import LthError
from lth.runs.settings import RunSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]
FAST = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="12it", eval_every="6it")


def regression_splits(n: int = 80, outputs: int = 1):
    from lth.datasets import Splits

    g = torch.Generator().manual_seed(7)
    make = lambda: (torch.randn((n, 1, 28, 28), generator=g), torch.randn((n, outputs), generator=g))  # noqa: E731
    (tx, ty), (vx, vy), (sx, sy) = make(), make(), make()
    return Splits("angles", tx, ty, vx, vy, sx, sy, outputs, False, task="regression")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny find-ticket run of LeNet-300-100 on random 28x28 digits: r00, r01, r02."""
    from lth.steps.rounds import run_rounds

    root = tmp_path_factory.mktemp("source") / "run"
    settings = dataclasses.replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=FAST))
    run_rounds(settings, 2, root, tiny_splits())
    return root


def kept_fraction(mask: dict) -> float:
    return sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())


def test_head_of_another_task_is_fresh_dense_and_sized_to_the_target(source):
    from lth.runs.run import open_results
    from lth.experiments.transfer import new_task, retarget

    ticket = open_results(source).ticket("r02")
    start, init, mask = retarget(ticket, 1, seed=3, new_task=True)
    assert start["fc3.weight"].shape == init["fc3.weight"].shape == (1, 100) and start["fc3.bias"].shape == (1,)
    assert bool(mask["fc3.weight"].all())  # dense: its old mask was tied to the ten classes
    assert torch.equal(start["fc3.weight"], init["fc3.weight"])  # the new head starts from its own draw
    for name in ("fc1.weight", "fc2.weight"):  # the ticket itself is untouched
        assert torch.equal(mask[name], ticket.mask[name]) and torch.equal(start[name], ticket.start[name])
    again, _, _ = retarget(ticket, 1, seed=3, new_task=True)
    assert torch.equal(again["fc3.weight"], start["fc3.weight"])  # seeded
    # another task with the same number of outputs still gets a fresh, dense head
    same, _, same_mask = retarget(ticket, 10, seed=3, new_task=True)
    assert not torch.equal(same["fc3.weight"], ticket.start["fc3.weight"]) and bool(same_mask["fc3.weight"].all())
    kept, _, kept_mask = retarget(ticket, 10, seed=3, new_task=False)  # same task and size: the ticket as it is
    assert torch.equal(kept["fc3.weight"], ticket.start["fc3.weight"]) and torch.equal(kept_mask["fc3.weight"],
                                                                                        ticket.mask["fc3.weight"])
    assert new_task(ticket, regression_splits()) and not new_task(ticket, tiny_splits())


def test_curve_arms_sparsities_trials_and_spread(source):
    from lth.runs.run import open_results
    from lth.experiments.transfer import transfer_curve

    run = open_results(source)
    result = transfer_curve(run, "angles.npz", regression_splits(), ["r01", "r02"], trial=0, trials=2,
                            duration="8it", eval_every="4it")
    assert result["task"] == "regression" and result["metric"] == "rmse" and result["new_head"] is True
    assert list(result["rounds"]) == ["r01", "r02"] and result["trials"] == 2
    for key in ("r01", "r02"):
        ticket = run.ticket(key)
        expected = dict(ticket.mask)
        expected["fc3.weight"] = torch.ones(1, 100, dtype=torch.bool)  # the fresh head is dense
        row = result["rounds"][key]
        assert row["weights_remaining"] == pytest.approx(kept_fraction(expected), abs=1e-6)
        for arm in ("ticket", "reinit"):
            entry = row[arm]
            values = [t["early_stop_test_rmse"] for t in entry["per_trial"]]
            assert len(values) == 2 and entry["weights_remaining"] == row["weights_remaining"]
            assert entry["early_stop_test_rmse"] == pytest.approx(np.mean(values), abs=1e-6)
            assert entry["early_stop_test_rmse_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
            assert values[0] != values[1]  # trials have seeds of their own
    sparser = result["rounds"]["r02"]["weights_remaining"] < result["rounds"]["r01"]["weights_remaining"] < 1
    assert sparser and result["dense"]["weights_remaining"] == 1.0 and len(result["dense"]["per_trial"]) == 2
    recorded = json.loads((source / "metrics" / "rounds" / "r02.json").read_text())["networks"][0]
    assert result["source"]["curve"]["r02"]["early_stop_test_acc"] == recorded["early_stop_test_acc"]
    assert list(result["source"]["curve"]) == ["r00", "r01", "r02"]
    # the same call gives the same numbers (seeded), classification targets keep the ticket's head
    again = transfer_curve(run, "angles.npz", regression_splits(), ["r01", "r02"], trials=2, duration="8it",
                           eval_every="4it")
    assert again["rounds"] == result["rounds"]
    same_task = transfer_curve(run, "tiny.npz", tiny_splits(), ["r02"], trials=1, duration="4it", eval_every="4it")
    assert same_task["new_head"] is False and same_task["metric"] == "acc"
    assert same_task["rounds"]["r02"]["weights_remaining"] == pytest.approx(kept_fraction(run.ticket("r02").mask))
    assert same_task["rounds"]["r02"]["ticket"]["early_stop_test_acc_std"] == 0.0  # one trial: no spread


def test_cli_transfer_rounds_curve_report_and_bad_input(source, tmp_path, monkeypatch, capsys):
    data = regression_splits(120)
    arrays = {"x_train": data.train_x.numpy(), "y_train": data.train_y.numpy(), "x_test": data.test_x.numpy(),
              "y_test": data.test_y.numpy()}
    np.savez(tmp_path / "angles.npz", **arrays)
    monkeypatch.chdir(tmp_path)
    args = ("experiment", "transfer", str(source), "angles.npz", str(tmp_path))
    code, out, err = run_cli(monkeypatch, capsys, *args, "--rounds", "1,2", "--trials", "2", "--duration", "8it",
                             "--eval-every", "4it")
    assert code == 0, err
    written = source / "metrics" / "experiments" / "transfer-curve-angles.json"
    payload = json.loads(written.read_text())
    assert list(payload["rounds"]) == ["r01", "r02"] and payload["source"]["run"] == str(source)
    assert "Transfer curve" in out and "r02" in out and "±" in out
    # the same output with other settings is refused, nothing trained or replaced
    before = written.read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *args, "--rounds", "1", "--trials", "2", "--duration", "8it")
    assert code == 2 and "--force" in err and written.read_bytes() == before
    # bad input: one line, exit 2
    for extra, message in ((("--rounds", "2,x"), "bad --rounds '2,x'"),
                           (("--rounds", "1,9"), "round r09 of"),
                           (("--rounds", "0"), "bad --rounds '0'")):
        code, _, err = run_cli(monkeypatch, capsys, *args, *extra, "--out", "other.json")
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "other.json").exists()
    wide = {"x_train": np.zeros((40, 3, 32, 32), "float32"), "y_train": np.zeros((40, 1), "float32"),
            "x_test": np.zeros((20, 3, 32, 32), "float32"), "y_test": np.zeros((20, 1), "float32")}
    np.savez(tmp_path / "wide.npz", **wide)
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "transfer", str(source), "wide.npz", str(tmp_path),
                           "--rounds", "1,2", "--duration", "4it")
    assert code == 2 and "(1x28x28 inputs)" in err and "(3x32x32 inputs)" in err, err

    # the report draws the curve and tabulates it
    from lth.report.document import build_sections
    from lth.report.sources import from_results

    sections = build_sections([from_results(source)], tmp_path)
    section = next(s for s in sections if s.title == "Transfer across domains and tasks")
    assert section.images == ["transfer.png"] and (tmp_path / "transfer.png").stat().st_size > 10_000
    table = section.table
    assert list(table["round"]) == ["r01", "r02"] and set(table["target"]) == {"angles.npz"}
    assert table["ticket"].str.contains("±").all()
    assert set(table["ticket beats reinit"]) <= {"yes", "no", "within noise"}


def test_params_group_is_checked_whole():
    from lth.experiments.settings import check_experiments

    run = RunSettings(model="lenet-300-100", dataset="mnist-5k")
    rounds = ["r01", "r02", "r03"]
    check = lambda group: check_experiments({"transfer_domains": group}, run, rounds, "params.yaml")  # noqa: E731
    assert check({"rounds": ["r01", "r03"], "targets": ["mnist-5k", "fashion-mnist"]})
    for group, message in (
        ({"rounds": ["r01", "r05"]}, "experiments.transfer_domains.rounds[1]: 'r05' is not a declared pruned round"),
        ({"rounds": ["r00"]}, "'r00' is not a declared pruned round"),
        ({"rounds": ["r01", "r01"]}, "a round is listed twice"),
        ({"rounds": ["r01"], "targets": ["mnist5k"]}, "experiments.transfer_domains.targets[0]: unknown dataset"),
        ({"rounds": ["r01"], "targets": ["cifar-10"]}, "'cifar-10' has 3x32x32 inputs but the tickets were found on "
                                                       "'mnist-5k' (1x28x28 inputs)"),
        ({"rounds": ["r01"], "targets": []}, "list at least one target"),
        ({"rounds": ["r01"], "trials": 0}, "trials: must be at least 1"),
        ({"rounds": ["r01"], "duration": "2xp"}, "experiments.transfer_domains.duration"),
    ):
        with pytest.raises(LthError, match=None) as caught:
            check(group)
        assert message in str(caught.value), (group, str(caught.value))


def test_default_params_and_stage_declare_the_group():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    group = params["experiments"]["transfer_domains"]
    assert group["targets"] == ["tts-digits", "mnist-5k-rotation"] and group["trials"] >= 2
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["exp_transfer_domains"]
    assert "experiments.transfer_domains" in stage["params"] and "data/rounds" in stage["deps"]
    report = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    assert "metrics/experiments/transfer_domains.json" in report["deps"]
