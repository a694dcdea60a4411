"""Noise-aware judgements (lth.core.noise): the spread over trials in the summary, the matching rule on
hand-made records, `lth compare` on real tiny runs, and the determinism the README states."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from lth.core import noise

REPO = Path(__file__).resolve().parents[1]


def test_estimate_uses_the_trials_spread_floored_by_the_test_set():
    spread = noise.estimate([0.90, 0.94, 0.92])
    assert spread.mean == pytest.approx(0.92) and spread.std == pytest.approx(0.02)
    assert spread.se == pytest.approx(0.02 / math.sqrt(3)) and spread.trials == 3
    # three identical trials on 500 test digits still cannot tell apart less than the binomial error
    floored = noise.estimate([0.9, 0.9, 0.9], test_size=500, binomial=True)
    assert floored.se == pytest.approx(math.sqrt(0.9 * 0.1 / 1500))
    assert noise.estimate([0.9], test_size=500, binomial=False).se == 0.0  # RMSE: no binomial floor
    one = noise.estimate([0.9], test_size=500, binomial=True)
    assert one.se == pytest.approx(math.sqrt(0.09 / 500)) and one.std == 0.0
    assert noise.binomial_halfwidth(0.95, 500) == pytest.approx(2 * math.sqrt(0.95 * 0.05 / 500))


def test_difference_and_matching_verdicts():
    a = noise.Estimate(0.950, 0.004, 3)
    near, far = noise.Estimate(0.944, 0.004, 3), noise.Estimate(0.920, 0.004, 3)
    assert not noise.difference(a, near).beyond_noise and noise.difference(a, far).beyond_noise
    assert noise.difference(a, far).diff == pytest.approx(-0.03)
    assert noise.matches(near, a, higher_is_better=True) and not noise.matches(far, a, higher_is_better=True)
    assert noise.matches(noise.Estimate(0.99, 0.004, 3), a, True)  # better always matches
    assert noise.matches(far, a, True, tolerance=0.05)  # a stated tolerance widens it
    # lower is better (RMSE): a ticket well above dense's error does not match
    assert not noise.matches(noise.Estimate(0.30, 0.01, 3), noise.Estimate(0.20, 0.01, 3), higher_is_better=False)


def record(round_index: int, weights: float, accuracies: list[float]) -> dict:
    networks = [{"trial": t, "arm": "ticket", "weights_remaining": weights, "end_test_acc": acc,
                 "end_test_loss": 0.3, "early_stop_test_acc": acc, "early_stop_iteration": 100}
                for t, acc in enumerate(accuracies)]
    return {"format": 2, "task": "classification", "round": round_index, "weights_remaining": weights,
            "networks": networks}


def test_sparsest_matching_follows_the_rule_and_survives_a_one_digit_change():
    from lth.steps.summary import headline_metrics

    dense = record(0, 1.0, [0.952, 0.948, 0.950])
    within = record(5, 0.33, [0.946, 0.942, 0.944])  # 0.6 points below: noise on 500 digits
    below = record(13, 0.056, [0.921, 0.925, 0.923])  # 2.7 points below: beyond it
    summary = headline_metrics([dense, within, below], test_size=500)
    assert summary["sparsest_matching"]["round"] == 5
    assert summary["matching"] == {"rule": noise.RULE, "z": noise.Z, "test_examples": 500}
    assert summary["dense"]["early_stop_test_acc_std"] == pytest.approx(0.002) and summary["dense"]["trials"] == 3
    # one test digit more or less right anywhere (0.2 points) changes nothing
    for changed in (record(5, 0.33, [0.944, 0.942, 0.944]), record(5, 0.33, [0.948, 0.942, 0.944])):
        assert headline_metrics([dense, changed, below], test_size=500)["sparsest_matching"]["round"] == 5
    assert headline_metrics([dense, within, record(13, 0.056, [0.923, 0.925, 0.923])],
                            test_size=500)["sparsest_matching"]["round"] == 5
    # the old rule (mean >= dense mean) would have moved with such a digit: nothing matched at round 5 by it
    assert within["networks"][0]["early_stop_test_acc"] < dense["networks"][0]["early_stop_test_acc"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two one-shot runs to 1% of the weights with other seeds (each with a random-pruning control)."""
    from lth.datasets import load_dataset
    from lth.runs.settings import RunSettings, TrainSettings, replace
    from lth.steps.rounds import run_rounds

    root = tmp_path_factory.mktemp("noise")
    splits = load_dataset("mnist-5k", root)
    train = TrainSettings(optimizer="adam", lr=1.2e-3, batch_size=60, duration="500it", eval_every="100it")
    base = RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train, controls=("random-prune",))
    base = replace(base, prune__schedule="oneshot", prune__target=0.01)
    for seed in (0, 1):
        run_rounds(replace(base, seed=seed), 1, root / f"seed{seed}", splits)
    return root


