"""The model registry: each name maps to a constructor plus the paper's training and pruning settings.

No torch at import: the constructors are imported when a model is built, so settings validation, help
texts and `lth list` know every model without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from lth.core.errors import LthError, unknown_choice

if TYPE_CHECKING:
    from lth.models.base import PrunableModel

__all__ = ["LAYER_KINDS", "MODELS", "ModelDefaults", "ModelSpec", "build_model", "get_model_spec"]

LAYER_KINDS = ("conv", "fc", "output")
"""What a prunable layer is, for per-kind pruning rates: a convolution, a hidden linear layer, the classifier."""

ModelFactory = Callable[[tuple[int, int, int], int], "PrunableModel"]


def _default_rates() -> dict[str, float]:
    """Frankle & Carbin's most common per-iteration rates; every model below states its own anyway."""
    return {"conv": 0.1, "fc": 0.2, "output": 0.1}


@dataclass(frozen=True)
class ModelDefaults:
    """The paper's training and pruning settings for one model, so a bare `lth train <model>` reproduces it.

    `rates` is the fraction of the remaining weights pruned per round for each layer kind; it is stored
    as a read-only mapping so a shared default can never be mutated by one caller.
    """

    dataset: str
    optimizer: str
    lr: float
    batch_size: int
    duration: str
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    warmup: str = "0it"
    milestones: tuple[str, ...] = ()
    gamma: float = 0.1
    pruning: str = "layerwise"
    rates: Mapping[str, float] = field(default_factory=_default_rates, hash=False)

    def __post_init__(self) -> None:
        rates = dict(self.rates)
        if set(rates) != set(LAYER_KINDS):
            raise LthError(f"pruning rates must have exactly the keys {', '.join(LAYER_KINDS)}; got {sorted(rates)}")
        for kind, rate in rates.items():
            if not 0.0 <= rate < 1.0:
                raise LthError(f"pruning rate for '{kind}' must be in [0, 1); got {rate}")
        object.__setattr__(self, "milestones", tuple(self.milestones))
        object.__setattr__(self, "rates", MappingProxyType({kind: float(rates[kind]) for kind in LAYER_KINDS}))


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, a one-line description, its paper defaults and its constructor."""

    name: str
    description: str
    defaults: ModelDefaults
    factory: ModelFactory


def _constructor(module: str, name: str, **fixed: Any) -> ModelFactory:
    """A factory that imports `module` (and torch) only when a model is built; the full module name is
    spelled out so a reader (and the DVC deps test's import walk) sees what each model needs."""

    def build(input_shape: tuple[int, int, int], num_classes: int) -> "PrunableModel":
        return getattr(import_module(module), name)(input_shape, num_classes, **fixed)

    return build


def _lenet_adam(duration: str, conv_rate: float) -> ModelDefaults:
    """Frankle & Carbin's MNIST setting: Adam 1.2e-3, batch 60."""
    return ModelDefaults(
        dataset="mnist", optimizer="adam", lr=1.2e-3, batch_size=60, duration=duration,
        rates={"conv": conv_rate, "fc": 0.2, "output": 0.1},
    )


def _conv_adam(lr: float, duration: str, conv_rate: float) -> ModelDefaults:
    """Frankle & Carbin's Conv-2/4/6 setting on CIFAR-10: Adam, batch 60, layerwise pruning."""
    return ModelDefaults(
        dataset="cifar-10", optimizer="adam", lr=lr, batch_size=60, duration=duration,
        rates={"conv": conv_rate, "fc": 0.2, "output": 0.1},
    )


def _sgd_global(batch_size: int, duration: str, warmup: str, milestones: tuple[str, ...]) -> ModelDefaults:
    """Frankle et al.'s deep-network setting: SGD+momentum with warmup and step decay, global conv-only pruning."""
    return ModelDefaults(
        dataset="cifar-10", optimizer="sgd", lr=0.1, batch_size=batch_size, duration=duration,
        momentum=0.9, weight_decay=1e-4, warmup=warmup, milestones=milestones, gamma=0.1,
        pruning="global", rates={"conv": 0.2, "fc": 0.0, "output": 0.0},
    )


_SPECS = (
    ModelSpec(
        "lenet-300-100", "fully connected 300-100 network on flattened MNIST (Frankle & Carbin 2019)",
        _lenet_adam("50ep", conv_rate=0.0), _constructor("lth.models.lenet", "LeNet300100"),
    ),
    ModelSpec(
        "lenet-5", "LeNet-5: two 5x5 convs with max pooling, then fc 120-84",
        _lenet_adam("50ep", conv_rate=0.1), _constructor("lth.models.lenet", "LeNet5"),
    ),
    ModelSpec(
        "conv-2", "Conv-2: two 3x3 convs (64), pool, fc 256-256 (Frankle & Carbin 2019)",
        _conv_adam(2e-4, "20000it", conv_rate=0.1), _constructor("lth.models.conv", "ConvNet", stage_widths=(64,)),
    ),
    ModelSpec(
        "conv-4", "Conv-4: 3x3 convs 64-64-pool-128-128-pool, fc 256-256 (Frankle & Carbin 2019)",
        _conv_adam(3e-4, "25000it", conv_rate=0.1), _constructor("lth.models.conv", "ConvNet", stage_widths=(64, 128)),
    ),
    ModelSpec(
        "conv-6", "Conv-6: 3x3 convs 64x2-pool-128x2-pool-256x2-pool, fc 256-256 (Frankle & Carbin 2019)",
        _conv_adam(3e-4, "30000it", conv_rate=0.15), _constructor("lth.models.conv", "ConvNet", stage_widths=(64, 128, 256)),
    ),
    ModelSpec(
        "vgg-19", "CIFAR VGG-19 with BatchNorm, global average pooling and one linear classifier",
        _sgd_global(64, "160ep", warmup="10000it", milestones=("80ep", "120ep")), _constructor("lth.models.vgg", "VGG"),
    ),
    ModelSpec(
        "resnet-20", "CIFAR ResNet-20 (He et al. 2016) with 1x1-conv projection shortcuts",
        _sgd_global(128, "30000it", warmup="20000it", milestones=("20000it", "25000it")), _constructor("lth.models.resnet", "ResNet"),
    ),
)

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}


def get_model_spec(name: str) -> ModelSpec:
    """Look a model up by name; a typo gets a did-you-mean hint and the list of valid names."""
    try:
        return MODELS[name]
    except KeyError:
        raise unknown_choice("model", name, MODELS) from None


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int, seed: int) -> "PrunableModel":
    """Build a freshly initialised model, reproducibly for `seed`, leaving the caller's global RNG untouched.

    Reproducible initial weights are what make rewinding and re-running lottery-ticket rounds meaningful.
    """
    spec = get_model_spec(name)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise LthError(f"input shape must be three positive integers (channels, height, width); got {input_shape!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise LthError(f"number of classes must be a positive integer; got {num_classes!r}")
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.factory(shape, num_classes)  # type: ignore[arg-type]
