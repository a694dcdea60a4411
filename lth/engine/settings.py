"""The typed settings behind params.yaml and the CLI options, with validation that names the bad value.

One `RunSettings` describes everything that determines a run's results. Values that do not change
results (how many rounds to run, the device, where the data lives) are not part of it, so a run can
be extended or moved without being refused on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from difflib import get_close_matches
from typing import Any, Mapping

from lth.core.errors import LthError, unknown_choice
from lth.core.steps import Step

PRUNING_METHODS = ("layerwise", "global")
OPTIMIZER_NAMES = ("adam", "sgd", "radam")
PRECISIONS = ("fp32", "bf16")  # bf16: forward and backward under bfloat16 autocast; weights and optimizer stay fp32
RATE_KINDS = ("conv", "fc", "output")
MAX_TRIALS = 64
MAX_SEED = 2**62  # derived seeds stay below 2**62; torch generators take at most 2**64 - 1 (we add 1)


@dataclass(frozen=True)
class TrainSettings:
    """How one round trains: optimizer, schedule, batch size, duration, evaluation cadence."""

    optimizer: str = "adam"
    lr: float = 1.2e-3
    batch_size: int = 60
    duration: str = "50ep"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    warmup: str = "0it"
    milestones: tuple[str, ...] = ()
    gamma: float = 0.1
    eval_every: str = "100it"
    precision: str = "fp32"


@dataclass(frozen=True)
class PruneSettings:
    """How a round's mask is derived: per layer or globally, and the fraction of survivors removed."""

    method: str = "layerwise"
    rates: dict[str, float] = field(default_factory=lambda: {"conv": 0.1, "fc": 0.2, "output": 0.1})


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines the results of a lottery-ticket run."""

    model: str = "lenet-300-100"
    dataset: str = "mnist-5k"
    seed: int = 0
    criterion: str = "large_final"
    mask1_action: str = "reset"
    mask0_action: str = "zero"
    rewind: str = "0it"
    trials: int = 1
    controls: tuple[str, ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    prune: PruneSettings = field(default_factory=PruneSettings)
    pruning: str = "unstructured"  # what a pruned unit is: one weight, or a whole neuron/channel (lth.pruning.structured)

    def for_trial(self, trial: int) -> "RunSettings":
        """One trial's settings: its own seed (θ0, data order, tie-breaking), no further trials or controls."""
        from lth.core.seeds import trial_seed

        return dataclasses.replace(self, seed=trial_seed(self.seed, trial), trials=1, controls=())

    def to_dict(self) -> dict[str, Any]:
        data = _plain(dataclasses.asdict(self))
        if data["pruning"] == "unstructured":  # omitted at its default: older run directories keep their fingerprint
            del data["pruning"]
        if data["train"]["precision"] == "fp32":  # likewise
            del data["train"]["precision"]
        return data

    def fingerprint(self) -> str:
        """A short stable hash of the settings: two runs with equal fingerprints compute the same thing."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def validate(self) -> "RunSettings":
        """Check every value against its valid range or registry; raise LthError on the first bad one."""
        from lth.pruning.criteria import CRITERIA
        from lth.datasets import DATASETS
        from lth.models import MODELS

        _choice("model", self.model, MODELS)
        _choice("dataset", self.dataset, DATASETS)
        _choice("criterion", self.criterion, CRITERIA)
        from lth.pruning.actions import KEPT_ACTIONS, PRUNED_ACTIONS

        _choice("mask-1 action", self.mask1_action, KEPT_ACTIONS)
        _choice("mask-0 action", self.mask0_action, PRUNED_ACTIONS)
        _choice("optimizer", self.train.optimizer, OPTIMIZER_NAMES)
        _choice("precision", self.train.precision, PRECISIONS)
        _choice("pruning method", self.prune.method, PRUNING_METHODS)
        from lth.pruning.structured import GRANULARITIES

        _choice("pruning", self.pruning, GRANULARITIES)
        if self.pruning == "structured" and self.prune.method != "layerwise":
            raise LthError(f"structured pruning ranks units within each layer: set prune.method to layerwise, "
                           f"not '{self.prune.method}' (CLI: --pruning structured implies layerwise)")
        if not 0 <= self.seed <= MAX_SEED:
            raise LthError(f"bad seed {self.seed}: must be between 0 and {MAX_SEED}")
        if not 1 <= self.trials <= MAX_TRIALS:
            raise LthError(f"bad trials {self.trials}: must be between 1 and {MAX_TRIALS}")
        from lth.pruning.controls import CONTROLS

        for control in self.controls:
            _choice("control", control, CONTROLS)
        if len(set(self.controls)) != len(self.controls):
            raise LthError(f"bad controls {list(self.controls)}: each control may appear once")
        t = self.train
        for name in ("lr", "momentum", "weight_decay", "gamma"):
            if not math.isfinite(getattr(t, name)):
                raise LthError(f"bad {name} {getattr(t, name)}: must be a finite number")
        if not t.lr > 0:
            raise LthError(f"bad lr {t.lr}: must be > 0")
        if t.batch_size < 1:
            raise LthError(f"bad batch_size {t.batch_size}: must be >= 1")
        for name, value in (("momentum", t.momentum), ("weight_decay", t.weight_decay)):
            if value < 0:
                raise LthError(f"bad {name} {value}: must be >= 0")
        if t.nesterov and t.momentum <= 0:
            raise LthError("nesterov needs momentum > 0 (set train.momentum / --momentum)")
        if not 0 < t.gamma <= 1:
            raise LthError(f"bad gamma {t.gamma}: must be in (0, 1]")
        for name in ("duration", "warmup", "eval_every"):
            Step.parse(getattr(t, name))
        for milestone in t.milestones:
            Step.parse(milestone)
        if Step.parse(t.duration) == Step():
            raise LthError(f"bad duration '{t.duration}': must be at least one iteration")
        if Step.parse(t.eval_every) == Step():
            raise LthError(f"bad eval_every '{t.eval_every}': must be at least one iteration")
        if Step.parse(self.rewind) != Step() and self.mask1_action != "rewind":
            raise LthError(
                f"rewind step '{self.rewind}' has no effect with mask1_action '{self.mask1_action}': "
                "set mask1_action to 'rewind' (CLI: --mask1 rewind) or the rewind step to 0it"
            )
        rewind, duration = Step.parse(self.rewind), Step.parse(t.duration)
        if rewind != duration and rewind.epochs >= duration.epochs and rewind.iterations >= duration.iterations:
            raise LthError(f"rewind step '{self.rewind}' is beyond the training length '{t.duration}'")
        for kind in self.prune.rates:
            if kind not in RATE_KINDS:
                raise unknown_choice("layer kind in rates", kind, RATE_KINDS)
        for kind, rate in self.prune.rates.items():
            if not 0 <= rate < 1:
                raise LthError(f"bad pruning rate {kind}={rate}: must be in [0, 1)")
        if self.prune.method == "global":
            distinct = {r for r in self.prune.rates.values() if r > 0}
            if len(distinct) > 1:
                raise LthError(
                    f"global pruning needs one rate for every pruned layer kind, got {dict(self.prune.rates)}; "
                    "set the kinds to prune to the same rate and the others to 0"
                )
        return self


def defaults_for(model: str, dataset: str | None = None) -> RunSettings:
    """The paper's settings for `model` (optimizer, schedule, pruning rates) on `dataset`."""
    from lth.models import get_model_spec

    d = get_model_spec(model).defaults
    train = TrainSettings(
        optimizer=d.optimizer,
        lr=d.lr,
        batch_size=d.batch_size,
        duration=d.duration,
        momentum=d.momentum,
        nesterov=d.nesterov,
        weight_decay=d.weight_decay,
        warmup=d.warmup,
        milestones=tuple(d.milestones),
        gamma=d.gamma,
    )
    prune = PruneSettings(method=d.pruning, rates={k: float(d.rates.get(k, 0.0)) for k in RATE_KINDS})
    return RunSettings(model=model, dataset=dataset or d.dataset, train=train, prune=prune)


