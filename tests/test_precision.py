"""bf16 autocast and the channels-last layout: the speed options of the GPU path, checked on the CPU.

Both change only how the step computes, never what is masked: pruned weights stay exactly zero,
weights and optimizer state stay fp32, and results stay close to the plain fp32 loop.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from conftest import fake_mnist, random_mask, run_cli, tiny_splits
from lth.training import loop as trainer
from lth.training.batched import train_batched
from lth.core.errors import LthError
from lth.models import build_model
from lth.runs.settings import RunSettings, TrainSettings, defaults_for, from_dict, replace


def output_dtypes(model):
    """Record the dtype of every Linear/Conv output (what autocast computes in)."""
    seen = set()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            module.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    return seen


SETTINGS = TrainSettings(optimizer="adam", lr=2e-3, batch_size=20, duration="30it", eval_every="10it")


def test_bf16_computes_in_bfloat16_keeps_masks_exact_and_stays_close_to_fp32():
    splits = tiny_splits()
    runs = {}
    for precision in ("fp32", "bf16"):
        model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
        mask = random_mask(model, 0.3)
        dtypes = output_dtypes(model)
        runs[precision] = trainer.train(model, mask, splits, TrainSettings(**{**SETTINGS.__dict__,
                                                                              "precision": precision}), seed=1)
        assert dtypes == {torch.float32 if precision == "fp32" else torch.bfloat16}
        for name, keep in mask.items():
            tensor = runs[precision].state[name]
            assert tensor.dtype == torch.float32, "weights stay fp32 (autocast casts copies)"
            assert torch.count_nonzero(tensor[~keep]) == 0, f"{precision}: pruned weights of {name} moved"
    fp32, bf16 = runs["fp32"], runs["bf16"]
    assert any(not torch.equal(fp32.state[k], bf16.state[k]) for k in fp32.state), "bf16 must change the arithmetic"
    first, last = bf16.curve[0]["val_loss"], bf16.curve[-1]["train_loss"]
    assert last < first, "bf16 training still learns"
    for a, b in zip(fp32.curve[1:], bf16.curve[1:]):  # bfloat16 keeps 8 bits of mantissa: ~1% per step
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.1)
        assert b["val_acc"] == pytest.approx(a["val_acc"], abs=0.1)


def test_bf16_batched_networks_compute_as_single_bf16_networks():
    """vmapped networks run under the same autocast as one network: the same bf16 logits, and training
    that stays as close to the single runs as bf16 rounding allows (SGD: Adam's 1/sqrt(v) would blow
    the rounding differences of near-zero gradients up to +-lr per step)."""
    from lth.training.batched import StackedNetworks

    splits = tiny_splits()
    models = [build_model("lenet-300-100", (1, 28, 28), 10, seed=s) for s in (0, 1)]
    starts = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    stacked = StackedNetworks(models[0], starts, torch.device("cpu"))
    x = splits.train_x[:20]
    with torch.no_grad():
        with trainer.autocast(x.device, "bf16")():
            batched = stacked.shared(x).float()
            single = [m(x).float() for m in models]
        plain = stacked.shared(x)
    for i in (0, 1):
        torch.testing.assert_close(batched[i], single[i], rtol=1e-2, atol=1e-2)
    assert (batched - plain).abs().max() > 1e-3, "autocast must reach the vmapped networks"

    settings = TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=20, duration="12it",
                             eval_every="6it", precision="bf16")
    masks = [random_mask(models[0], 0.5, seed=s) for s in (0, 1)]
    together = train_batched(models[0], starts, masks, splits, settings, [0, 1])
    for i, model in enumerate(models):
        alone = trainer.train(model, masks[i], splits, settings, seed=i)
        for name in alone.state:
            torch.testing.assert_close(together[i].state[name], alone.state[name], rtol=0.05, atol=1e-2, msg=name)
        for name, keep in masks[i].items():
            assert torch.count_nonzero(together[i].state[name][~keep]) == 0


def test_channels_last_layout_gives_the_standard_layouts_result(monkeypatch):
    """The CUDA path trains conv nets in NHWC; forced here on the CPU, where it must agree with NCHW."""
    splits = tiny_splits(n_train=40, n_eval=10, shape=(3, 16, 16))
    settings = TrainSettings(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=10, duration="8it", eval_every="4it")
    out = {}
    for layout in ("nhwc", "nchw"):
        monkeypatch.setattr(trainer, "channels_last_wanted",
                            lambda nets, device, on=layout == "nhwc": on and trainer.SingleNetwork is type(nets))
        model = build_model("conv-2", (3, 16, 16), 10, seed=0)
        mask = random_mask(model, 0.5)
        conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        formats = []
        conv.register_forward_pre_hook(lambda m, args: formats.append(
            args[0].is_contiguous(memory_format=torch.channels_last)) if m.training else None)
        out[layout] = trainer.train(model, mask, splits, settings, seed=0)
        assert all(formats) == (layout == "nhwc") and formats, f"{layout}: training batches in the wrong layout"
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) == (layout == "nhwc")
        for name, keep in mask.items():
            assert torch.count_nonzero(out[layout].state[name][~keep]) == 0
        assert all(t.is_contiguous() for t in out[layout].state.values()), "saved in the standard layout"
    for name, tensor in out["nchw"].state.items():
        torch.testing.assert_close(out["nhwc"].state[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_channels_last_only_for_one_conv_network_on_cuda():
    conv = trainer.SingleNetwork(build_model("conv-2", (3, 16, 16), 10, seed=0))
    mlp = trainer.SingleNetwork(build_model("lenet-300-100", (1, 28, 28), 10, seed=0))
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert trainer.channels_last_wanted(conv, cuda)
    assert not trainer.channels_last_wanted(conv, cpu)
    assert not trainer.channels_last_wanted(mlp, cuda)


def test_precision_setting_is_validated_and_part_of_the_fingerprint():
    base = defaults_for("lenet-300-100", "mnist-5k")
    assert base.to_dict()["train"]["precision"] == "fp32"
    bf16 = replace(base, train__precision="bf16").validate()
    assert bf16.fingerprint() != base.fingerprint() and bf16.to_dict()["train"]["precision"] == "bf16"
    assert from_dict(bf16.to_dict()) == bf16 and from_dict(base.to_dict()) == base
    with pytest.raises(LthError, match=r"unknown precision 'fp16'.*valid choices: bf16, fp32"):
        replace(base, train__precision="fp16").validate()
    with pytest.raises(LthError, match="precision"):
        from_dict({"train": {"precision": 16}})
    with pytest.raises(LthError, match=r"unknown precision 'half'"):
        trainer.autocast(torch.device("cpu"), "half")
    assert RunSettings().train.precision == "fp32"


def test_cli_precision_option_trains_in_bf16(monkeypatch, capsys, tmp_path):
    fake_mnist(tmp_path / "data", "MNIST", n_train=200, n_test=20)
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"),
                           "--rounds", "2", "--iterations", "6", "--batch-size", "20", "--precision", "bf16",
                           "--device", "cpu", "--out", str(out), "--quiet")
    assert code == 0, err
    assert json.loads((out / "settings.json").read_text())["settings"]["train"]["precision"] == "bf16"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"),
                           "--precision", "fp8", "--out", str(tmp_path / "bad"))
    assert code == 2 and "'fp8'" in err and "bf16" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists(), "refused before anything is written"
