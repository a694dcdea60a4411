"""Research experiments (lth/experiments) and the relevance criterion, on tiny data.

The DVC side is tested through the stage entry points run in-process on a tiny pipeline workspace
(the same functions `dvc repro` runs, minus a process per stage), plus a check that every exp_* stage of
dvc.yaml names params that params.yaml declares; a real `dvc repro` of the experiment stages would
need the whole upstream pipeline first and is left to CI.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_cli, tiny_splits
from lth.core.errors import LthError
from lth.runs.settings import RunSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]
FAST = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="12it", eval_every="6it")


def tiny_settings(**changes) -> RunSettings:
    return dataclasses.replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=FAST), **changes)


def ticket_of(run, r: int, trial: int = 0):
    from lth.runs.run import open_results

    return open_results(run).ticket(f"r{r:02d}", trial)


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    """Two tiny find-ticket runs (seeds 0 and 1) of LeNet-300-100 on random 28x28 data: r00 and r01."""
    from lth.steps.rounds import run_rounds

    splits = tiny_splits()
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        run_rounds(tiny_settings(seed=seed), 1, root / f"seed{seed}", splits)
    return root, splits


# --- relevance -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lenet-300-100", "lenet-5"])
def test_relevance_is_conserved_layer_by_layer(model):
    """With zero biases (θ0) and eps -> 0, every layer's weight relevance sums to the true-class logits."""
    from lth.models import build_model
    from lth.pruning.relevance import weight_relevance
    from lth.tasks import get_task

    reference_samples = get_task("classification").reference_samples
    splits = tiny_splits()
    net = build_model(model, splits.input_shape, 10, seed=3)
    state = net.state_dict()
    mask = {n: torch.ones_like(state[n], dtype=torch.bool) for n in net.prunable_layers()}
    relevance = weight_relevance(model, state, mask, splits, 7, seed=5, per_class=2, eps=1e-9)
    idx = reference_samples(splits.train_y, 2, 5)
    assert len(idx) == 20 and sorted(splits.train_y[idx].tolist()) == sorted(list(range(10)) * 2)
    with torch.no_grad():
        total = float(net(splits.train_x[idx]).gather(1, splits.train_y[idx][:, None]).sum())
    for name, r in relevance.items():
        assert float(r.double().sum()) == pytest.approx(total, rel=1e-3, abs=1e-3), name


def test_relevance_matches_the_epsilon_rule_by_hand_and_ignores_pruned_weights():
    """A 2-layer net: R_ij = a_i w_ij R_j / (z_j + eps sign z_j), computed explicitly."""
    from lth.models import build_model
    from lth.pruning.relevance import weight_relevance
    from lth.tasks import get_task

    reference_samples = get_task("classification").reference_samples
    splits = tiny_splits()
    net = build_model("lenet-300-100", splits.input_shape, 10, seed=1)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for k in ("fc1.bias", "fc2.bias", "fc3.bias"):
        state[k] = torch.randn(state[k].shape, generator=torch.Generator().manual_seed(2)) * 0.1
    mask = {n: torch.rand(state[n].shape, generator=torch.Generator().manual_seed(9)) > 0.3
            for n in ("fc1.weight", "fc2.weight", "fc3.weight")}
    eps = 0.05
    relevance = weight_relevance("lenet-300-100", state, mask, splits, 60, seed=4, per_class=1, eps=eps)

    w = {n: state[n] * mask[n] for n in mask}
    idx = reference_samples(splits.train_y, 1, 4)
    expected = {n: torch.zeros_like(w[n]) for n in w}
    for i in idx.tolist():
        a0 = splits.train_x[i].flatten()
        z1 = w["fc1.weight"] @ a0 + state["fc1.bias"]
        a1 = z1.clamp(min=0)
        z2 = w["fc2.weight"] @ a1 + state["fc2.bias"]
        a2 = z2.clamp(min=0)
        z3 = w["fc3.weight"] @ a2 + state["fc3.bias"]
        stab = lambda z: z + eps * torch.where(z >= 0, 1.0, -1.0)  # noqa: E731
        r3 = torch.zeros_like(z3)
        r3[splits.train_y[i]] = z3[splits.train_y[i]]
        expected["fc3.weight"] += a2[None, :] * w["fc3.weight"] * (r3 / stab(z3))[:, None]
        r2 = a2 * (w["fc3.weight"].T @ (r3 / stab(z3)))
        expected["fc2.weight"] += a1[None, :] * w["fc2.weight"] * (r2 / stab(z2))[:, None]
        r1 = a1 * (w["fc2.weight"].T @ (r2 / stab(z2)))
        expected["fc1.weight"] += a0[None, :] * w["fc1.weight"] * (r1 / stab(z1))[:, None]
    for name in w:
        torch.testing.assert_close(relevance[name], expected[name], rtol=1e-4, atol=1e-5)
        assert bool((relevance[name][~mask[name]] == 0).all()), name