def test_compare_same_settings_other_seed_is_within_noise(runs, monkeypatch, capsys):
    from lth.report.compare import compare_frame
    from lth.report.sources import from_results

    a, b = from_results(runs / "seed0"), from_results(runs / "seed1")
    assert a.test_size == 500
    frame = compare_frame(a, b)
    assert list(frame["round"]) == [0, 1, 1] and list(frame["arm_a"]) == ["ticket", "ticket", "random-prune"]
    assert not frame["beyond_noise"].any(), frame.to_string()
    assert (frame["difference"] != 0).any()  # other seeds: other numbers, yet within noise
    code, out, err = run_cli(monkeypatch, capsys, "compare", str(runs / "seed0"), str(runs / "seed1"))
    assert code == 0, err
    assert "within noise" in out and "0 of 3 row(s) differ beyond noise" in " ".join(out.split())


def test_compare_a_ticket_with_its_random_pruning_control_is_beyond_noise(runs, monkeypatch, capsys):
    from lth.report.compare import compare_frame
    from lth.report.sources import from_results

    run = from_results(runs / "seed0")
    frame = compare_frame(run, run, arm_a="ticket", arm_b="random-prune")
    sparse = frame[frame["round"] == 1].iloc[0]
    assert sparse["weights_a"] == pytest.approx(0.01, abs=1e-3) and sparse["beyond_noise"], frame.to_string()
    assert sparse["difference"] < 0  # random pruning at 1% is far worse
    code, out, err = run_cli(monkeypatch, capsys, "compare", str(runs / "seed0"), str(runs / "seed0"),
                             "--arm-a", "ticket", "--arm-b", "random-prune", "--csv")
    assert code == 0, err and "beyond_noise" in out
    code, _, err = run_cli(monkeypatch, capsys, "compare", str(runs / "seed0"), "no/such/run")
    assert code == 2 and "no/such/run does not exist" in err


def test_summary_states_spread_and_rule(runs):
    from lth.runs.run import open_results
    from lth.steps import summary

    run = open_results(runs / "seed0")
    summary.execute(run)
    written = json.loads(run.layout.summary.read_text())
    assert written["matching"]["test_examples"] == 500 and written["matching"]["rule"] == noise.RULE
    assert {"early_stop_test_acc_std", "trials"} <= set(written["last"])
    per_round = json.loads(run.layout.round_summary.read_text())
    assert "early_stop_test_acc_std" in per_round["r01"] and "early_stop_test_acc_std" in per_round["r01"]["random-prune"]


def test_readme_states_what_is_bit_identical_and_what_is_not(runs, tmp_path):
    """The README's determinism statement, backed here: the same settings on this machine give bit-identical
    masks, weights and metrics (CLI and pipeline: tests/test_pipeline.py; resume: tests/test_rounds.py)."""
    from lth.datasets import load_dataset
    from lth.runs.run import open_results
    from lth.runs.settings import from_dict
    from lth.steps.rounds import run_rounds

    text = " ".join((REPO / "README.md").read_text().split())
    section = text[text.index("### Determinism"):]
    for claim in ("bit-identical", "same machine", "float32", "DVC remote", "float64"):
        assert claim in section, claim
    first = open_results(runs / "seed0")
    settings = from_dict(json.loads((runs / "seed0" / "settings.json").read_text())["settings"])
    run_rounds(settings, 1, tmp_path / "again", load_dataset("mnist-5k", tmp_path))
    again = open_results(tmp_path / "again")
    for key in ("r00", "r01"):
        a, b = first.ticket(key) if key != "r00" else None, again.ticket(key) if key != "r00" else None
        if a is not None:
            assert all(torch.equal(a.mask[k], b.mask[k]) for k in a.mask)
            assert all(torch.equal(a.final[k], b.final[k]) for k in a.final)
        strip = lambda r: re.sub(r'"(wall_)?seconds": [0-9.e+-]+', "", json.dumps(r))  # noqa: E731
        assert strip(first.record(key)) == strip(again.record(key))
