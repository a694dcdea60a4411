"""Structured pruning (whole neurons / channels) and compaction into a smaller network (issue 8)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import run_cli, tiny_splits
from lth.compact.export import export_bytes, load_exported
from lth.compact.measure import compare_outputs, count_macs, count_params
from lth.compact.runner import compact_rounds
from lth.compact.surgery import OffsetConv, compact_network, masked_network
from lth.compact.units import plan_units
from lth.pruning.criteria import score_layers
from lth.core.errors import LthError
from lth.core.masks import ones_mask
from lth.models import MODELS, build_model
from lth.pruning.prune import next_mask
from lth.pruning.ranking import kept_after
from lth.steps.rounds import run_rounds
from lth.steps.mask import next_mask as mask_round
from lth.runs.settings import RunSettings, defaults_for, replace
from lth.pruning.structured import alive_units, structured_next_mask, unit_layers

RATES = {"conv": 0.3, "fc": 0.3, "output": 0.1}
SHAPES = {"lenet-300-100": (1, 28, 28), "conv-4": (3, 32, 32), "resnet-20": (3, 32, 32)}


def _randomised(name: str, seed: int = 0) -> torch.nn.Module:
    """A model with nonzero biases and non-trivial BatchNorm statistics, so dead units have constant outputs."""
    model = build_model(name, SHAPES[name], 10, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=g))
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=g))
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=g) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g))
    return model.eval()


def _prune(name: str, model: torch.nn.Module, rounds: int, structured: bool, rates=RATES) -> dict:
    kinds = model.prunable_layers()
    mask = ones_mask(model, kinds)
    state = model.state_dict()
    for r in range(1, rounds + 1):
        scores = score_layers("large_final", state, state, list(kinds), r)
        if structured:
            mask = structured_next_mask(scores, mask, kinds, rates, "layerwise", r, 0, unit_layers(model, kinds))
        else:
            mask = next_mask(scores, mask, kinds, rates, "layerwise", r, 0)
    return mask


# --- unit masks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_has_a_unit_structure(name):
    """The chains are traced (lth.models.topology), ResNet names its own units: each unit layer feeds its
    consumers, and the output layer's units (the classes) are never units."""
    model = build_model(name, SHAPES.get(name, (3, 32, 32) if "conv" in name or name in ("vgg-19",) else (1, 28, 28)),
                        10, 0)
    kinds = model.prunable_layers()
    layers = unit_layers(model, kinds)
    assert layers and all(kinds[layer.weight] != "output" for layer in layers)
    assert all(consumer in kinds for layer in layers for consumer in layer.consumers)


@pytest.mark.parametrize("name", ["lenet-300-100", "conv-4"])
def test_unit_masks_keep_the_requested_units_per_layer_and_cut_their_columns(name):
    model = build_model(name, SHAPES[name], 10, 0)
    kinds = model.prunable_layers()
    for rounds in (1, 3) if name == "lenet-300-100" else (2,):
        mask = _prune(name, model, rounds, structured=True)
        for layer in unit_layers(model, kinds):
            m = mask[layer.weight]
            alive = alive_units(m)
            assert int(alive.sum()) == kept_after(m.shape[0], RATES[kinds[layer.weight]], rounds)
            # whole rows: a kept unit keeps every weight from kept inputs, a pruned unit none
            assert not m[~alive].any()
            consumer = mask[layer.consumers[0]]
            span = consumer.shape[1] // m.shape[0]
            columns = consumer.flatten(2).any(2) if consumer.dim() > 2 else consumer
            assert torch.equal(columns.any(0).view(-1, span).any(1), alive)
        out = mask[f"{model.output_layer}.weight"]
        assert alive_units(out).all(), "the classes are never pruned"


def test_resnet_prunes_only_inner_block_channels_so_residual_adds_keep_their_shapes():
    name = "resnet-20"
    model = _randomised(name)
    mask = _prune(name, model, 2, structured=True)
    for weight, m in mask.items():
        if weight.endswith("conv1.weight") and weight.startswith("blocks."):
            assert int(alive_units(m).sum()) == kept_after(m.shape[0], RATES["conv"], 2)
        else:
            assert alive_units(m).all(), weight  # stem, conv2 outputs, shortcuts, classifier keep all units


def test_structured_masks_are_deterministic_and_respect_the_scores():
    name = "lenet-300-100"
    model = build_model(name, SHAPES[name], 10, 0)
    assert all(torch.equal(a, b) for a, b in zip(_prune(name, model, 2, True).values(),
                                                 _prune(name, model, 2, True).values()))
    kinds = model.prunable_layers()
    scores = {k: torch.ones_like(v) for k, v in model.state_dict().items() if k in kinds}
    scores["fc2.weight"][:10] = 5.0  # the ten best neurons of fc2
    mask = structured_next_mask(scores, ones_mask(model, kinds), kinds, {"fc": 0.9, "output": 0.1}, "layerwise", 1,
                                0, unit_layers(model, kinds))
    assert alive_units(mask["fc2.weight"]).nonzero().squeeze(1).tolist() == list(range(10))