def test_relevance_criterion_is_registered_and_scores_rounds():
    from lth.pruning.criteria import CRITERIA
    from lth.models import build_model
    from lth.pruning.relevance import weight_relevance
    from lth.core.seeds import derive_seed
    from lth.steps.score import score_weights as score_round

    assert "relevance" in CRITERIA and CRITERIA["relevance"].gradient_at == "final"
    splits = tiny_splits()
    settings = tiny_settings(criterion="relevance").validate()
    net = build_model("lenet-300-100", splits.input_shape, 10, seed=0)
    state = net.state_dict()
    mask = {n: torch.ones_like(state[n], dtype=torch.bool) for n in net.prunable_layers()}
    scores = score_round(settings, state, state, mask, 2, state, splits)
    direct = weight_relevance("lenet-300-100", state, mask, splits, FAST.batch_size,
                              derive_seed(settings.seed, "gradients", 2))
    assert all(torch.equal(scores[n], direct[n].float()) for n in mask)
    with pytest.raises(LthError, match="needs the training data"):
        score_round(settings, state, state, mask, 2)


# --- transfer --------------------------------------------------------------------------------------------


def test_transfer_reinitialises_a_different_output_layer_and_keeps_pruned_weights_zero():
    from lth.experiments.common import Ticket
    from lth.experiments.transfer import check_compatible, transfer
    from lth.models import build_model

    source = build_model("lenet-300-100", (3, 32, 32), 10, 0).state_dict()  # a CIFAR-10 ticket, half pruned
    mask = {n: torch.rand(source[n].shape, generator=torch.Generator().manual_seed(1)) > 0.5
            for n in ("fc1.weight", "fc2.weight", "fc3.weight")}
    start = {k: v * mask[k] if k in mask else v for k, v in source.items()}
    ticket = Ticket(tiny_settings(dataset="cifar-10"), 3, source, start, mask, start)
    with pytest.raises(LthError, match=r"from 'cifar-10' \(3x32x32 inputs\) to 'mnist-5k' \(1x28x28 inputs\)"):
        check_compatible(ticket, "mnist-5k")
    target = tiny_splits(shape=(3, 32, 32), classes=100)
    results = transfer(ticket, "cifar-100", target, optimizer="sgd", lr=0.01, momentum=0.9, duration="8it")
    assert list(results) == ["ticket", "reinit", "dense"]
    assert results["dense"]["weights_remaining"] == 1.0
    assert results["ticket"]["weights_remaining"] == results["reinit"]["weights_remaining"] < 1.0
    trained = results["ticket"]["state"]
    assert trained["fc3.weight"].shape == (100, 100) and bool((trained["fc3.weight"] != 0).all())  # new, dense head
    assert bool((trained["fc1.weight"][~mask["fc1.weight"]] == 0).all())  # pruned weights stayed exactly zero
    assert int((results["reinit"]["state"]["fc1.weight"] != 0).sum()) == int(mask["fc1.weight"].sum())
    with pytest.raises(LthError, match="input shapes must match"):  # data of another shape than the ticket's
        transfer(ticket, "mine.npz", tiny_splits(shape=(1, 28, 28), classes=10))


# --- combine ---------------------------------------------------------------------------------------------


