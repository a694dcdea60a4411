"""Models: lth's registry (each name a constructor plus the paper's training and pruning settings), and yours.

A MODEL is a registered name or your own callable `(input_shape, num_outputs) -> nn.Module`, named
`package.module:callable` or `path/to/file.py:callable` (lth.core.plugins). Any nn.Module works: its
prunable layers are found by walking it (lth.models.layers). No torch at import: the constructors are
imported when a model is built, so settings validation, help texts and `lth list` cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from importlib import import_module
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from lth.core.errors import LthError, unknown_choice

if TYPE_CHECKING:
    from torch import nn

__all__ = ["GENERIC_DEFAULTS", "LAYER_KINDS", "MODELS", "ModelDefaults", "ModelSpec", "build_model", "get_model_spec",
           "register_model"]

LAYER_KINDS = ("conv", "fc", "output")
"""What a prunable layer is, for per-kind pruning rates: a convolution, a hidden linear layer, the classifier."""

ModelFactory = Callable[[tuple[int, ...], int], "nn.Module"]


def default_rates() -> dict[str, float]:
    """Frankle & Carbin's most common per-iteration rates (20% of hidden fc, 10% of the output and convolutions);
    the one place they are written: models that differ override one kind, and PruneSettings starts from them."""
    return {"conv": 0.1, "fc": 0.2, "output": 0.1}


@dataclass(frozen=True)
class ModelDefaults:
    """The paper's training and pruning settings for one model, so a bare `lth find-ticket MODEL ...` reproduces it.

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
    rates: Mapping[str, float] = field(default_factory=default_rates, hash=False)

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
    """A model: its name, a one-line description, its defaults and its constructor."""

    name: str
    description: str
    defaults: ModelDefaults
    factory: ModelFactory


def _constructor(module: str, name: str, **fixed: Any) -> ModelFactory:
    """A factory that imports `module` (and torch) only when a model is built; the full module name is
    spelled out so a reader (and the DVC deps test's import walk) sees what each model needs."""

    def build(input_shape: tuple[int, ...], num_outputs: int) -> "nn.Module":
        return getattr(import_module(module), name)(input_shape, num_outputs, **fixed)

    return build


def _lenet_adam(duration: str, conv_rate: float) -> ModelDefaults:
    """Frankle & Carbin's MNIST setting: Adam 1.2e-3, batch 60."""
    return ModelDefaults(
        dataset="mnist", optimizer="adam", lr=1.2e-3, batch_size=60, duration=duration,
        rates={**default_rates(), "conv": conv_rate},
    )


def _conv_adam(lr: float, duration: str, conv_rate: float) -> ModelDefaults:
    """Frankle & Carbin's Conv-2/4/6 setting on CIFAR-10: Adam, batch 60, layerwise pruning."""
    return ModelDefaults(
        dataset="cifar-10", optimizer="adam", lr=lr, batch_size=60, duration=duration,
        rates={**default_rates(), "conv": conv_rate},
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

GENERIC_DEFAULTS = ModelDefaults(dataset="", optimizer="adam", lr=1.2e-3, batch_size=60, duration="50ep",
                                 rates=default_rates())
"""A researcher's model without its own defaults: Frankle & Carbin's LeNet training (Adam 1.2e-3, batch 60,
50 epochs) and their per-round rates (conv 10%, fc 20%, output 10%), layerwise."""

_REFERENCED: dict[str, ModelSpec] = {}  # models named by a reference to their code, loaded once per process

DEFAULTS_ATTRIBUTE = "lth_defaults"
"""A model callable may carry its own defaults: `make_net.lth_defaults = {"lr": 0.01, "rates": {"fc": 0.3}}`
(the fields of ModelDefaults but `dataset`; rates not given keep the generic ones)."""


def register_model(name: str, factory: ModelFactory, defaults: Optional[Mapping[str, Any]] = None,
                   description: str = "") -> ModelSpec:
    """Make `factory` (input_shape, num_outputs) -> nn.Module a model named `name` in this process (what the
    Python API does with a callable it is given)."""
    spec = ModelSpec(name, description or f"{getattr(factory, '__qualname__', name)} (given in Python)",
                     _user_defaults(name, defaults if defaults is not None else getattr(factory, DEFAULTS_ATTRIBUTE, None)),
                     factory)
    MODELS[name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    """A registered model, or the model a `package.module:callable` / `path/to/file.py:callable` reference
    names (its code is imported here); a typo gets a did-you-mean hint and the list of valid names."""
    from lth.core.plugins import FORMS, is_reference, load_callable

    if name in MODELS:
        return MODELS[name]
    if is_reference(name):
        if name not in _REFERENCED:
            factory = load_callable(name, "model")
            _REFERENCED[name] = ModelSpec(name, f"{name} (your code)",
                                          _user_defaults(name, getattr(factory, DEFAULTS_ATTRIBUTE, None)), factory)
        return _REFERENCED[name]
    raise LthError(f"{unknown_choice('model', name, MODELS)}; or your own as {FORMS}")


def _user_defaults(name: str, given: Any) -> ModelDefaults:
    """GENERIC_DEFAULTS, with what the model's callable carries (`lth_defaults`) on top."""
    if given is None:
        return GENERIC_DEFAULTS
    if isinstance(given, ModelDefaults):
        return given
    if not isinstance(given, Mapping):
        raise LthError(f"model '{name}': {DEFAULTS_ATTRIBUTE} must be a dict, got {type(given).__name__}")
    valid = [f.name for f in fields(ModelDefaults) if f.name != "dataset"]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise LthError(f"model '{name}': unknown key(s) in {DEFAULTS_ATTRIBUTE}: {', '.join(map(str, unknown))}; "
                       f"valid keys: {', '.join(valid)}")
    changes = dict(given)
    if "rates" in changes:
        rates = changes["rates"]
        if not isinstance(rates, Mapping) or set(rates) - set(LAYER_KINDS):
            raise LthError(f"model '{name}': {DEFAULTS_ATTRIBUTE}['rates'] must map layer kinds "
                           f"({', '.join(LAYER_KINDS)}) to fractions, got {rates!r}")
        changes["rates"] = {**GENERIC_DEFAULTS.rates, **rates}
    try:
        return replace(GENERIC_DEFAULTS, **changes)
    except (TypeError, ValueError) as exc:
        raise LthError(f"model '{name}': bad {DEFAULTS_ATTRIBUTE}: {exc}") from None


def build_model(name: str, input_shape: tuple[int, ...], num_outputs: int, seed: int) -> "nn.Module":
    """Build a freshly initialised model, reproducibly for `seed`, leaving the caller's global RNG untouched.

    Reproducible initial weights are what make rewinding and re-running lottery-ticket rounds meaningful.
    A model that cannot be built, is not an nn.Module or has nothing to prune is one LthError naming it.
    """
    spec = get_model_spec(name)
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise LthError(f"input shape must be positive integers (the shape of one example); got {input_shape!r}")
    if not isinstance(num_outputs, int) or num_outputs < 1:
        raise LthError(f"number of outputs must be a positive integer; got {num_outputs!r}")
    import torch
    from torch import nn

    from lth.core.plugins import call
    from lth.models.layers import prunable_layers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = call(spec.factory, name, "model", shape, num_outputs)
    if not isinstance(model, nn.Module):
        raise LthError(f"model '{name}' returned a {type(model).__name__}, not a torch.nn.Module")
    if not prunable_layers(model):
        raise LthError(f"model '{name}' has no prunable layer: lth prunes the weights of nn.Linear and nn.Conv1d/2d/3d "
                       "layers, and it has none")
    return model