def replace(settings: RunSettings, **changes: Any) -> RunSettings:
    """Copy `settings` with top-level fields or 'train.x' / 'prune.x' fields changed; None leaves a value."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"train": {}, "prune": {}}
    for key, value in changes.items():
        if value is None:
            continue
        group, _, name = key.partition("__")
        if name:
            nested[group][name] = value
        else:
            top[key] = value
    train = dataclasses.replace(settings.train, **nested["train"])
    prune = dataclasses.replace(settings.prune, **nested["prune"])
    return dataclasses.replace(settings, train=train, prune=prune, **top)


def from_dict(data: Mapping[str, Any], where: str = "params") -> RunSettings:
    """Build RunSettings from a plain mapping (params.yaml), rejecting unknown keys and wrong types."""
    if not isinstance(data, Mapping):
        raise LthError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    model = data.get("model", RunSettings.model)
    base = defaults_for(model) if isinstance(model, str) and _known_model(model) else RunSettings()
    return _build(RunSettings, data, base, where).validate()


def check_data(settings: RunSettings, input_shape: tuple[int, ...], num_classes: int, num_train: int) -> None:
    """The checks that need the dataset: the batch fits the training set, the rewind step lies within
    training, and the model accepts the images. Run before any work, so a bad combination costs nothing."""
    t = settings.train
    if t.batch_size > num_train:
        raise LthError(f"bad batch_size {t.batch_size}: larger than the {num_train} training examples of "
                       f"'{settings.dataset}'")
    per_epoch = num_train // t.batch_size
    total = Step.parse(t.duration).to_iterations(per_epoch)
    rewind = Step.parse(settings.rewind).to_iterations(per_epoch)
    if rewind > total:
        raise LthError(f"rewind step '{settings.rewind}' ({rewind} iterations) is beyond the training length "
                       f"'{t.duration}' ({total} iterations at batch size {t.batch_size} on {num_train} examples)")
    check_model_fits(settings.model, tuple(input_shape), num_classes, settings.dataset)


def check_model_fits(model: str, input_shape: tuple[int, ...], num_classes: int, dataset: str = "the dataset") -> None:
    """One forward pass of a single blank image: an input too small for the model's convolutions and pooling
    (or of the wrong rank) is named here instead of failing as a shape error deep inside training."""
    import torch

    from lth.models import build_model

    if len(input_shape) != 3 or any(d < 1 for d in input_shape):
        raise LthError(f"{dataset}: input shape {tuple(input_shape)} is not (channels, height, width)")
    net = build_model(model, tuple(input_shape), num_classes, 0).eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    except (RuntimeError, ValueError, LthError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LthError(f"model '{model}' does not fit {dataset}'s {'x'.join(map(str, input_shape))} images: "
                       f"{first}") from None
    if tuple(out.shape) != (1, num_classes):
        raise LthError(f"model '{model}' gives outputs of shape {tuple(out.shape)[1:]} for {dataset}, "
                       f"expected {num_classes} classes")


# --- helpers -------------------------------------------------------------------------------------------


def build_dataclass(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Any settings dataclass from a mapping, with the same unknown-key and type checks as RunSettings."""
    if not isinstance(data, Mapping):
        raise LthError(f"{where}: expected a mapping of settings, got {data!r}")
    return _build(cls, data, cls(), where)


