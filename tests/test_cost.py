"""Cost of finding a ticket: early-bird stops (lth/steps/early_bird.py), the one-shot schedule
(lth/pruning/schedule.py), compute-to-ticket (lth.runs.records.compute_to_ticket) and the report's
accuracy-vs-compute figure, on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import RunFiles, run_cli, tiny_splits
from lth.core import files
from lth.core.errors import LthError
from lth.core.masks import mask_distance
from lth.runs.records import TICKET, compute_to_ticket
from lth.runs.settings import defaults_for, replace
from lth.steps.early_bird import EARLY_BIRD_CHECKS, settled
from lth.steps.rounds import run_rounds


def lenet(**changes):
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="30it",
                   train__eval_every="2it")
    return replace(base, **changes)


def records(root: Path, rounds: int) -> list[dict]:
    return [json.loads(RunFiles(root).round_metrics(r).read_text()) for r in range(rounds + 1)]


# --- early-bird ----------------------------------------------------------------------------------------------


def test_mask_distance_is_0_for_identical_masks_and_1_for_complementary_ones():
    g = torch.Generator().manual_seed(0)
    a = {"w": torch.rand(30, 20, generator=g) > 0.5, "v": torch.rand(7, generator=g) > 0.3}
    assert mask_distance(a, {k: m.clone() for k, m in a.items()}) == 0.0
    assert mask_distance(a, {k: ~m for k, m in a.items()}) == 1.0
    b = {k: m.clone() for k, m in a.items()}
    b["w"][0, :10] = ~b["w"][0, :10]
    assert mask_distance(a, b) == pytest.approx(10 / 607)
    room = {"w": torch.zeros(30, 20, dtype=torch.bool), "v": torch.ones(7, dtype=torch.bool)}
    room["w"][0] = True  # only the first row and v may still change: 10 of 27 positions differ
    assert mask_distance(a, b, within=room) == pytest.approx(10 / 27)


def test_the_rule_needs_five_consecutive_distances_below_the_threshold():
    assert EARLY_BIRD_CHECKS == 5
    assert not settled([0.05] * 4, 0.1)
    assert settled([0.05] * 5, 0.1)
    assert not settled([0.05, 0.05, 0.2, 0.05, 0.05, 0.05], 0.1)
    assert settled([0.3, 0.2, 0.05, 0.05, 0.05, 0.05, 0.05], 0.1)
    assert not settled([0.1] * 5, 0.1)  # below, not at


def check_rule(record: dict, total: int, every: int) -> None:
    """Each ticket stopped exactly at the first check where the rule held, or trained to the end if it never did."""
    for net in record["networks"]:
        if net["arm"] != TICKET:
            continue
        bird = net["early_bird"]
        distances = bird["distances"]
        assert [i for i, _ in distances] == list(range(2 * every, every * (len(distances) + 1) + 1, every))
        first = next((i for n, (i, _) in enumerate(distances) if settled([d for _, d in distances[: n + 1]],
                                                                              bird["threshold"])), None)
        assert bird["stopped_at"] == first
        assert net["iterations"] == (first if first is not None else total)
        assert net["curve"][-1]["iteration"] == net["iterations"]  # the curve ends at the stop
        arms = [n for n in record["networks"] if n["trial"] == net["trial"]]
        assert {n["iterations"] for n in arms} == {net["iterations"]}, "controls stop with their ticket"


def test_early_bird_stops_a_round_only_when_the_rule_holds(tmp_path):
    splits = tiny_splits()
    # distance < 1 always holds for masks that keep 80% of the survivors, so the rule holds at the 6th check
    stops = lenet(prune__early_bird=True, prune__early_bird_distance=1.0, controls=("reinit",), trials=2)
    run_rounds(stops, 2, tmp_path / "stops", splits)
    for record in records(tmp_path / "stops", 2):
        check_rule(record, 30, 2)
        ticket = next(n for n in record["networks"] if n["arm"] == TICKET)
        assert ticket["early_bird"]["stopped_at"] == 2 * (EARLY_BIRD_CHECKS + 1)
    # the saved weights are the ones of the stop: evaluating them gives the curve's last point
    from lth.runs.run import open_results
    from lth.models import build_model
    from lth.tasks import get_task
    from lth.training.evaluation import evaluate
    from lth.training.networks import SingleNetwork

    final = files.load_tensors(RunFiles(tmp_path / "stops").final(0, 1), "weights")
    model = build_model("lenet-300-100", (1, 28, 28), 10, 0)
    model.load_state_dict(final)
    acc = evaluate(SingleNetwork(model), splits.test_x, splits.test_y, get_task("classification"))["acc"]
    assert float(acc[0]) == records(tmp_path / "stops", 2)[1]["networks"][0]["curve"][-1]["test_acc"]
    # and the next round's mask is the one the last check drew: the next round's score + mask of those weights
    assert open_results(tmp_path / "stops").ticket("r02", 0).mask is not None

    # a threshold no distance gets under: every round trains to the end, with its distances recorded
    never = lenet(prune__early_bird=True, prune__early_bird_distance=1e-12, train__duration="12it")
    run_rounds(never, 1, tmp_path / "never", splits)
    for record in records(tmp_path / "never", 1):
        check_rule(record, 12, 2)
        assert record["networks"][0]["early_bird"]["stopped_at"] is None


def test_networks_trained_one_after_another_stop_where_their_ticket_stopped(tmp_path):
    """Conv nets (LeNet-5 here) train one network at a time on the CPU (lth.training.trainer.batching_pays): the
    ticket's loop runs the checks, and its controls' loops, which run later, stop at the ticket's iteration."""
    settings = replace(defaults_for("lenet-5", "mnist-5k"), train__batch_size=20, train__duration="16it",
                       train__eval_every="2it", prune__early_bird=True, prune__early_bird_distance=1.0,
                       controls=("reinit", "random-prune"))
    run_rounds(settings, 1, tmp_path / "run", tiny_splits())
    for record in records(tmp_path / "run", 1):
        check_rule(record, 16, 2)
    assert [n["iterations"] for n in records(tmp_path / "run", 1)[1]["networks"]] == [12, 12, 12]


