"""Trials and control arms trained together: each network's result equals training it alone."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from conftest import RunFiles, random_mask, tiny_splits
from lth.core import files
from lth.training.batched import train_batched
from lth.core.errors import LthError
from lth.models import build_model
from lth.runs.records import TICKET
from lth.steps.rounds import run_rounds
from lth.runs.settings import TrainSettings, defaults_for, replace
from lth.training.loop import train


@pytest.mark.parametrize(
    "model_name,shape,settings,dtype",
    [
        # In float64: batched and single matrix products round differently by CPU (MKL picks kernels per
        # CPU); over 2 epochs of Adam that float32 noise exceeded the tolerance on an Intel Xeon (AVX-512).
        ("lenet-300-100", (1, 28, 28), TrainSettings(batch_size=20, duration="2ep", eval_every="5it"), torch.float64),
        ("lenet-300-100", (1, 28, 28), TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3,
                                                      batch_size=20, duration="12it", eval_every="4it",
                                                      warmup="3it", milestones=("8it",)), torch.float32),
        # In float64. Batched (grouped) and single convolutions round differently; in float32 that 1e-7
        # noise flipped a ReLU input near zero at step 4 on an AMD EPYC CPU (not on an Intel one), and
        # one channel of the first conv then differed by 8e-4. In float64 the runs agree to 1e-15.
        ("resnet-20", (3, 16, 16), TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=8,
                                                  duration="4it", eval_every="2it"), torch.float64),
    ],
    ids=["lenet-adam-fp64", "lenet-sgd-schedule", "resnet-batchnorm-augment-fp64"],
)
def test_batched_networks_equal_separate_runs(model_name, shape, settings, dtype):
    splits = tiny_splits(n_train=120 if shape[0] == 1 else 24, n_eval=20, shape=shape, augment=shape[0] == 3)
    splits = dataclasses.replace(splits, train_x=splits.train_x.to(dtype), val_x=splits.val_x.to(dtype),
                                 test_x=splits.test_x.to(dtype))
    models = [build_model(model_name, shape, 10, seed=s).to(dtype) for s in (0, 1, 2)]
    starts = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    masks = [random_mask(models[0], keep, seed) for keep, seed in ((1.0, 0), (0.5, 1), (0.2, 2))]
    seeds = [0, 7, 7]
    batched = train_batched(models[0], starts, masks, splits, settings, seeds)
    for i in range(3):
        alone_model = build_model(model_name, shape, 10, seed=0).to(dtype)
        alone_model.load_state_dict(starts[i])
        alone = train(alone_model, masks[i], splits, settings, seeds[i])
        atol, rtol = (2e-5, 1e-4) if dtype == torch.float32 else (1e-12, 1e-10)
        for name, tensor in alone.state.items():
            assert batched[i].state[name].dtype == tensor.dtype, name
            assert torch.allclose(batched[i].state[name].double(), tensor.double(), atol=atol, rtol=rtol), (i, name)
        for ours, theirs in zip(batched[i].curve, alone.curve):
            assert ours["iteration"] == theirs["iteration"]
            assert ours["test_acc"] == pytest.approx(theirs["test_acc"], abs=1e-6)
            assert ours["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4, abs=1e-5)
        for name, m in masks[i].items():
            assert (batched[i].state[name][~m] == 0).all(), f"network {i}: pruned weight {name} revived"


def test_batched_needs_matching_inputs():
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    with pytest.raises(LthError, match="one start state, one mask and one seed per network"):
        train_batched(model, [model.state_dict()], [], tiny_splits(), TrainSettings(), [0])


def small(**changes):
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="6it",
                   train__eval_every="3it")
    return replace(base, **changes)


def test_trials_and_controls_in_the_runner(tmp_path):
    splits = tiny_splits()
    settings = small(trials=2, controls=("reinit", "random-prune"))
    records = run_rounds(settings, 2, tmp_path / "with", splits)
    layout = RunFiles(tmp_path / "with")
    assert [len(r["networks"]) for r in records] == [2, 6, 6]
    arms = [(n["trial"], n["arm"]) for n in records[1]["networks"]]
    assert arms == [(0, TICKET), (0, "reinit"), (0, "random-prune"), (1, TICKET), (1, "reinit"), (1, "random-prune")]
    load = lambda p, kind="weights": files.load_tensors(p, kind)  # noqa: E731
    # each trial has its own θ0 and its own masks
    assert not torch.equal(load(layout.init(0))["fc1.weight"], load(layout.init(1))["fc1.weight"])
    assert not torch.equal(load(layout.mask(0, 1), "mask")["fc1.weight"], load(layout.mask(1, 1), "mask")["fc1.weight"])
    # controls have the ticket's per-layer sparsity
    for r in (1, 2):
        ticket, reinit, rand = (n for n in records[r]["networks"][:3])
        for name, layer in ticket["layers"].items():
            assert reinit["layers"][name]["kept"] == rand["layers"][name]["kept"] == layer["kept"]
            assert rand["layers"][name]["nonzero_remaining"] == pytest.approx(layer["remaining"], abs=1e-3)
    # controls never feed the next mask: tickets' masks equal those of the same run without controls
    run_rounds(small(trials=2), 2, tmp_path / "without", splits)
    other = RunFiles(tmp_path / "without")
    for t in (0, 1):
        a, b = load(layout.mask(t, 1), "mask"), load(other.mask(t, 1), "mask")
        assert all(torch.equal(a[k], b[k]) for k in a)
    # summary: one row per network
    rows = pd.read_csv(layout.layout.networks_table)
    assert len(rows) == 2 + 6 + 6 and set(rows["arm"]) == {TICKET, "reinit", "random-prune"}


def test_control_construction():
    from lth.pruning.controls import CONTROLS, ControlInputs

    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    mask = random_mask(model, 0.3, 0)
    from lth.pruning.actions import rewind_state

    inputs = ControlInputs("lenet-300-100", (1, 28, 28), 10, 0, 2, mask,
                           lambda other: rewind_state(init, init, init, other))
    start, same_mask = CONTROLS["reinit"].make(inputs)
    assert all(torch.equal(same_mask[k], mask[k]) for k in mask)
    assert not torch.equal(start["fc1.weight"][mask["fc1.weight"]], init["fc1.weight"][mask["fc1.weight"]])
    assert (start["fc1.weight"][~mask["fc1.weight"]] == 0).all()
    start, rand_mask = CONTROLS["random-prune"].make(inputs)
    for k in mask:
        assert int(rand_mask[k].sum()) == int(mask[k].sum()) and not torch.equal(rand_mask[k], mask[k])
        assert torch.equal(start[k][rand_mask[k]], init[k][rand_mask[k]]) and (start[k][~rand_mask[k]] == 0).all()
    again, again_mask = CONTROLS["random-prune"].make(inputs)
    assert all(torch.equal(again_mask[k], rand_mask[k]) for k in mask), "controls must be seeded"


def test_bad_trials_and_controls_are_refused():
    with pytest.raises(LthError, match="bad trials 0"):
        small(trials=0).validate()
    with pytest.raises(LthError, match="unknown control 'reinitialise'.*random-prune, reinit"):
        small(controls=("reinitialise",)).validate()


@pytest.mark.parametrize("bias", [True, False])
def test_input_major_linear_equals_linear_alone_and_when_stacked(bias):
    """The stacked template's Linear is the same function as nn.Linear (2-D, 3-D and 1-D inputs), and stacked
    (vmap) each network gets the weight and bias gradients nn.Linear gives it alone."""
    from lth.training.batched import InputMajorLinear, StackedNetworks

    torch.manual_seed(0)
    plain = torch.nn.Linear(7, 5, bias=bias)
    stored = torch.nn.Linear(7, 5, bias=bias)
    stored.__class__ = InputMajorLinear
    stored.weight = torch.nn.Parameter(plain.weight.detach().mT.clone())  # (in, out)
    if bias:
        stored.bias = torch.nn.Parameter(plain.bias.detach().clone())
    for shape in ((4, 7), (3, 4, 7), (7,)):
        x = torch.randn(shape)
        assert torch.allclose(stored(x), plain(x), atol=1e-6), shape

    # stacked networks: states go in and out in the standard layout, gradients come out per network
    states = [torch.nn.Linear(7, 5, bias=bias).state_dict() for _ in range(3)]
    nets = StackedNetworks(torch.nn.Linear(7, 5, bias=bias), states, torch.device("cpu"))
    assert nets.params["weight"].shape == (3, 7, 5) and nets.params["weight"].is_contiguous()
    x = torch.randn(3, 4, 7)
    nets(x).square().sum().backward()
    grad = nets.params["weight"].grad
    assert grad.shape == (3, 7, 5) and grad.is_contiguous(), "the weight gradient comes out in the stored layout"
    for i in range(3):
        assert all(torch.equal(nets.state(i)[k], states[i][k]) for k in states[i])
        alone = torch.nn.Linear(7, 5, bias=bias)
        alone.load_state_dict(states[i])
        alone(x[i]).square().sum().backward()
        assert torch.allclose(grad[i].mT, alone.weight.grad, atol=1e-5)
        if bias:
            assert torch.allclose(nets.params["bias"].grad[i], alone.bias.grad, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hand_written_mlp_backward_equals_autograd_bit_for_bit(dtype):
    """StackedMLP.losses_and_grads gives exactly the losses and gradients autograd gives for `__call__` +
    cross-entropy, and overwrites the gradients (a second call does not accumulate)."""
    import torch.nn.functional as F

    from lth.tasks import get_task
    from lth.training.batched import StackedMLP

    g = torch.Generator().manual_seed(0)
    models = [build_model("lenet-300-100", (1, 28, 28), 10, seed=s).to(dtype) for s in (0, 1, 2)]
    x = torch.randn(3, 20, 1, 28, 28, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (3, 20), generator=g)
    hand = StackedMLP(models[0], [m.state_dict() for m in models], torch.device("cpu"))
    auto = StackedMLP(models[0], [m.state_dict() for m in models], torch.device("cpu"))

    task = get_task("classification")
    hand.losses_and_grads(x, y, task)
    losses = hand.losses_and_grads(x, y, task)
    expected = F.cross_entropy(auto(x).flatten(0, 1), y.flatten(), reduction="none").view(3, 20).mean(1)
    expected.sum().backward()

    assert torch.equal(losses, expected.detach())
    for name, param in hand.params.items():
        assert param.grad.dtype == dtype and param.grad.shape == param.shape, name
        assert torch.equal(param.grad, auto.params[name].grad), name


def test_stacked_mlp_training_keeps_pruned_weights_and_their_moments_zero(monkeypatch):
    """The batched MLP step (hand-written backward, fp32) leaves every pruned weight at exactly zero after
    every optimizer step and the Adam moments of pruned weights at zero; a network's layer with nothing
    pruned is not multiplied at all, and bf16 autocast takes the autograd path."""
    import lth.training.batched as B
    import lth.training.loop as T
    from lth.training.loop import TrainingLoop

    splits = tiny_splits()
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    starts = [build_model("lenet-300-100", (1, 28, 28), 10, seed=s).state_dict() for s in (0, 1)]
    masks = [random_mask(model, 0.3, 0), random_mask(model, 0.6, 1)]
    masks[0]["fc3.weight"] = masks[1]["fc3.weight"] = torch.ones_like(masks[0]["fc3.weight"])  # fc3 not pruned
    captured, checks, calls = {}, [], []

    def spy(params, settings, *rest):
        optimizer = captured["opt"] = real(params, settings, *rest)
        captured["params"] = params
        optimizer.register_step_post_hook(lambda *_: checks.append(all(
            bool((params[0][i].mT[~m["fc1.weight"]] == 0).all()) and bool((params[2][i].mT[~m["fc2.weight"]] == 0).all())
            for i, m in enumerate(masks))))
        return optimizer

    real = T.make_optimizer
    monkeypatch.setattr(T, "make_optimizer", spy)
    hand_written = B.StackedMLP.losses_and_grads
    monkeypatch.setattr(B.StackedMLP, "losses_and_grads",
                        lambda self, x, y, task: calls.append(1) or hand_written(self, x, y, task))
    results = train_batched(model, starts, masks, splits, TrainSettings(lr=1e-2, batch_size=20, duration="12it"), [0, 1])

    assert len(calls) == 12 and len(checks) == 12 and all(checks), "a pruned weight was nonzero after some step"
    for i, m in enumerate(masks):
        for name, keep in m.items():
            assert (results[i].state[name][~keep] == 0).all(), (i, name)
            assert not torch.equal(results[i].state[name][keep], starts[i][name][keep]), f"{name} did not train"
    state = captured["opt"].state
    fc1 = captured["params"][0]  # stacked (N, in, out)
    for i, m in enumerate(masks):
        assert (state[fc1]["exp_avg"][i].mT[~m["fc1.weight"]] == 0).all()
        assert (state[fc1]["exp_avg_sq"][i].mT[~m["fc1.weight"]] == 0).all()

    nets = B.StackedMLP(model, starts, torch.device("cpu"))
    loop = TrainingLoop(nets, masks, splits, TrainSettings(batch_size=20, duration="1it"), [0, 1])
    assert loop.hand_written and len(loop.weights) == 2, "only fc1 and fc2 have pruned weights"
    bf16 = TrainingLoop(nets, masks, splits, TrainSettings(batch_size=20, duration="1it", precision="bf16"), [0, 1])
    assert not bf16.hand_written
