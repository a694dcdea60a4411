"""The CUDA path: whole-step CUDA graphs give the same training as the eager loop (needs a GPU)."""

from __future__ import annotations

import pytest
import torch

from conftest import random_mask, tiny_splits
from lth.training.batched import train_batched
from lth.models import build_model
from lth.runs.settings import TrainSettings
from lth.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; CPU runs use the eager loop")


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "radam"])
def test_cuda_graph_step_equals_eager(monkeypatch, optimizer):
    splits = tiny_splits().to("cuda")
    settings = TrainSettings(optimizer=optimizer, lr=0.01, momentum=0.9 if optimizer == "sgd" else 0.0,
                             batch_size=20, duration="30it", eval_every="10it", warmup="5it", milestones=("20it",))
    results = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("LTH_CUDA_GRAPHS", graphs)
        model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
        mask = random_mask(model)
        model.to("cuda")
        results[graphs] = train(model, {k: v.cuda() for k, v in mask.items()}, splits, settings, seed=0)
        for name, m in mask.items():
            assert (results[graphs].state[name][~m] == 0).all()
    for name, tensor in results["0"].state.items():
        assert torch.allclose(results["1"].state[name], tensor, atol=1e-5), name
    assert [p["test_acc"] for p in results["1"].curve] == pytest.approx([p["test_acc"] for p in results["0"].curve])


def test_cuda_graph_batched_with_batchnorm_and_augmentation(monkeypatch):
    splits = tiny_splits(n_train=40, n_eval=10, shape=(3, 32, 32), augment=True).to("cuda")
    model = build_model("resnet-20", (3, 32, 32), 10, seed=0)
    starts = [build_model("resnet-20", (3, 32, 32), 10, seed=s).state_dict() for s in (0, 1)]
    masks = [random_mask(model), random_mask(model, 0.3)]
    settings = TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=10, duration="8it", eval_every="4it")
    out = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("LTH_CUDA_GRAPHS", graphs)
        out[graphs] = train_batched(model, starts, masks, splits, settings, [0, 1])
    for a, b in zip(out["1"], out["0"]):
        for name in a.state:
            assert torch.allclose(a.state[name].float(), b.state[name].float(), atol=1e-4), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cuda_graph_conv_net_channels_last_equals_eager(monkeypatch, precision):
    """One conv net on CUDA trains in channels-last layout inside the graph, in fp32 or under bf16 autocast."""
    from torch import nn

    from lth.training import loop as trainer

    splits = tiny_splits(n_train=40, n_eval=10, shape=(3, 32, 32)).to("cuda")
    settings = TrainSettings(optimizer="adam", lr=1e-3, batch_size=10, duration="12it", eval_every="4it",
                             precision=precision)
    out = {}
    for graphs in ("1", "0"):
        monkeypatch.setenv("LTH_CUDA_GRAPHS", graphs)
        model = build_model("conv-2", (3, 32, 32), 10, seed=0).to("cuda")
        mask = {k: v.cuda() for k, v in random_mask(model).items()}
        out[graphs] = train(model, mask, splits, settings, seed=0)
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        for name, m in mask.items():
            assert (out[graphs].state[name][~m.cpu()] == 0).all()
    assert trainer.channels_last_wanted(trainer.SingleNetwork(model), torch.device("cuda"))
    tolerance = dict(rtol=1e-3, atol=1e-4) if precision == "fp32" else dict(rtol=0.05, atol=2e-2)
    for name, tensor in out["0"].state.items():
        torch.testing.assert_close(out["1"].state[name], tensor, **tolerance, msg=name)