def test_unstructured_mask_round_is_the_old_next_mask():
    settings = defaults_for("lenet-300-100", "mnist-5k")
    assert settings.to_dict()["pruning"] == "unstructured"
    assert replace(settings, pruning="structured").fingerprint() != settings.fingerprint()
    model = build_model("lenet-300-100", SHAPES["lenet-300-100"], 10, 0)
    kinds = model.prunable_layers()
    scores = score_layers("large_final", model.state_dict(), model.state_dict(), list(kinds), 3)
    mask = ones_mask(model, kinds)
    ours = mask_round(settings, scores, mask, kinds, 1)
    old = next_mask(scores, mask, kinds, settings.prune.rates, settings.prune.method, 1, settings.seed)
    assert all(torch.equal(ours[k], old[k]) for k in kinds)


# --- dead units and compaction -------------------------------------------------------------------------


def test_dead_units_found_to_a_fixpoint_and_constants_folded():
    name = "lenet-300-100"
    model = _randomised(name)
    kinds = model.prunable_layers()
    mask = ones_mask(model, kinds)
    mask["fc1.weight"][0] = False  # fc1 unit 0: no inputs -> constant relu(bias), still read by fc2: dead-in
    mask["fc2.weight"][:, 1] = False  # fc1 unit 1: nobody reads it: dead-out
    mask["fc2.weight"][5, 2:] = False  # fc2 unit 5 reads only fc1 units 0 and 1, both gone: dead-in (cascade)
    mask["fc3.weight"][:, 7] = False  # fc2 unit 7: dead-out
    masked = masked_network(name, SHAPES[name], 10, model.state_dict(), mask)
    params = dict(masked.named_parameters())
    plans = plan_units(unit_layers(masked, kinds), {k: params[k] for k in kinds})
    assert (~plans["fc1.weight"].keep).nonzero().squeeze(1).tolist() == [0, 1]
    assert plans["fc1.weight"].dead_in.nonzero().squeeze(1).tolist() == [0]
    assert plans["fc1.weight"].dead_out.nonzero().squeeze(1).tolist() == [1]
    assert plans["fc2.weight"].dead_in.nonzero().squeeze(1).tolist() == [5]
    assert plans["fc2.weight"].dead_out.nonzero().squeeze(1).tolist() == [7]
    compact, units = compact_network(masked, SHAPES[name])
    assert (compact.fc1.out_features, compact.fc2.in_features, compact.fc2.out_features, compact.fc3.in_features) \
        == (298, 298, 98, 98)
    assert units["fc2.weight"] == {"units": 100, "kept": 98, "dead_in": 1, "dead_out": 1}
    x = torch.randn(32, *SHAPES[name], generator=torch.Generator().manual_seed(1))
    check = compare_outputs(masked, compact, x)
    assert check["outputs_match"], check
    assert masked.fc1.bias[0] != 0 and check["max_abs_diff"] < 1e-5


def test_a_constant_channel_before_a_padded_conv_becomes_a_per_position_offset():
    name = "conv-4"
    model = _randomised(name)
    with torch.no_grad():
        model.features[0].bias[3] = 0.7  # relu(0.7) everywhere, but the next conv's zero padding sees borders
    kinds = model.prunable_layers()
    mask = ones_mask(model, kinds)
    mask["features.0.weight"][3] = False
    masked = masked_network(name, SHAPES[name], 10, model.state_dict(), mask)
    compact, units = compact_network(masked, SHAPES[name])
    assert units["features.0.weight"]["dead_in"] == 1
    assert isinstance(compact.features[2], OffsetConv) and compact.features[2].conv.in_channels == 63
    x = torch.randn(8, *SHAPES[name], generator=torch.Generator().manual_seed(2))
    assert compare_outputs(masked, compact, x)["outputs_match"]


@pytest.mark.parametrize("name", ["lenet-300-100", "conv-4", "resnet-20"])
@pytest.mark.parametrize("structured", [True, False])
def test_compacted_network_and_its_export_match_the_masked_one(name, structured):
    model = _randomised(name)
    rates = RATES if structured else {"conv": 0.8, "fc": 0.8, "output": 0.3}
    mask = _prune(name, model, 4 if structured else 3, structured, rates)
    masked = masked_network(name, SHAPES[name], 10, model.state_dict(), mask)
    compact, units = compact_network(masked, SHAPES[name])
    x = torch.randn(16, *SHAPES[name], generator=torch.Generator().manual_seed(3))
    check = compare_outputs(masked, compact, x)
    assert check["outputs_match"], check
    assert count_params(compact) < count_params(masked)
    assert count_macs(compact, SHAPES[name]) < count_macs(masked, SHAPES[name])
    if structured:  # every pruned unit is gone, nothing else
        for layer in unit_layers(masked, masked.prunable_layers()):
            assert units[layer.weight]["kept"] == int(alive_units(mask[layer.weight]).sum())
        assert count_params(compact) <= count_params(masked, nonzero=True)
    if structured and name == "conv-4":  # (the end-to-end test exports LeNets; exporting ResNet-20 takes 5 s)
        exported = load_exported(export_bytes(compact, SHAPES[name]))
        with torch.inference_mode():
            assert torch.allclose(exported(x[:3]), compact(x[:3]), atol=1e-6)  # and any batch size