def test_combine_union_and_intersection_against_both_parents(found):
    from lth.experiments.combine import combine, combine_masks, overlap

    root, splits = found
    a, b = ticket_of(root / "seed0", 1), ticket_of(root / "seed1", 1)
    union, inter = combine_masks(a.mask, b.mask, "union"), combine_masks(a.mask, b.mask, "intersection")
    for n in a.mask:
        assert torch.equal(union[n], a.mask[n] | b.mask[n]) and torch.equal(inter[n], a.mask[n] & b.mask[n])
    assert 0 < overlap(a.mask, b.mask) < 1 and overlap(a.mask, a.mask) == 1.0
    results = combine(a, b, splits, ("union", "intersection"))
    w = {k: r["weights_remaining"] for k, r in results.items()}
    assert w["union"] > w["parent-a"] == w["parent-b"] > w["intersection"]
    for name in ("union", "intersection"):  # trained from run A's θ0: kept weights start there, pruned stay 0
        state, mask = results[name]["state"], union if name == "union" else inter
        assert bool((state["fc1.weight"][~mask["fc1.weight"]] == 0).all())
    with pytest.raises(LthError, match="unknown combination 'xor'"):
        combine_masks(a.mask, b.mask, "xor")
    b.settings = dataclasses.replace(b.settings, model="lenet-5")
    with pytest.raises(LthError, match="same model and dataset"):
        combine(a, b, splits)


# --- removal ---------------------------------------------------------------------------------------------


def test_shrink_prunes_only_inside_the_available_weights():
    from lth.experiments.removal import shrink

    settings = tiny_settings()
    g = torch.Generator().manual_seed(0)
    available = {"fc1.weight": torch.rand(30, 20, generator=g) > 0.4, "fc3.weight": torch.rand(10, 30, generator=g) > 0.4}
    kinds = {"fc1.weight": "fc", "fc3.weight": "output"}
    scores = {n: torch.rand(m.shape, generator=g) for n, m in available.items()}
    mask = dict(available)
    for r in (1, 2, 3):
        mask = shrink(settings, scores, mask, available, kinds, r)
        for n, m in mask.items():
            rate = settings.prune.rates[kinds[n]]
            assert int(m.sum()) == round(int(available[n].sum()) * (1 - rate) ** r), (n, r)
            assert not bool((m & ~available[n]).any())


def test_removal_finds_disjoint_successive_tickets(found):
    from lth.experiments.removal import metrics, remove_tickets

    root, splits = found
    ticket = ticket_of(root / "seed0", 1)
    lines: list[str] = []
    out = remove_tickets(ticket, splits, max_tickets=3, margin=0.99, removed="reinit", log=lines.append)
    assert out["removable"] == 3 and [e["ticket"] for e in out["tickets"]] == [1, 2, 3]
    masks = [e["mask"] for e in out["tickets"]]
    for i in range(3):
        for j in range(i):
            assert not any(bool((masks[i][n] & masks[j][n]).any()) for n in masks[i]), (i, j)
    t2 = out["tickets"][1]
    assert t2["complement"]["weights_remaining"] == pytest.approx(1 - out["tickets"][0]["found"]["weights_remaining"],
                                                                  abs=1e-5)
    assert any(line.startswith("ticket-3 round 1") for line in lines)
    flat = metrics(out)
    assert flat["removable"] == 3 and set(flat["t2"]) == {"complement", "found"} and "curve" not in flat["dense"]
    json.dumps(flat)
    strict = remove_tickets(ticket, splits, max_tickets=2, margin=0.0)
    assert strict["removable"] == sum(e["matching"] for e in strict["tickets"])
    with pytest.raises(LthError, match="unknown removed-weights value 'drop'"):
        remove_tickets(ticket, splits, removed="drop")


# --- perturbation ----------------------------------------------------------------------------------------