def test_early_bird_rounds_resume_from_a_mid_round_checkpoint_as_if_never_interrupted(tmp_path):
    import signal

    from test_reliability import SignalAt, same_results

    from lth.core.interrupt import Interrupted, graceful_stop

    splits = tiny_splits()
    settings = lenet(prune__early_bird=True, prune__early_bird_distance=1.0, train__eval_every="1it",
                     train__duration="12it", controls=("reinit",), trials=2)
    run_rounds(settings, 2, tmp_path / "straight", splits)
    with graceful_stop(), pytest.raises(Interrupted):
        run_rounds(settings, 2, tmp_path / "resumed", splits, SignalAt(1, 4, signal.SIGINT), checkpoint_every="2it")
    run_rounds(settings, 2, tmp_path / "resumed", splits, checkpoint_every="2it")
    same_results(tmp_path / "straight", tmp_path / "resumed", 3, 2)
    assert records(tmp_path / "resumed", 2)[1]["networks"][0]["early_bird"]["stopped_at"] == 6


# --- one-shot ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["layerwise", "global"])
@pytest.mark.parametrize("target", [0.05, 0.2])
def test_one_shot_reaches_the_requested_sparsity_exactly(tmp_path, method, target):
    from lth.runs.run import open_results

    rates = {"conv": 0.0, "fc": 0.2, "output": 0.2 if method == "global" else 0.1}
    settings = lenet(prune__schedule="oneshot", prune__target=target, prune__method=method, prune__rates=rates,
                     train__duration="4it")
    run_rounds(settings, 1, tmp_path / "run", tiny_splits())
    mask = open_results(tmp_path / "run").ticket("r01", 0).mask
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == round(total * target)
    fractions = {name: float(m.float().mean()) for name, m in mask.items()}
    if method == "layerwise":  # IMP's per-layer fractions at that sparsity: hidden layers alike, output kept more
        hidden = [f for name, f in fractions.items() if not name.startswith("fc3")]
        assert max(hidden) - min(hidden) < 1e-3 and fractions["fc3.weight"] > max(hidden)
    assert records(tmp_path / "run", 1)[1]["weights_remaining"] == pytest.approx(target, abs=1e-5)


