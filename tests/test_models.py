"""Model registry and architectures: shapes, exact sizes, prunable-layer kinds, init, and seeding."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from lth.core.errors import LthError
from lth.models import MODELS, ModelDefaults, build_model, get_model_spec

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)
ALL_MODELS = sorted(MODELS)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_exactly_the_paper_models() -> None:
    assert set(MODELS) == {"lenet-300-100", "lenet-5", "conv-2", "conv-4", "conv-6", "vgg-19", "resnet-20"}
    for name, spec in MODELS.items():
        assert spec.name == name
        assert spec.description and "\n" not in spec.description
        assert set(spec.defaults.rates) == {"conv", "fc", "output"}


@pytest.mark.parametrize(
    ("name", "shape"),
    [("lenet-300-100", MNIST), ("lenet-5", MNIST)] + [(name, CIFAR) for name in ALL_MODELS],
)
def test_forward_shape(name: str, shape: tuple[int, int, int]) -> None:
    model = build_model(name, shape, 10, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("name", "shape", "expected"),
    [
        # 784*300+300 + 300*100+100 + 100*10+10
        ("lenet-300-100", MNIST, 266_610),
        # conv1 1*6*25+6=156, conv2 6*16*25+16=2_416, fc1 (16*5*5)*120+120=48_120,
        # fc2 120*84+84=10_164, fc3 84*10+10=850
        ("lenet-5", MNIST, 61_706),
        # conv 3*64*9+64=1_792, conv 64*64*9+64=36_928, fc1 (64*16*16)*256+256=4_194_560,
        # fc2 256*256+256=65_792, fc3 256*10+10=2_570
        ("conv-2", CIFAR, 4_301_642),
        # Convs have no bias (BN follows); each BN has 2*C parameters.
        # stem: 3*16*9=432 + BN 32                                            =     464
        # stage 1: 3 blocks x 2 x (16*16*9=2_304 + 32)                          =  14_016
        # stage 2: block 1: 16*32*9=4_608+64, 32*32*9=9_216+64, 1x1 16*32=512+64 =  14_528
        #          blocks 2-3: 2 x 2 x (9_216 + 64)                             =  37_120
        # stage 3: block 1: 32*64*9=18_432+128, 64*64*9=36_864+128, 1x1 2_048+128 = 57_728
        #          blocks 2-3: 2 x 2 x (36_864 + 128)                           = 147_968
        # fc: 64*10+10                                                          =     650
        ("resnet-20", CIFAR, 272_474),
    ],
)
def test_exact_parameter_counts(name: str, shape: tuple[int, int, int], expected: int) -> None:
    assert n_params(build_model(name, shape, 10, seed=0)) == expected


def test_lenet_300_100_flattens_any_input() -> None:
    model = build_model("lenet-300-100", CIFAR, 10, seed=0)
    assert model.fc1.in_features == 3 * 32 * 32


def test_lenet_300_100_prunable_layers() -> None:
    model = build_model("lenet-300-100", MNIST, 10, seed=0)
    assert model.prunable_layers() == {"fc1.weight": "fc", "fc2.weight": "fc", "fc3.weight": "output"}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_prunable_layers_kinds(name: str) -> None:
    model = build_model(name, CIFAR, 10, seed=0)
    kinds = model.prunable_layers()
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    assert list(kinds.values()).count("output") == 1
    assert kinds[f"{model.output_layer}.weight"] == "output"
    for param_name, kind in kinds.items():
        assert param_name.endswith(".weight") and param_name in params
        module = modules[param_name.rsplit(".", 1)[0]]
        if kind == "conv":
            assert isinstance(module, nn.Conv2d)
        elif kind == "fc":
            assert isinstance(module, nn.Linear)
    # Every conv/linear weight is prunable; no bias or BatchNorm parameter ever is.
    expected = {f"{n}.weight" for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert set(kinds) == expected
    bn_params = {f"{n}.{p}" for n, m in modules.items() if isinstance(m, nn.BatchNorm2d) for p in ("weight", "bias")}
    assert not set(kinds) & bn_params
    assert not any(p.endswith(".bias") for p in kinds)


@pytest.mark.parametrize("name", ["lenet-5", "conv-4", "resnet-20"])
def test_build_model_is_seeded(name: str) -> None:
    shape = MNIST if name == "lenet-5" else CIFAR
    a = build_model(name, shape, 10, seed=7).state_dict()
    b = build_model(name, shape, 10, seed=7).state_dict()
    c = build_model(name, shape, 10, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    weights = [k for k in a if k.endswith("weight") and a[k].dim() > 1]
    assert not any(torch.equal(a[k], c[k]) for k in weights)


def test_build_model_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    build_model("lenet-300-100", MNIST, 10, seed=0)
    assert torch.equal(torch.get_rng_state(), before)


def test_glorot_normal_init() -> None:
    model = build_model("lenet-300-100", MNIST, 10, seed=0)
    weight = model.fc1.weight.detach()
    expected = math.sqrt(2.0 / (784 + 300))
    assert weight.mean().abs() < 0.1 * expected
    assert weight.std().item() == pytest.approx(expected, rel=0.02)
    assert torch.count_nonzero(model.fc1.bias) == 0
    # Conv fan counts include the kernel area.
    conv = build_model("lenet-5", MNIST, 10, seed=0).features[3].weight.detach()
    assert conv.std().item() == pytest.approx(math.sqrt(2.0 / (6 * 25 + 16 * 25)), rel=0.1)


def test_kaiming_init_and_batchnorm() -> None:
    model = build_model("resnet-20", CIFAR, 10, seed=0)
    weight = model.blocks[8].conv2.weight.detach()  # 64*64*9 values
    assert weight.std().item() == pytest.approx(math.sqrt(2.0 / (64 * 9)), rel=0.05)
    bn = model.blocks[8].bn2
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_unknown_model_name() -> None:
    with pytest.raises(LthError) as excinfo:
        get_model_spec("lenet-3000")
    message = str(excinfo.value)
    assert "'lenet-3000'" in message
    for name in MODELS:
        assert name in message
    with pytest.raises(LthError):
        build_model("resnet-21", CIFAR, 10, seed=0)


def test_bad_input_shape_is_a_clear_error() -> None:
    with pytest.raises(LthError):
        build_model("lenet-5", (1, 28), 10, seed=0)  # type: ignore[arg-type]
    with pytest.raises(LthError, match="too small"):
        build_model("conv-6", (3, 4, 4), 10, seed=0)


def test_paper_defaults() -> None:
    lenet = get_model_spec("lenet-300-100").defaults
    assert (lenet.dataset, lenet.optimizer, lenet.lr, lenet.batch_size, lenet.duration) == (
        "mnist", "adam", 1.2e-3, 60, "50ep"
    )
    assert dict(lenet.rates) == {"conv": 0.0, "fc": 0.2, "output": 0.1} and lenet.pruning == "layerwise"
    assert dict(get_model_spec("conv-6").defaults.rates)["conv"] == 0.15
    vgg = get_model_spec("vgg-19").defaults
    assert (vgg.optimizer, vgg.momentum, vgg.weight_decay, vgg.batch_size, vgg.pruning) == (
        "sgd", 0.9, 1e-4, 64, "global"
    )
    assert vgg.milestones == ("80ep", "120ep") and vgg.warmup == "10000it"
    resnet = get_model_spec("resnet-20").defaults
    assert resnet.milestones == ("20000it", "25000it") and resnet.duration == "30000it"
    assert dict(resnet.rates) == {"conv": 0.2, "fc": 0.0, "output": 0.0}


def test_defaults_are_read_only_and_validated() -> None:
    defaults = get_model_spec("lenet-5").defaults
    with pytest.raises(TypeError):
        defaults.rates["fc"] = 0.5  # type: ignore[index]
    with pytest.raises(AttributeError):
        defaults.lr = 1.0  # type: ignore[misc]
    with pytest.raises(LthError):
        ModelDefaults("mnist", "adam", 1e-3, 60, "1ep", rates={"fc": 0.2})
    with pytest.raises(LthError):
        ModelDefaults("mnist", "adam", 1e-3, 60, "1ep", rates={"conv": 0.1, "fc": 1.0, "output": 0.1})


def test_import_does_not_pull_in_torchvision() -> None:
    code = "import sys, lth.models; assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