def _known_model(name: str) -> bool:
    from lth.models import MODELS

    return name in MODELS


def _choice(what: str, value: str, choices: Mapping[str, Any] | tuple[str, ...]) -> None:
    if value not in choices:
        raise unknown_choice(what, value, list(choices))


def _plain(value: Any) -> Any:
    """Tuples to lists, so settings round-trip through JSON and YAML unchanged."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Mapping[str, Any], base: Any, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, raw in data.items():
        if key not in names:
            close = get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise LthError(f"{where}: unknown key '{key}'{hint}; valid keys: {', '.join(names)}")
        values[key] = _coerce(hints[key], raw, f"{where}.{key}", getattr(base, key))
    return dataclasses.replace(base, **values)


def _coerce(hint: Any, raw: Any, where: str, base: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(raw, Mapping):
            raise LthError(f"{where}: expected a mapping, got {raw!r}")
        return _build(hint, raw, base, where)
    if origin is tuple:
        if not isinstance(raw, (list, tuple)):
            raise LthError(f"{where}: expected a list, got {raw!r}")
        return tuple(_coerce(typing.get_args(hint)[0], v, where, None) for v in raw)
    if origin is dict:
        if not isinstance(raw, Mapping):
            raise LthError(f"{where}: expected a mapping, got {raw!r}")
        merged = dict(base or {})
        merged.update({str(k): _coerce(typing.get_args(hint)[1], v, f"{where}.{k}", None) for k, v in raw.items()})
        return merged
    if hint is bool:
        if not isinstance(raw, bool):
            raise LthError(f"{where}: expected true or false, got {raw!r}")
        return raw
    if hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise LthError(f"{where}: expected an integer, got {raw!r}")
        return raw
    if hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise LthError(f"{where}: expected a number, got {raw!r}")
        return float(raw)
    if hint is str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise LthError(f"{where}: expected a string, got {raw!r}")
        return str(raw)
    return raw