def test_one_shot_prunes_once_and_bad_targets_are_refused(tmp_path):
    with pytest.raises(LthError, match="prunes once"):
        run_rounds(lenet(prune__schedule="oneshot"), 2, tmp_path / "two", tiny_splits())
    for target in (0.0, 1.0, 1.5):
        with pytest.raises(LthError, match="bad prune.target"):
            lenet(prune__schedule="oneshot", prune__target=target).validate()
    with pytest.raises(LthError, match="cannot be reached"):
        from lth.pruning.schedule import oneshot_keep

        oneshot_keep({"a": 100, "b": 900}, {"a": "fc", "b": "output"}, {"fc": 0.2, "output": 0.0}, "layerwise", 0.5)


def test_cli_options_and_their_errors(monkeypatch, capsys, tmp_path):
    from conftest import fake_mnist

    fake_mnist(tmp_path / "data", "MNIST", n_train=40, n_test=20)
    args = ["find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"), "--iterations", "4",
            "--batch-size", "10", "-q"]
    code, out, err = run_cli(monkeypatch, capsys, *args, "--schedule", "oneshot", "--rounds", "3",
                             "--out", str(tmp_path / "a"))
    assert code == 2 and "the one-shot schedule prunes once" in err and len(err.strip().splitlines()) == 1
    for bad, message in ((["--target-remaining", "0%"], "bad --target-remaining '0%'"),
                         (["--early-bird-distance", "0"], "bad early_bird_distance"),
                         (["--schedule", "twice"], "unknown schedule 'twice'")):
        code, out, err = run_cli(monkeypatch, capsys, *args, "--schedule", "oneshot", *bad,
                                 "--out", str(tmp_path / "b"))
        assert code == 2 and message in err, (bad, err)
    code, out, err = run_cli(monkeypatch, capsys, *args, "--schedule", "oneshot", "--target-remaining", "10%",
                             "--out", str(tmp_path / "c"))
    assert code == 0, err
    assert "compute to the r01 ticket: 4 training steps" in out
    record = json.loads((tmp_path / "c" / "metrics" / "rounds" / "r01.json").read_text())
    assert record["weights_remaining"] == pytest.approx(0.1, abs=1e-5)


def test_params_yaml_oneshot_needs_one_declared_round(tmp_path):
    import yaml

    from lth.runs.params import load_params

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["prune"]["schedule"] = "oneshot"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LthError, match="prune.schedule oneshot prunes once"):
        load_params(tmp_path / "params.yaml")


# --- compute-to-ticket ---------------------------------------------------------------------------------------


