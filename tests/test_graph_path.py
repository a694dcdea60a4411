"""The CUDA-graph path's logic, checked on the CPU.

On a GPU the training step is recorded once as a CUDA graph and replayed. Everything around the
recording runs on any device: the capturable optimizer with its learning rate as a device tensor that
the schedule updates in place, the reset of weights and optimizer state after the warm-up steps, and
the in-place restore of a checkpoint into the tensors the graph reads. Here `record_cuda_graph` is
replaced by a stand-in that runs the same warm-up steps and returns the eager step, so a round on the
graph path must give the eager loop's result. Only the recording itself needs a GPU (tests/test_cuda.py).
"""

from __future__ import annotations

import signal

import pytest
import torch

from conftest import random_mask, tiny_splits
from lth.training import loop as trainer
from lth.training.batched import train_batched
from lth.core.interrupt import Interrupted, graceful_stop
from lth.models import build_model
from lth.steps.rounds import run_rounds
from lth.runs.settings import TrainSettings, defaults_for, replace
from test_reliability import SignalAt, same_results


@pytest.fixture
def graph_path(monkeypatch):
    """Turn the graph path on for CPU tensors, recording nothing: the 'replay' is the eager step."""
    warm_ups = []

    def stand_in(step, warm_up=3):
        for _ in range(warm_up):
            step()
        warm_ups.append(warm_up)
        return step

    monkeypatch.setattr(trainer, "cuda_graphs_enabled", lambda device: True)
    monkeypatch.setattr(trainer, "record_cuda_graph", stand_in)
    return warm_ups


SCHEDULED = dict(batch_size=20, duration="24it", eval_every="6it", warmup="5it", milestones=("15it",))


@pytest.mark.parametrize("settings", [
    TrainSettings(optimizer="adam", lr=0.01, **SCHEDULED),
    TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-3, **SCHEDULED),
    TrainSettings(optimizer="adam", lr=0.01, precision="bf16", **SCHEDULED),  # autocast without its cast cache
], ids=["adam", "sgd-momentum", "adam-bf16"])
def test_graph_path_equals_eager_loop(graph_path, monkeypatch, settings):
    splits = tiny_splits()
    exact = settings.precision == "bf16"
    out = {}
    for mode in ("graph", "eager"):
        if mode == "eager":
            monkeypatch.setattr(trainer, "cuda_graphs_enabled", lambda device: False)
            if exact:
                # capturable and plain Adam differ in the last bit, which bf16 rounding amplifies: give the
                # eager loop the graph path's optimizer, so only the warm-up and its reset differ (bit-exact)
                real = trainer.make_optimizer
                monkeypatch.setattr(trainer, "make_optimizer", lambda p, s, graph=False: real(p, s, True))
        model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
        mask = random_mask(model, 0.4)
        out[mode] = trainer.train(model, mask, splits, settings, seed=3)
        for name, keep in mask.items():
            assert torch.count_nonzero(out[mode].state[name][~keep]) == 0, f"{mode}: pruned weights of {name} moved"
    assert graph_path == [3], "the graph path ran its warm-up exactly once"
    graph, eager = out["graph"], out["eager"]
    for name, tensor in eager.state.items():
        # the warm-up steps changed weights and moments; after the reset the two runs must agree
        tolerance = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(graph.state[name], tensor, **tolerance, msg=name)
    assert [p["iteration"] for p in graph.curve] == [0, 6, 12, 18, 24]
    for a, b in zip(graph.curve, eager.curve):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, nan_ok=True)


def test_graph_path_schedule_moves_the_device_learning_rate(graph_path, monkeypatch):
    """The graph reads the learning rate from one tensor: warm-up and milestones must change it in place."""
    settings = TrainSettings(optimizer="adam", lr=0.01, batch_size=20, duration="12it", eval_every="1it",
                             warmup="4it", milestones=("8it",), gamma=0.1)
    groups = []
    real = trainer.make_optimizer

    def watched(params, s, graph=False):
        optimizer = real(params, s, graph)
        groups.append(optimizer.param_groups[0])
        return optimizer

    monkeypatch.setattr(trainer, "make_optimizer", watched)
    lr_tensors, lrs = [], []

    def progress(iteration, total, point):
        lr_tensors.append(groups[0]["lr"])
        lrs.append(float(groups[0]["lr"]))

    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    trainer.train(model, random_mask(model, 0.5), tiny_splits(), settings, seed=0, progress=progress)
    assert isinstance(lr_tensors[0], torch.Tensor) and all(t is lr_tensors[0] for t in lr_tensors), \
        "the schedule must fill the one lr tensor the graph reads, never replace it"
    # lrs[i] is the rate after i steps: linear warm-up over 4 steps, then x0.1 from step 8 on
    assert lrs == pytest.approx([0.0025, 0.005, 0.0075] + [0.01] * 5 + [0.001] * 5)


def test_graph_path_batched_networks_with_batchnorm_equal_eager(graph_path, monkeypatch):
    """Buffers (BatchNorm running statistics) are put back after the warm-up too."""
    splits = tiny_splits(n_train=24, n_eval=8, shape=(3, 16, 16), augment=True)
    template = build_model("resnet-20", (3, 16, 16), 10, seed=0)
    starts = [build_model("resnet-20", (3, 16, 16), 10, seed=s).state_dict() for s in (0, 1)]
    masks = [random_mask(template, 0.5), random_mask(template, 0.3, seed=1)]
    settings = TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=8, duration="6it", eval_every="3it")
    graph = train_batched(template, starts, masks, splits, settings, [0, 1])
    monkeypatch.setattr(trainer, "cuda_graphs_enabled", lambda device: False)
    eager = train_batched(template, starts, masks, splits, settings, [0, 1])
    for a, b in zip(graph, eager):
        for name in b.state:
            torch.testing.assert_close(a.state[name].float(), b.state[name].float(), rtol=1e-4, atol=1e-5, msg=name)


def test_graph_path_resume_restores_in_place_and_matches_an_uninterrupted_run(graph_path, tmp_path):
    """A checkpoint is copied into the optimizer tensors the graph replays (restore(in_place=True))."""
    settings = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="12it",
                       train__eval_every="5it", trials=2, controls=("reinit",))
    splits = tiny_splits()
    run_rounds(settings, 1, tmp_path / "straight", splits)
    with graceful_stop(), pytest.raises(Interrupted, match="training state saved"):
        run_rounds(settings, 1, tmp_path / "resumed", splits, SignalAt(1, 6, signal.SIGINT), checkpoint_every="4it")
    run_rounds(settings, 1, tmp_path / "resumed", splits, checkpoint_every="4it")
    same_results(tmp_path / "straight", tmp_path / "resumed", 2, settings.trials)
