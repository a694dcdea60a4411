"""Instability analysis (lth/experiments/stability.py): the error barrier on the line between two copies of a
ticket, its command, its DVC stage and its report figure, on tiny data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import run_cli, tiny_splits
from lth.core.errors import LthError
from lth.runs.settings import RunSettings, TrainSettings
from lth.experiments.settings import check_line as check
from lth.experiments.stability import barrier, error_line, instability, interpolate

FAST = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="12it", eval_every="6it")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny find-ticket run of LeNet-300-100 on random 28x28 data: r00 and r01."""
    from lth.steps.rounds import run_rounds

    splits = tiny_splits()
    root = tmp_path_factory.mktemp("stability") / "run"
    settings = dataclasses.replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=FAST))
    run_rounds(settings, 1, root, splits)
    return root, splits


def ticket(root: Path):
    from lth.runs.run import open_results

    return open_results(root).ticket("r01", 0)


def test_a_network_interpolated_with_itself_has_no_barrier_and_its_ends_are_its_own_evaluation(run):
    from lth.training.trainer import Network, TrainJob, train_networks

    root, splits = run
    t = ticket(root)
    trained = train_networks(TrainJob(t.settings.model, FAST), splits, [Network(0, "x", 3, t.start, t.mask)])[0]
    errors = error_line(t.settings.model, splits, trained.state, trained.state, [0, 0.25, 0.5, 1])
    assert barrier(errors) == 0.0 and len(set(errors)) == 1
    assert errors[0] == pytest.approx(1 - trained.final["test_acc"], abs=1e-9)  # a fraction misclassified

    other = {k: v + 0.1 for k, v in trained.state.items()}
    assert all(torch.equal(interpolate(trained.state, other, 0.0)[k], trained.state[k]) for k in other)
    assert all(torch.equal(interpolate(trained.state, other, 1.0)[k], other[k]) for k in other)
    assert barrier([10.0, 14.0, 12.0]) == pytest.approx(3.0) and barrier([10.0, 9.0, 12.0]) == pytest.approx(1.0)
    assert barrier([10.0, 9.0, 10.0]) == 0.0  # a line below its ends has no barrier


def test_batch_norm_statistics_are_recomputed_at_every_point():
    from lth.models import build_model

    splits = tiny_splits(n_train=40, n_eval=20, shape=(3, 32, 32))
    model = build_model("resnet-20", splits.input_shape, splits.num_outputs, 0)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    stale = {k: (v + 5.0 if "running_mean" in k else v) for k, v in state.items()}  # nonsense statistics
    errors = error_line("resnet-20", splits, stale, stale, [0, 0.5, 1])
    reference = error_line("resnet-20", splits, state, state, [0, 0.5, 1])
    assert errors == reference  # the stored statistics were replaced by the training data's


def test_instability_trains_two_copies_per_rewind_point(run):
    root, splits = run
    t = ticket(root)
    results = instability(t, splits, ["own", "0it", "6it"], "data-order", points=5)
    assert [r["rewind"] for r in results] == ["own", "0it", "6it"]
    assert [r["rewind_iteration"] for r in results] == [0, 0, 6]
    for r in results:
        assert r["alphas"] == [0, 0.25, 0.5, 0.75, 1.0] and len(r["test_error"]) == 5
        assert r["barrier"] == pytest.approx(barrier(r["test_error"]), abs=1e-3) and r["barrier"] >= 0
        assert r["end_test_acc"] == [pytest.approx(1 - e, abs=1e-6) for e in (r["test_error"][0], r["test_error"][-1])]
    assert results[0]["test_error"] == results[1]["test_error"]  # own rewind here is θ0: the same as 0it
    contrast = instability(t, splits, ["0it"], "init", points=3)
    assert contrast[0]["test_error"] != results[1]["test_error"][::2]
    for bad, message in ((("flip", 5), "unknown pair 'flip'"), (("init", 2), "bad points 2")):
        with pytest.raises(LthError, match=message):
            check(*bad)


def test_cli_stability_writes_results_and_refuses_bad_input(run, tmp_path, monkeypatch, capsys):
    import lth.datasets as datasets

    root, splits = run
    monkeypatch.setattr(datasets, "load_dataset", lambda name, where, *args, **kw: splits)
    out = tmp_path / "stability.json"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "experiment", "stability", str(root), str(tmp_path),
                                   "--round", "1", "--rewind", "0it", "--rewind", "6it", "--points", "4",
                                   "--out", str(out))
    assert code == 0, stderr
    saved = json.loads(out.read_text())
    assert {"round", "trial", "weights_remaining", "pair", "task", "error", "threshold", "rewinds"} <= set(saved)
    assert saved["threshold"] == 0.02 and saved["error"] == "error" and 0 < saved["weights_remaining"] < 1
    assert saved["round"] == 1 and saved["pair"] == "data-order" and len(saved["rewinds"]) == 2
    assert "Instability" in stdout

    for extra, message in ((["--round", "4"], "round r04 of"), (["--round", "1", "--points", "2"], "bad points 2"),
                           (["--round", "1", "--pair", "twins"], "unknown pair 'twins'"),
                           (["--round", "1", "--rewind", "soon"], "soon")):
        code, _, stderr = run_cli(monkeypatch, capsys, "experiment", "stability", str(root), str(tmp_path), *extra,
                                  "--out", str(tmp_path / "never.json"))
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (extra, stderr)
    assert not (tmp_path / "never.json").exists()

    # the report: barrier vs rewind iteration, with the threshold (results found where the command puts them)
    (root / "metrics" / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "metrics" / "experiments" / "stability-r01.json").write_text(out.read_text())
    code, _, stderr = run_cli(monkeypatch, capsys, "report", str(root), "--out", str(tmp_path / "report"))
    assert code == 0, stderr
    frame = pd.read_csv(tmp_path / "report" / "stability.csv")
    assert list(frame["rewind_iteration"]) == [0, 6] and (tmp_path / "report" / "stability.png").is_file()
    assert "Instability" in (tmp_path / "report" / "report.md").read_text()