# --- end to end ----------------------------------------------------------------------------------------


def _settings(**changes) -> RunSettings:
    base = defaults_for("lenet-300-100", "mnist-5k")
    base = replace(base, pruning="structured", train__duration="20it", train__eval_every="10it", **changes)
    return base.validate()


def test_structured_run_then_compact_the_whole_run(tmp_path, monkeypatch, capsys):
    splits = tiny_splits(n_train=120, n_eval=40)
    out = tmp_path / "run"
    records = run_rounds(_settings(), 2, out, splits)
    assert [round(r["weights_remaining"], 4) for r in records][0] == 1.0
    final = torch.load(out / "data/rounds/r02/final/trial-0.pt", weights_only=True)["tensors"]
    mask = torch.load(out / "data/rounds/r02/mask/trial-0.pt", weights_only=True)["tensors"]
    assert int(alive_units(mask["fc1.weight"]).sum()) == kept_after(300, 0.2, 2)
    assert not final["fc1.weight"][~mask["fc1.weight"]].any()  # pruned units stayed exactly zero in training

    dense, rows = compact_rounds(out, run_benchmark=True, batch_size=8)
    assert [row["round"] for row in rows] == [0, 1, 2]
    assert rows[0]["params"]["compact"] == dense["params"]
    assert rows[2]["params"]["compact"] < rows[1]["params"]["compact"] < dense["params"]
    assert rows[2]["macs"]["compact"] < dense["macs"] and rows[2]["file_bytes"]["compact"] < dense["file_bytes"]
    assert rows[2]["cpu"]["compact"]["latency_ms"] > 0 and rows[2]["check"]["outputs_match"]
    summary = json.loads((out / "metrics" / "compact.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    program = torch.export.load(str(out / "data/compact/r02/trial-0.pt2")).module()  # plain PyTorch
    masked = masked_network("lenet-300-100", (1, 28, 28), 10, final, mask)
    with torch.inference_mode():
        assert torch.allclose(program(splits.test_x), masked(splits.test_x), rtol=1e-4, atol=1e-5)

    code, stdout, _ = run_cli(monkeypatch, capsys, "compact", str(out), "--round", "1", "--trial", "0")
    assert code == 0 and "Compacted tickets" in stdout
    again = json.loads((out / "metrics" / "compact.json").read_text())["rounds"]
    assert [r["round"] for r in again] == [0, 1, 2]  # one round recompacted: the others' rows are kept
    assert again[0] == summary["rounds"][0] and "cpu" not in again[1] and "cpu" in again[2]


# --- bad input -----------------------------------------------------------------------------------------


def test_bad_structured_settings_are_clear_errors():
    with pytest.raises(LthError, match="unknown pruning 'structural'.*did you mean 'structured'"):
        replace(defaults_for("lenet-300-100"), pruning="structural").validate()
    with pytest.raises(LthError, match="structured pruning ranks units within each layer.*'global'"):
        replace(defaults_for("resnet-20"), pruning="structured").validate()


@pytest.mark.parametrize(
    "args, message",
    [
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--pruning", "structurd"], "did you mean 'structured'"),
        (["compact", "no/such/run"], "no/such/run is neither a find-ticket run directory"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, message, monkeypatch, capsys):
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_compact_refuses_runs_whose_pruned_weights_are_not_zero(tmp_path):
    (tmp_path / "not-a-run" / "trial-0").mkdir(parents=True)
    with pytest.raises(LthError, match="no settings.json"):
        compact_rounds(tmp_path / "not-a-run")
    out = tmp_path / "frozen"
    settings = dataclasses.replace(_settings(), pruning="unstructured", mask0_action="freeze_init")
    run_rounds(settings, 1, out, tiny_splits(n_train=60, n_eval=20))
    with pytest.raises(LthError, match="mask-0 action 'freeze_init'.*compaction needs mask-0 'zero'"):
        compact_rounds(out)


def test_pruning_is_a_param_the_mask_stage_reads():
    import yaml

    from lth.runs.params import load_params

    repo = __import__("pathlib").Path(__file__).resolve().parents[1]
    assert "pruning" in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]["mask"]["do"]["params"]
    assert load_params(repo / "params.yaml").settings.pruning == "unstructured"
