"""The settings that determine a lottery-ticket run's results, declared once, with validation that names the bad value.

`RunSettings` holds everything that changes what a run computes; the training and pruning groups are
declared next to what they configure (lth.training.settings, lth.pruning.settings). Values that do
not change results (how many rounds to run, the device, where the data lives) are not part of it, so
a run can be extended or moved without being refused on resume.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from lth.core.config import build, check_choices, plain, registry, setting
from lth.core.errors import LthError
from lth.core.durations import Step
from lth.pruning.settings import PruneSettings
from lth.training.settings import TrainSettings

if TYPE_CHECKING:
    from lth.datasets import Splits

MAX_TRIALS = 64
FINGERPRINT_VERSION = "2-"  # fingerprints of non-default settings; version 1 (no prefix) hashed every setting
SETTINGS_SINCE_V1 = ("task",)  # settings added after version 1: an older run has them at their default
MAX_SEED = 2**62  # derived seeds stay below 2**62; torch generators take at most 2**64 - 1 (we add 1)


def _user_model():
    from lth.core.plugins import FORMS, is_reference

    return is_reference, f"your own model as {FORMS}"


def _user_dataset():
    from lth.core.plugins import DATA_FORMS, is_data_file, is_reference

    return (lambda name: is_reference(name) or is_data_file(name)), DATA_FORMS


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines the results of a lottery-ticket run."""

    model: str = setting("lenet-300-100", "Model: a registered name (`lth list models`), or your own "
                                          "package.module:callable or path/to/file.py:callable.",
                         choices=registry("lth.models", "MODELS"), beyond=_user_model())
    dataset: str = setting("mnist-5k", "Dataset: a registered name (`lth list datasets`), a .npz/.pt file of arrays, "
                                       "or package.module:callable.", choices=registry("lth.datasets", "DATASETS"), beyond=_user_dataset())
    task: str = setting("auto", "What the network learns (lth.tasks): auto infers it from the targets (integer labels: "
                                "classification; floats: regression).", choices=registry("lth.tasks", "TASK_CHOICES"), inline=True)
    seed: int = setting(0, "Seed of θ0, data order and tie-breaking.")
    criterion: str = setting("large_final", "Mask criterion: how a weight is scored (`lth list criteria`).",
                             choices=registry("lth.pruning.criteria", "CRITERIA"))
    mask1_action: str = setting("reset", "Mask-1 action on kept weights when rewinding (`lth list actions`).",
                                choices=registry("lth.pruning.actions", "KEPT_ACTIONS"), label="mask-1 action")
    mask0_action: str = setting("zero", "Mask-0 action on pruned weights (`lth list actions`).",
                                choices=registry("lth.pruning.actions", "PRUNED_ACTIONS"), label="mask-0 action")
    rewind: str = setting("0it", "Rewind step k: kept weights restart from their value at this step of the dense "
                                 "run (needs mask-1 action 'rewind').")
    trials: int = setting(1, "Independent trials (own θ0, data order, masks), trained together.")
    controls: tuple[str, ...] = setting((), "Control arms trained beside each ticket from round 1.",
                                        choices=registry("lth.pruning.controls", "CONTROLS"), label="control", inline=True)
    train: TrainSettings = setting(default_factory=TrainSettings)
    prune: PruneSettings = setting(default_factory=PruneSettings)
    pruning: str = setting("unstructured", "What a pruned unit is (lth compact makes structured tickets smaller).",
                           choices=registry("lth.pruning.prune", "GRANULARITIES"), inline=True)

    def for_trial(self, trial: int) -> "RunSettings":
        """One trial's settings: its own seed (θ0, data order, tie-breaking), no further trials or controls."""
        from lth.core.seeds import trial_seed

        return dataclasses.replace(self, seed=trial_seed(self.seed, trial), trials=1, controls=())

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    def fingerprint(self) -> str:
        """A short stable hash of the settings that differ from their declared defaults (as open_lth does): two
        runs with equal fingerprints compute the same thing, and a setting added later with a default that
        changes nothing leaves every existing run's fingerprint as it was."""
        changed = non_default(plain(RunSettings()), self.to_dict())
        return FINGERPRINT_VERSION + hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:16]

    def fingerprints(self) -> tuple[str, ...]:
        """Every fingerprint a file of this run may carry: today's, and the one lth wrote before fingerprints
        hashed only non-default settings (a hash of every setting of that time), so older runs stay readable."""
        current = self.to_dict()
        if any(current.get(key) != plain(getattr(RunSettings(), key)) for key in SETTINGS_SINCE_V1):
            return (self.fingerprint(),)
        legacy = {k: v for k, v in current.items() if k not in SETTINGS_SINCE_V1}
        return self.fingerprint(), hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> "RunSettings":
        """Check every value against its valid range or registry; raise LthError on the first bad one."""
        check_choices(self)
        if self.pruning == "structured" and self.prune.method != "layerwise":
            raise LthError(f"structured pruning ranks units within each layer: set prune.method to layerwise, "
                           f"not '{self.prune.method}' (CLI: --pruning structured implies layerwise)")
        if self.pruning == "structured" and self.prune.schedule == "oneshot":
            raise LthError("the one-shot schedule prunes single weights: use pruning 'unstructured' with it")
        if self.pruning == "nm" and self.prune.method != "layerwise":
            raise LthError(f"N:M pruning ranks weights within groups of each layer: set prune.method to layerwise, "
                           f"not '{self.prune.method}' (CLI: --pruning nm implies layerwise)")
        if not 0 <= self.seed <= MAX_SEED:
            raise LthError(f"bad seed {self.seed}: must be between 0 and {MAX_SEED}")
        if not 1 <= self.trials <= MAX_TRIALS:
            raise LthError(f"bad trials {self.trials}: must be between 1 and {MAX_TRIALS}")
        if len(set(self.controls)) != len(self.controls):
            raise LthError(f"bad controls {list(self.controls)}: each control may appear once")
        self.train.validate()
        rewind, duration = Step.parse(self.rewind), Step.parse(self.train.duration)
        if rewind != Step() and self.mask1_action != "rewind":
            raise LthError(
                f"rewind step '{self.rewind}' has no effect with mask1_action '{self.mask1_action}': "
                "set mask1_action to 'rewind' (CLI: --mask1 rewind) or the rewind step to 0it"
            )
        if self.mask1_action == "rewind" and rewind == Step():
            raise LthError("mask1_action 'rewind' with rewind step 0it is the same as 'reset': give the rewind step "
                           "(e.g. rewind: 1ep; CLI: --rewind 1ep, which also picks the rewind action)")
        if rewind != duration and rewind.epochs >= duration.epochs and rewind.iterations >= duration.iterations:
            raise LthError(f"rewind step '{self.rewind}' is beyond the training length '{self.train.duration}'")
        self.prune.validate()
        return self