def test_perturbed_forward_adds_noise_only_to_masked_weights_and_never_keeps_it():
    from lth.experiments.perturb import PerturbSettings, PerturbedNetwork
    from lth.models import build_model

    splits = tiny_splits()
    model = build_model("lenet-300-100", splits.input_shape, 10, 0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    nets = PerturbedNetwork(model, init, settings=PerturbSettings(fraction=0.25), seed=0)
    x = splits.train_x[:5][None]
    clean = model(x[0])
    assert torch.equal(nets(x)[0], clean) and torch.equal(nets(x)[0], clean)  # epoch 1: no mask yet
    nets.remask(1)  # the EveryEpoch hook at the start of epoch 2: a mask from the current weights
    noisy = nets(x)[0]
    assert not torch.allclose(noisy, clean)
    for name, where in nets.perturbed.items():
        kind = model.prunable_layers()[name]
        assert kind != "output" and int(where.sum()) == where.numel() - round(where.numel() * 0.75)
        kept = init[name].abs()[~where]
        assert float(kept.min()) >= float(init[name].abs()[where].max())  # large_final keeps the largest
    assert torch.equal(model.state_dict()["fc1.weight"], init["fc1.weight"])  # the noise is forward-only
    assert "fc3.weight" not in nets.perturbed


def test_perturb_experiment_arms():
    from lth.experiments.perturb import PerturbSettings, perturb_experiment
    from lth.models import build_model
    from lth.training.loop import train

    splits = tiny_splits()
    init = build_model("lenet-300-100", splits.input_shape, 10, 0).state_dict()
    settings = dataclasses.replace(FAST, duration="18it", eval_every="18it")  # 3 epochs: two masks
    results = perturb_experiment("lenet-300-100", init, splits, settings, PerturbSettings(fraction=0.3, noise="laplace"), 0)
    assert list(results) == ["plain", "dropout", "perturbed"]
    model = build_model("lenet-300-100", splits.input_shape, 10, 0)
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    plain = train(model, mask, splits, settings, 0)
    assert results["plain"]["end_test_acc"] == plain.final["test_acc"]  # the plain arm is the core's trainer
    assert results["perturbed"]["end_val_loss"] != results["plain"]["end_val_loss"]
    assert results["dropout"]["end_val_loss"] != results["plain"]["end_val_loss"]
    assert 0 <= results["perturbed"]["repeat_perturbed"] <= 1
    silent = perturb_experiment("lenet-300-100", init, splits, settings, PerturbSettings(scale=0.0), 0)
    assert silent["perturbed"]["end_val_loss"] == results["plain"]["end_val_loss"]  # zero noise: plain training
    with pytest.raises(LthError, match="unknown noise 'pink'"):
        PerturbSettings(noise="pink").validate()


def test_dropout_arm_is_reproducible_whatever_the_global_random_state():
    """The dropout arm draws from its own seeded generator: two runs (two processes) agree exactly."""
    from lth.experiments.perturb import DropoutNetwork, PerturbSettings, perturb_experiment
    from lth.models import build_model

    splits = tiny_splits()
    init = build_model("lenet-300-100", splits.input_shape, 10, 0).state_dict()
    settings = dataclasses.replace(FAST, duration="12it", eval_every="6it")
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)  # as if in another process
        runs.append(perturb_experiment("lenet-300-100", init, splits, settings, PerturbSettings(fraction=0.3), 0))
    assert runs[0]["dropout"] == runs[1]["dropout"]
    model = build_model("lenet-300-100", splits.input_shape, 10, 0)
    nets = DropoutNetwork(model, 0.3, seed=0)
    hidden = []
    model.fc1.register_forward_hook(lambda m, i, out: hidden.append(out))
    model.train()
    nets(splits.train_x[:60].unsqueeze(0))
    dropped = (hidden[0] == 0).float().mean().item()
    assert 0.25 < dropped < 0.35, dropped
    model.eval()
    hidden.clear()
    out = model(splits.train_x[:60])
    assert (hidden[0] != 0).all(), "no dropout at evaluation"
    with pytest.raises(LthError, match="criterion 'snip' needs data"):
        PerturbSettings(criterion="snip").validate()


# --- optimizers ------------------------------------------------------------------------------------------


