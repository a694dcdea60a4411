"""Pruning at initialization (lth/pruning/at_init.py, lth/experiments/prune_at_init.py): the methods' scores as
their papers define them, exact sparsity, the Missing-the-Mark controls, the CLI, resumption and the report."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import run_cli, tiny_splits
from lth.core.errors import LthError
from lth.runs.settings import RunSettings, TrainSettings
from lth.models import build_model
from lth.pruning import at_init
from lth.pruning.at_init import (METHODS, ScoringInputs, collapsed_layers, control_mask, load_settings,
                                 parse_remaining, prune_at_init)

REPO = Path(__file__).resolve().parents[1]
FAST = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="12it", eval_every="6it")


def inputs_for(model_name: str = "lenet-300-100", splits=None, seed: int = 0) -> ScoringInputs:
    splits = splits or tiny_splits()
    model = build_model(model_name, splits.input_shape, splits.num_outputs, seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ScoringInputs(model_name, state, model.prunable_layers(), splits, 20, seed)


def full_mask(inputs: ScoringInputs) -> dict:
    return {n: torch.ones(inputs.state[n].shape, dtype=torch.bool) for n in inputs.kinds}


def kept(mask: dict) -> dict:
    return {n: int(m.sum()) for n, m in mask.items()}


def test_snip_scores_are_the_gradient_of_the_loss_with_respect_to_an_explicit_mask():
    inputs = inputs_for()
    model = build_model(inputs.model_name, inputs.splits.input_shape, inputs.splits.num_outputs, 0)
    model.load_state_dict(dict(inputs.state))
    params = dict(model.named_parameters())
    masks = {n: torch.ones_like(params[n], requires_grad=True) for n in inputs.kinds}  # m = 1, a variable
    batches = list(at_init._batches(inputs, at_init.SNIP_BATCHES))
    loss = 0.0
    for x, y in batches:
        masked = {n: p * masks[n] if n in masks else p for n, p in params.items()}
        loss = loss + F.cross_entropy(torch.func.functional_call(model, masked, (x,)), y) / len(batches)
    grads = torch.autograd.grad(loss, [masks[n] for n in inputs.kinds])
    expected = {n: g.abs() for n, g in zip(inputs.kinds, grads)}
    total = sum(float(e.sum()) for e in expected.values())

    scores = METHODS["snip"].score(inputs, full_mask(inputs))
    assert set(scores) == set(inputs.kinds)
    assert sum(float(s.sum()) for s in scores.values()) == pytest.approx(1.0)  # normalised over all weights
    for n in inputs.kinds:
        torch.testing.assert_close(scores[n], expected[n] / total, rtol=1e-4, atol=1e-9)


def test_grasp_keeps_the_weights_whose_removal_least_reduces_gradient_flow():
    """GraSP's score is -θ ⊙ Hg (removed: the largest); we rank by θ ⊙ Hg. Hg checked by finite differences
    of the gradient along g: Hg ≈ (∇L(θ + εg) - ∇L(θ - εg)) / 2ε."""
    inputs = inputs_for()
    model = build_model(inputs.model_name, inputs.splits.input_shape, inputs.splits.num_outputs, 0).double()
    model.load_state_dict({k: v.double() for k, v in inputs.state.items()})
    names = list(inputs.kinds)
    batches = [(x.double(), y) for x, y in at_init._batches(inputs, at_init.SNIP_BATCHES)]

    def gradient(shift: dict) -> list:
        params = {n: p + shift.get(n, 0) for n, p in model.named_parameters()}
        loss = sum(F.cross_entropy(torch.func.functional_call(model, params, (x,)) / at_init.GRASP_TEMPERATURE, y)
                   for x, y in batches) / len(batches)
        return torch.autograd.grad(loss, [params[n] for n in names])

    for p in model.parameters():
        p.requires_grad_(True)
    g = gradient({})
    eps = 1e-3
    plus = gradient({n: eps * gi for n, gi in zip(names, g)})
    minus = gradient({n: -eps * gi for n, gi in zip(names, g)})
    expected = {n: inputs.state[n].double() * (a - b) / (2 * eps) for n, a, b in zip(names, plus, minus)}

    scores = METHODS["grasp"].score(inputs, full_mask(inputs))
    for n in names:
        scale = float(expected[n].abs().max())
        torch.testing.assert_close(scores[n].double(), expected[n], rtol=0, atol=2e-3 * scale)


def test_synflow_is_data_free_and_never_empties_a_layer_where_magnitude_and_snip_do():
    a = inputs_for(splits=tiny_splits(n_train=120))
    other = tiny_splits(n_train=60)
    b = ScoringInputs(a.model_name, a.state, a.kinds, dataclasses.replace(other, train_x=other.train_x * 3 + 1),
                      a.batch_size, seed=7)
    first, second = METHODS["synflow"].score(a, full_mask(a)), METHODS["synflow"].score(b, full_mask(b))
    assert all(torch.equal(first[n], second[n]) for n in a.kinds)

    remaining = 0.001  # 99.9% sparsity: 266 of LeNet-300-100's 266,200 weights
    collapsed = {m: collapsed_layers(prune_at_init(m, a, remaining)[0]) for m in ("synflow", "magnitude", "snip")}
    assert collapsed["synflow"] == []
    assert collapsed["magnitude"] and collapsed["snip"], collapsed  # the contrast holds on LeNet-300-100

    conv = inputs_for("conv-2", splits=tiny_splits(n_train=40, shape=(3, 32, 32)))
    mask, _ = prune_at_init("synflow", conv, remaining, synflow_rounds=20)  # 20 of the default 100 suffice here: 4x faster
    assert collapsed_layers(mask) == []
    assert collapsed_layers(prune_at_init("magnitude", conv, remaining)[0])  # the largest |w| sit in small layers


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_keeps_exactly_the_requested_share_of_weights_globally(method):
    inputs = inputs_for()
    total = sum(inputs.state[n].numel() for n in inputs.kinds)
    for remaining in (0.073, 0.5):
        mask, scores = prune_at_init(method, inputs, remaining, synflow_rounds=10)
        assert sum(kept(mask).values()) == round(total * remaining), (method, remaining)
        assert set(mask) == set(inputs.kinds) == set(scores)
        assert all(m.dtype == torch.bool and m.shape == inputs.state[n].shape for n, m in mask.items())
    first, _ = prune_at_init(method, inputs, 0.073, synflow_rounds=10)
    again, _ = prune_at_init(method, inputs, 0.073, synflow_rounds=10)
    assert all(torch.equal(first[n], again[n]) for n in first)  # same inputs, same seed: the same mask


def test_controls_keep_per_layer_counts_shuffle_moves_weights_and_invert_is_disjoint():
    inputs = inputs_for()
    mask, scores = prune_at_init("magnitude", inputs, 0.2)
    shuffled = control_mask("shuffle", mask, scores, seed=0)
    inverted = control_mask("invert", mask, scores, seed=0)
    assert kept(shuffled) == kept(mask) == kept(inverted)
    assert any(not torch.equal(shuffled[n], mask[n]) for n in mask)
    for n, m in mask.items():
        if 2 * int(m.sum()) <= m.numel():  # room for a disjoint set
            assert not (inverted[n] & m).any(), n
        kept_scores, dropped = scores[n][inverted[n]], scores[n][~inverted[n]]
        assert kept_scores.max() <= dropped.min()  # invert keeps the lowest-scored
    assert all(torch.equal(control_mask("reinit", mask, scores, 0)[n], mask[n]) for n in mask)
    with pytest.raises(LthError, match="unknown pruning-at-init control 'flip'"):
        control_mask("flip", mask, scores, 0)


def test_remaining_and_params_group_are_checked():
    assert parse_remaining("5%") == pytest.approx(0.05) and parse_remaining("100%") == 1.0
    for bad in ("0%", "150%", "abc", "-1%"):
        with pytest.raises(LthError, match=f"bad remaining '{bad}'"):
            parse_remaining(bad)
    settings = load_settings({"methods": ["snip", "synflow"], "remaining": "2%"}, "params.yaml: prune_at_init")
    assert settings.methods == ("snip", "synflow") and settings.controls == ("shuffle", "reinit")
    for group, message in (({"methods": ["snipp"]}, "unknown pruning-at-init method 'snipp'.*snip"),
                           ({"controls": ["nope"]}, "unknown pruning-at-init control 'nope'"),
                           ({"remaining": "0%"}, r"prune_at_init.remaining: bad remaining '0%'"),
                           ({"methods": []}, "prune_at_init.methods: name at least one"),
                           ({"synflow_rounds": 0}, "synflow_rounds: 0 must be >= 1"),
                           ({"colour": 1}, "colour")):
        with pytest.raises(LthError, match=message):
            load_settings(group, "params.yaml: prune_at_init")


def tiny_settings(**changes) -> RunSettings:
    return dataclasses.replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=FAST), **changes)


def test_prune_and_train_records_a_round_with_controls_and_collapse(monkeypatch, tmp_path):
    from lth.experiments.prune_at_init import prune_and_train, run_methods

    splits = tiny_splits()
    result = prune_and_train(tiny_settings(trials=2), splits, "magnitude", 0.001, ["shuffle", "reinit", "invert"])
    assert [(n["trial"], n["arm"]) for n in result["networks"]] == [
        (t, arm) for t in (0, 1) for arm in ("ticket", "shuffle", "reinit", "invert")]
    assert result["weights_remaining"] == pytest.approx(266 / 266200, abs=1e-6)
    for network in result["networks"]:
        assert network["weights_remaining"] == pytest.approx(result["weights_remaining"], abs=1e-6)
        assert 0 <= network["early_stop_test_acc"] <= 1 and network["curve"]
        layers = network["layers"]
        assert sum(v["kept"] for v in layers.values()) == 266
    assert set(result["collapsed_layers"]) >= {"0/ticket", "0/shuffle", "0/reinit"}  # a result, recorded
    assert "fc1.weight" in result["collapsed_layers"]["0/ticket"]

    # run_methods: one file per method, written as each target finishes; a rerun trains nothing
    out = tmp_path / "out"
    settings = tiny_settings()
    results = run_methods(settings, splits, ["random", "synflow"], [0.5, 0.1], ["shuffle"], 5, out)
    assert [(r["method"], r["target_weights_remaining"]) for r in results] == [
        ("random", 0.5), ("random", 0.1), ("synflow", 0.5), ("synflow", 0.1)]
    saved = json.loads((out / "metrics" / "prune_at_init" / "synflow.json").read_text())
    assert saved["method"] == "synflow" and [r["target_weights_remaining"] for r in saved["results"]] == [0.5, 0.1]
    top = saved["headline"]["10%"]  # what dvc metrics show/diff display
    assert set(top) == {"weights_remaining", "ticket_early_stop_test_acc", "shuffle_early_stop_test_acc",
                        "emptied_layers"}
    assert top["ticket_early_stop_test_acc"] == pytest.approx(
        saved["results"][1]["networks"][0]["early_stop_test_acc"], abs=1e-6)

    import lth.experiments.prune_at_init as module

    calls = []
    real = module.prune_and_train
    monkeypatch.setattr(module, "prune_and_train", lambda *a, **k: calls.append(a[2:4]) or real(*a, **k))
    again = run_methods(settings, splits, ["random", "synflow"], [0.5, 0.1, 0.05], ["shuffle"], 5, out)
    assert calls == [("random", 0.05), ("synflow", 0.05)]  # only the new target
    saved = json.loads((out / "metrics" / "prune_at_init" / "random.json").read_text())["results"]
    assert again[0] == saved[0] and saved[0]["networks"][0]["curve"] and len(saved) == 3  # kept as saved
    calls.clear()
    before = (out / "metrics" / "prune_at_init" / "random.json").read_bytes()
    with pytest.raises(LthError, match=r"random.json holds results made with other settings \(settings.seed: 0 "
                                       r"there, 1 now\): give another --out, or --force"):
        run_methods(tiny_settings(seed=1), splits, ["random"], [0.5], ["shuffle"], 5, out)
    assert calls == [] and (out / "metrics" / "prune_at_init" / "random.json").read_bytes() == before  # refused
    run_methods(tiny_settings(seed=1), splits, ["random"], [0.5], ["shuffle"], 5, out, force=True)
    assert calls == [("random", 0.5)]  # --force: recomputed, not reused


def test_cli_prune_at_init_end_to_end_and_bad_input(monkeypatch, capsys, tmp_path):
    import lth.datasets as datasets

    monkeypatch.setattr(datasets, "load_dataset", lambda name, root, *args, **kw: tiny_splits())
    out = tmp_path / "pai"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "prune-at-init", "lenet-300-100", "mnist-5k",
                                   str(tmp_path), "--method", "snip", "--method", "random", "--remaining", "20%",
                                   "--control", "invert", "--iterations", "6", "--out", str(out), "-q")
    assert code == 0, stderr
    assert "Pruning at init" in stdout and "invert" in stdout
    for method in ("snip", "random"):
        payload = json.loads((out / "metrics" / "prune_at_init" / f"{method}.json").read_text())
        assert [n["arm"] for n in payload["results"][0]["networks"]] == ["ticket", "invert"]
        assert payload["results"][0]["weights_remaining"] == pytest.approx(0.2, abs=1e-5)

    base = ["prune-at-init", "lenet-300-100", "mnist-5k", str(tmp_path), "--iterations", "6",
            "--out", str(tmp_path / "bad")]
    for extra, message in ((["--remaining", "0%"], "bad --remaining '0%'"),
                           (["--remaining", "150%"], "bad --remaining '150%'"),
                           (["--remaining", "abc"], "bad --remaining 'abc'"),
                           (["--method", "snap"], "unknown pruning-at-init method 'snap'"),
                           (["--control", "flip"], "unknown pruning-at-init control 'flip'")):
        code, stdout, stderr = run_cli(monkeypatch, capsys, *base, *extra)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (extra, stderr)
        assert "Traceback" not in stderr
    assert not (tmp_path / "bad").exists()

    # the report: pruning at init beside an IMP run, on one figure and in a matched-sparsity table
    from test_report import fake_run

    imp = fake_run(tmp_path / "imp", rounds=12, trials=1)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "report", str(imp.root), str(out),
                                   "--out", str(tmp_path / "report"))
    assert code == 0, stderr
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"prune_at_init.png", "prune_at_init.csv", "matched_sparsity.csv", "by_sparsity.png"} <= written
    matched = pd.read_csv(tmp_path / "report" / "matched_sparsity.csv")
    assert set(matched["method"]) == {"snip", "random"}
    row = matched.iloc[0]
    assert abs(row["imp_weights_remaining"] - 0.2) < 0.05 and "invert_early_stop_test_acc" in matched.columns
    # (IMP's round nearest 20% of the weights)
    assert "Pruning at initialization" in (tmp_path / "report" / "report.md").read_text()


def test_dvc_stage_is_declared_for_each_method_and_reads_its_group(tmp_path):
    import yaml

    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    stage = dvc["stages"]["prune_at_init"]
    assert stage["foreach"] == "${prune_at_init.methods}"
    assert set(params["prune_at_init"]["methods"]) == set(METHODS)
    assert "data/code/stages.prune_at_init.txt" in stage["do"]["deps"]
    declared = {p if isinstance(p, str) else next(iter(p)) for p in stage["do"]["params"]}
    assert {"prune_at_init.remaining", "prune_at_init.controls", "prune_at_init.synflow_rounds", "train"} <= declared
    assert "metrics/prune_at_init" in dvc["stages"]["report"]["deps"]  # the report shows them: it reruns