def defaults_for(model: str, dataset: str | None = None) -> RunSettings:
    """The paper's settings for `model` (optimizer, schedule, pruning rates) on `dataset`."""
    from lth.models import LAYER_KINDS, get_model_spec

    d = get_model_spec(model).defaults  # a reference to your own code imports it here
    train = TrainSettings(optimizer=d.optimizer, lr=d.lr, batch_size=d.batch_size, duration=d.duration,
                          momentum=d.momentum, nesterov=d.nesterov, weight_decay=d.weight_decay, warmup=d.warmup,
                          milestones=tuple(d.milestones), gamma=d.gamma)
    prune = PruneSettings(method=d.pruning, rates={k: float(d.rates.get(k, 0.0)) for k in LAYER_KINDS})
    return RunSettings(model=model, dataset=dataset or d.dataset or RunSettings.dataset, train=train, prune=prune)


def replace(settings: RunSettings, **changes: Any) -> RunSettings:
    """Copy `settings` with top-level fields or 'train__x' / 'prune__x' fields changed; None leaves a value."""
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


def non_default(defaults: Any, values: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of `values` that differ from `defaults`, as dotted keys ('train.lr': 0.01)."""
    if isinstance(defaults, Mapping) and isinstance(values, Mapping):
        out: dict[str, Any] = {}
        for key in sorted(set(defaults) | set(values), key=str):
            if key not in values:
                out[f"{prefix}{key}"] = None
            elif key not in defaults:
                out[f"{prefix}{key}"] = values[key]
            else:
                out.update(non_default(defaults[key], values[key], f"{prefix}{key}."))
        return out
    return {} if defaults == values else {prefix.rstrip("."): values}


def from_dict(data: Mapping[str, Any], where: str = "params") -> RunSettings:
    """Build RunSettings from a plain mapping (params.yaml), on top of the model's defaults (a registered
    model's paper settings; your own model's generic ones or those its callable carries), rejecting unknown
    keys and wrong types."""
    from lth.core.plugins import is_reference
    from lth.models import MODELS

    if not isinstance(data, Mapping):
        raise LthError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    model = data.get("model", RunSettings.model)
    known = isinstance(model, str) and (model in MODELS or is_reference(model))
    base = defaults_for(model, RunSettings.dataset) if known else RunSettings()
    return build(RunSettings, data, where, base).validate()


def check_data(settings: RunSettings, splits: "Splits") -> None:
    """The checks that need the dataset: it is the one the settings name, in the task they ask for, the batch
    fits the training set, the rewind step lies within training, and the model accepts the data and gives one
    output per class or target. Run before any work, so a bad combination costs nothing."""
    if settings.task not in ("auto", splits.task):
        raise LthError(f"the data of '{settings.dataset}' is prepared for {splits.task}, but the settings ask for "
                       f"task {settings.task} (a stale prepared file? rerun its preparation)")
    num_train, t = len(splits.train_x), settings.train
    if t.batch_size > num_train:
        raise LthError(f"bad batch_size {t.batch_size}: larger than the {num_train} training examples of "
                       f"'{settings.dataset}'")
    per_epoch = num_train // t.batch_size
    total = Step.parse(t.duration).to_iterations(per_epoch)
    rewind = Step.parse(settings.rewind).to_iterations(per_epoch)
    if rewind > total:
        raise LthError(f"rewind step '{settings.rewind}' ({rewind} iterations) is beyond the training length "
                       f"'{t.duration}' ({total} iterations at batch size {t.batch_size} on {num_train} examples)")
    check_model_fits(settings.model, splits.input_shape, splits.num_outputs, settings.dataset)
    if settings.pruning == "nm":
        check_nm_layers(settings, splits.input_shape, splits.num_outputs)
    warmup = Step.parse(t.warmup).to_iterations(per_epoch)
    if warmup > total:
        raise LthError(f"warmup '{t.warmup}' ({warmup} iterations) is longer than the training length "
                       f"'{t.duration}' ({total} iterations): the learning rate would never reach {t.lr}")


def check_nm_layers(settings: RunSettings, input_shape: tuple[int, ...], num_outputs: int) -> None:
    """N:M pruning: every layer it prunes (its kind's rate > 0) has an input size that is a multiple of M."""
    from lth.models import build_model
    from lth.models.layers import prunable_layers
    from lth.pruning.nm import check_nm_shapes, parse_nm

    net = build_model(settings.model, tuple(input_shape), num_outputs, 0)
    weights = dict(net.named_parameters())
    pruned = {name: tuple(weights[name].shape) for name, kind in prunable_layers(net).items()
              if settings.prune.rates.get(kind, 0.0) > 0}
    check_nm_shapes(pruned, parse_nm(settings.prune.nm)[1])


def check_model_fits(model: str, input_shape: tuple[int, ...], num_outputs: int, dataset: str = "the dataset") -> None:
    """One forward pass of a single blank example: an input too small for the model's convolutions and pooling
    (or of the wrong rank) and outputs of the wrong size are named here instead of failing as a shape error
    deep inside training."""
    import torch

    from lth.models import build_model

    shape = "x".join(map(str, input_shape))
    net = build_model(model, tuple(input_shape), num_outputs, 0).eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    except Exception as exc:  # noqa: BLE001 - any failure of the forward pass means the model does not fit
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LthError(f"model '{model}' does not fit {dataset}'s {shape} inputs: {first}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_outputs):
        got = tuple(out.shape)[1:] if isinstance(out, torch.Tensor) else type(out).__name__
        raise LthError(f"model '{model}' gives outputs of shape {got} for {dataset}'s {shape} inputs, expected "
                       f"({num_outputs},): one per class or target; build the output layer with the num_outputs "
                       "the model is given")