def test_optimizer_sweep_runs_each_variant_and_tabulates(tmp_path):
    from lth.experiments.optimizers import DEFAULT_VARIANTS, Variant, pick_variants, sweep, tabulate

    base = tiny_settings()
    rewinding = DEFAULT_VARIANTS["adam-rewind"].apply(base)
    assert rewinding.mask1_action == "rewind" and rewinding.rewind == "1ep"
    assert DEFAULT_VARIANTS["radam-no-warmup"].apply(base).train.optimizer == "radam"
    assert DEFAULT_VARIANTS["sgd-warmup"].apply(base).train.lr == 0.05
    variants = {"radam": Variant("radam"), "rewind": Variant("adam", rewind="3it")}
    records = sweep(base, variants, 1, tmp_path, tiny_splits())
    table = tabulate(records)
    assert set(table) == set(variants) and set(table["radam"]) == {"r00", "r01"}
    assert set(table["radam"]["r01"]) == {"weights_remaining", "early_stop_test_acc"}
    assert table["radam"]["r00"] != table["rewind"]["r00"]
    assert (tmp_path / "rewind" / "data" / "init" / "rewind_point" / "trial-0.pt").is_file()
    with pytest.raises(LthError, match="unknown variant 'adamw'"):
        pick_variants(["adamw"])
    with pytest.raises(LthError, match="unknown optimizer 'lion'"):
        sweep(base, {"bad": Variant("lion")}, 1, tmp_path / "bad", tiny_splits())
    assert not (tmp_path / "bad").exists()


# --- CLI -------------------------------------------------------------------------------------------------


def test_cli_experiments_end_to_end_on_mnist_5k(tmp_path, monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "experiment", "--help")
    assert code == 0 and all(name in out for name in ("transfer", "combine", "removal", "optimizers", "perturb"))
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path), "--rounds",
                           "1", "--iterations", "20", "--eval-every", "20it", "--out", str(run), "-q")
    assert code == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "experiment", "transfer", str(run), "mnist-5k", str(tmp_path),
                             "--round", "1", "--optimizer", "sgd", "--lr", "0.01", "--iterations", "20")
    assert code == 0, err
    saved = json.loads((run / "metrics" / "experiments" / "transfer-r01-mnist-5k.json").read_text())
    assert set(saved["results"]) == {"ticket", "reinit", "dense"} and "ticket" in out and "reinit" in out
    code, out, err = run_cli(monkeypatch, capsys, "experiment", "removal", str(run), str(tmp_path), "--round", "1",
                             "--iterations", "20", "--max-tickets", "2", "--margin", "0.5",
                             "--out", str(tmp_path / "removal.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "removal.json").read_text())["removable"] in (1, 2) and "removable" in out

    # bad input: one line, exit code 2, nothing written
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "transfer", str(run), "cifar-10", str(tmp_path),
                           "--round", "1", "--out", str(tmp_path / "never.json"))
    assert code == 2 and "input shapes must match" in err and "Traceback" not in err
    assert not (tmp_path / "never.json").exists()
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "transfer", str(run), "mnist-5k", str(tmp_path),
                           "--round", "4")
    assert code == 2 and "round r04 of" in err and "finished rounds: r00, r01" in err
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "perturb", "lenet-300-100", "mnist-5k", str(tmp_path),
                           "--noise", "pink")
    assert code == 2 and "unknown noise 'pink'" in err


# --- DVC stages ------------------------------------------------------------------------------------------


def test_dvc_experiment_stages_name_declared_params_and_experiments():
    from lth.experiments.registry import EXPERIMENTS

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    names = {k[len("exp_"):] for k in stages if k.startswith("exp_")}
    assert names == set(EXPERIMENTS)
    for name in names:
        stage = stages[f"exp_{name}"]
        assert stage["cmd"] == f"python -m stages.experiment --name {name}"
        assert "data/code/stages.experiment.txt" in stage["deps"]  # its code: tests/test_dvc_deps.py
        for key in stage["params"]:
            node = params
            for part in key.split("."):
                assert part in node, (name, key)
                node = node[part]
        assert list(stage["metrics"][0]) == [f"metrics/experiments/{name}.json"]