def test_compute_to_ticket_sums_the_tickets_training_of_every_earlier_round(tmp_path):
    from lth.steps.summary import round_metrics

    settings = lenet(prune__early_bird=True, prune__early_bird_distance=1.0, controls=("reinit",), trials=2)
    run_rounds(settings, 2, tmp_path / "run", tiny_splits())
    recs = records(tmp_path / "run", 2)
    rows = compute_to_ticket(recs)
    assert [(r["round"], r["trial"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    for trial in (0, 1):
        own = [next(n for n in rec["networks"] if n["trial"] == trial and n["arm"] == TICKET) for rec in recs]
        mine = [r for r in rows if r["trial"] == trial]
        for r, row in enumerate(mine):
            assert row["to_ticket_iterations"] == sum(n["iterations"] for n in own[:r])
            assert row["total_iterations"] == sum(n["iterations"] for n in own[: r + 1])
            assert row["to_ticket_seconds"] == pytest.approx(sum(n["seconds"] for n in own[:r]), abs=2e-3)
            assert row["stopped_early"]
    assert rows[-1]["to_ticket_iterations"] == 2 * 12  # two earlier rounds stopped at iteration 12
    assert round_metrics(recs)["r02"]["compute"]["to_ticket_iterations"] == 24
    per_round = json.loads((tmp_path / "run" / "metrics" / "per_round.json").read_text())
    assert per_round["r02"]["compute"]["total_iterations"] == 36
    # the seconds of a round are shared among the networks trained together
    r1 = recs[1]["networks"]
    assert len({n["seconds"] for n in r1}) == 1


def test_report_puts_runs_on_one_accuracy_vs_compute_plot_with_a_matched_table(tmp_path):
    import pandas as pd

    from lth.report import make_report

    splits = tiny_splits()
    run_rounds(lenet(train__duration="16it"), 3, tmp_path / "imp", splits)
    run_rounds(lenet(train__duration="16it", prune__early_bird=True, prune__early_bird_distance=1.0), 3,
                tmp_path / "early", splits)
    run_rounds(lenet(train__duration="16it", prune__schedule="oneshot", prune__target=0.5), 1, tmp_path / "once",
                splits)
    make_report([str(tmp_path / n) for n in ("imp", "early", "once")], tmp_path / "report")
    frame = pd.read_csv(tmp_path / "report" / "compute.csv")
    assert set(frame["schedule"]) == {"IMP", "early-bird, distance 1", "one-shot to 50%"}
    imp = frame[frame["schedule"] == "IMP"]
    assert list(imp["total_iterations"]) == [16, 32, 48, 64]
    early = frame[frame["schedule"] == "early-bird, distance 1"]
    assert list(early["total_iterations"]) == [12, 24, 36, 48] and early["stopped_early"].all()
    matched = pd.read_csv(tmp_path / "report" / "compute_matched.csv")
    # one-shot's 50% ticket beside IMP's and early-bird's round 3 (0.8^3 = 51.2% of the hidden layers)
    assert len(matched) == 3 and set(matched["round"]) == {1, 3}
    assert (tmp_path / "report" / "compute.png").stat().st_size > 10_000
    assert "Accuracy vs training compute" in (tmp_path / "report" / "report.md").read_text()


def test_the_train_stages_rerun_when_early_birds_settings_change_and_only_then():
    """Early-bird checks draw the next mask during training, so training then depends on the criterion and the
    pruning settings: the train stages depend on data/early_bird.json (stage early_bird, whose params they
    are), which holds them only while early-bird is on, so `dvc exp run -S criterion=movement` keeps the
    dense round cached without early-bird and reruns it with."""
    import yaml

    from lth.steps.early_bird import what_training_reads

    stages = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    assert {"criterion", "prune", "pruning"} <= set(stages["early_bird"]["params"])
    assert stages["early_bird"]["outs"] == ["data/early_bird.json"]
    for stage in (stages["train_dense"], stages["train"]["do"]):
        assert "data/early_bird.json" in stage["deps"]
    off, on = lenet(), lenet(prune__early_bird=True)
    assert what_training_reads(off) == what_training_reads(replace(off, criterion="movement",
                                                                   prune__rates={"fc": 0.5}))
    assert what_training_reads(on) != what_training_reads(replace(on, criterion="movement"))
    assert what_training_reads(on) != what_training_reads(replace(on, prune__early_bird_distance=0.05))
    assert what_training_reads(on) != what_training_reads(replace(on, prune__rates={"fc": 0.5}))


def test_the_rounds_table_names_every_control_whole_at_80_columns(tmp_path):
    from rich.console import Console

    from lth.cli import summary_table

    run_rounds(lenet(train__duration="4it", controls=("reinit", "random-prune")), 1, tmp_path / "run", tiny_splits())
    console = Console(width=80, record=True)
    console.print(summary_table(records(tmp_path / "run", 1)))
    text = console.export_text()
    assert "random-prune" in text and "reinit" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