@pytest.mark.heavy
def test_experiment_stage_entry_points_on_a_tiny_pipeline_workspace(tmp_path, monkeypatch):
    """The pipeline's own stages (in-process) produce r00..r01, then every exp_* stage entry point runs on them."""
    from stages import experiment, init, prepare, rewind, rewind_point, score
    from stages import mask as mask_stage
    from stages import train as train_stage

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(rounds={"r01": {"prev": "r00"}}, device="cpu", dataset_dir=str(tmp_path / "datasets"),
                  controls=[], trials=1)
    params["train"].update(duration="12it", eval_every="6it")
    exp = params["experiments"]
    exp["transfer"].update(round="r01", duration="12it", eval_every="6it")
    exp["combine"].update(round="r01", criterion_b="relevance")
    exp["removal"].update(round="r01", duration="12it", eval_every="6it", max_tickets=2, margin=0.9)
    exp["optimizers"].update(rounds=1, duration="12it", eval_every="6it",
                             variants={"radam-no-warmup": {"optimizer": "radam"}, "adam-rewind": {"rewind": "6it"}})
    exp["perturb"].update(duration="12it", eval_every="12it")  # per-epoch masks: see test_perturb_experiment_arms
    exp["stability"].update(round="r01", rewinds=["0it", "6it"], points=4, duration="12it", eval_every="6it")
    exp["transfer_domains"].update(rounds=["r01"], targets=["mnist-5k-rotation"], duration="12it", eval_every="6it")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def stage(module, *args: str) -> None:
        monkeypatch.setattr(sys, "argv", [module.__name__, *args])
        module.main()

    stage(prepare)
    stage(init)
    stage(rewind_point)
    stage(train_stage, "--round", "r00")
    for module in (score, mask_stage, rewind, train_stage):
        stage(module, "--round", "r01")
    for name in ("transfer", "transfer_domains", "combine", "removal", "optimizers", "perturb", "stability"):
        stage(experiment, "--name", name)
        assert (tmp_path / "metrics" / "experiments" / f"{name}.json").is_file(), name
    read = lambda name: json.loads((tmp_path / "metrics" / "experiments" / f"{name}.json").read_text())  # noqa: E731
    assert set(read("transfer")) == {"ticket", "reinit", "dense"}
    rotation = read("transfer_domains")["targets"]["mnist-5k-rotation"]
    assert rotation["task"] == "regression" and rotation["new_head"] and rotation["unit"]["name"] == "degrees"
    assert list(rotation["rounds"]) == ["r01"] and len(rotation["rounds"]["r01"]["ticket"]["per_trial"]) == 2
    assert read("transfer")["ticket"]["weights_remaining"] == pytest.approx(
        json.loads((tmp_path / "metrics" / "rounds" / "r01.json").read_text())["weights_remaining"])
    assert {"parent-a", "parent-b", "union", "intersection"} == set(read("combine"))
    assert (tmp_path / "data" / "experiments" / "combine" / "parent-b" / "settings.json").is_file()
    assert read("removal")["removable"] == 2 and set(read("removal")) >= {"dense", "t1", "t2"}
    assert set(read("optimizers")) == {"radam-no-warmup", "adam-rewind"}
    assert set(read("perturb")) == {"plain", "dropout", "perturbed"}
    assert read("stability")["round"] == 1 and [r["rewind"] for r in read("stability")["rewinds"]] == ["0it", "6it"]


def test_a_method_stage_not_listed_in_its_params_group_is_a_clear_error(tmp_path):
    """prune_at_init@METHOD and sparse_train@METHOD read their group the same way (experiments.common.method_group)."""
    from types import SimpleNamespace

    from lth.experiments.common import method_group
    from lth.pruning.at_init import load_settings as at_init_group
    from lth.runs.sparse_train import load_settings as sparse_group

    (tmp_path / "params.yaml").write_text("prune_at_init: {methods: [snip]}\nsparse_train: {methods: [rigl]}\n")
    run = SimpleNamespace(layout=SimpleNamespace(params_file=tmp_path / "params.yaml"))
    assert method_group(run, "prune_at_init", at_init_group, "snip").methods == ("snip",)
    assert method_group(run, "sparse_train", sparse_group, "rigl").methods == ("rigl",)
    for group, load, method, listed in (("prune_at_init", at_init_group, "synflow", "snip"),
                                        ("sparse_train", sparse_group, "set", "rigl")):
        with pytest.raises(LthError, match=re.escape(f"method '{method}' is not under {group}.methods in "
                                                     f"{tmp_path / 'params.yaml'}: {listed}")):
            method_group(run, group, load, method)
