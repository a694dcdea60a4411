"""The settings of every research experiment (params.yaml `experiments.<name>`) and their checks, without torch.

Why one module apart from the experiments: `lth check-params` and every pipeline stage check the whole
`experiments` section before anything trains (a typo must not surface after an hour, in the last stage),
and they must do it without importing the experiments themselves (torch, and code a training stage's
results do not depend on, which would rerun it whenever an experiment changes). Each group's `check`
uses the settings' own validators and names the key path of the first bad value and how to fix it:
`params.yaml: experiments.optimizers.variants.adam-warmup.warmup: ...`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from lth.core.errors import LthError, unknown_choice
from lth.core.durations import Step
from lth.runs.settings import RunSettings, replace

NOISES = {
    "gaussian": "normal noise",
    "uniform": "uniform noise of the same variance",
    "laplace": "Laplace noise of the same variance (heavier tails)",
}
COMBINATIONS = {
    "union": "weights kept by either parent",
    "intersection": "weights kept by both parents",
}
REMOVED_VALUES = {
    "zero": "removed ticket weights are zero and frozen",
    "reinit": "removed ticket weights are frozen at a fresh draw from the model's init distribution",
}
PAIRS = {
    "data-order": "same rewound weights, two data orders (stability to SGD noise)",
    "init": "two initialisations, each rewound the same way, two data orders (the contrast)",
}
OWN = "own"  # the run's own rewind point: the round's start weights


@dataclass(frozen=True)
class Context:
    """What a group is checked against: the pipeline's run settings and declared rounds, where the group sits
    (for messages), and the iterations of one epoch when the dataset's size is known (to fit lengths)."""

    run: RunSettings
    rounds: tuple[str, ...]
    where: str
    per_epoch: Optional[int] = None

    def at(self, *keys: str) -> str:
        return ".".join((self.where, *keys))


def _at(where: str, check: Callable[[], Any]) -> Any:
    """Run `check`; its LthError is re-raised naming the key path `where` first."""
    try:
        return check()
    except LthError as exc:
        raise LthError(f"{where}: {exc}") from None


def _step(value: str, where: str, allow_zero: bool = True) -> Step:
    step = _at(where, lambda: Step.parse(value))
    if not allow_zero and step == Step():
        raise LthError(f"{where}: must be at least one iteration, got '{value}'")
    return step


def _beyond(point: Step, length: Step, per_epoch: Optional[int]) -> Optional[bool]:
    """Whether `point` lies after the end of a training of `length` (None: cannot tell without the epoch size)."""
    if per_epoch is not None:
        return point.to_iterations(per_epoch) > length.to_iterations(per_epoch)
    if point.epochs == length.epochs == 0 or point.iterations == length.iterations == 0:
        return point > length
    return None


def _within(point: str, length: str, where: str, what: str, ctx: Context) -> None:
    """An error at `where` when the step `point` lies beyond a training of `length`."""
    if _beyond(Step.parse(point), Step.parse(length), ctx.per_epoch):
        epoch = f" ({ctx.per_epoch} iterations per epoch)" if ctx.per_epoch else ""
        raise LthError(f"{where}: {what} '{point}' is beyond the training length '{length}'{epoch}; give a shorter "
                       f"{what} or a longer duration")


def _round(value: str, ctx: Context, pruned: bool = False) -> None:
    declared = ("r00", *ctx.rounds)
    if value not in declared or (pruned and value == "r00"):
        valid = [r for r in declared if not (pruned and r == "r00")]
        raise LthError(f"{ctx.at('round')}: {value!r} is not a declared{' pruned' if pruned else ''} round; "
                       f"valid: {', '.join(valid) or 'none'}")


def _training(duration: str, eval_every: str, ctx: Context) -> None:
    if duration:
        _step(duration, ctx.at("duration"), allow_zero=False)
    if eval_every:
        _step(eval_every, ctx.at("eval_every"), allow_zero=False)


def _choice(value: str, choices: Mapping[str, str], label: str, where: str) -> None:
    if value not in choices:
        raise LthError(f"{where}: {unknown_choice(label, value, choices)}")


@dataclass(frozen=True)
class TransferSettings:
    """params.yaml `experiments.transfer`: which pipeline ticket, and the target dataset and training."""

    round: str = "r05"
    trial: int = 0
    dataset: str = ""  # '' : the run's own dataset
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    duration: str = "10ep"
    eval_every: str = "1ep"

    def check(self, ctx: Context) -> None:
        _round(self.round, ctx)
        _trial(self.trial, ctx)
        if self.dataset:
            _at(ctx.at("dataset"), lambda: replace(ctx.run, dataset=self.dataset, task="auto").validate())
        _at(ctx.at("optimizer"), lambda: replace(ctx.run, train__optimizer=self.optimizer).validate())
        if not self.lr > 0:
            raise LthError(f"{ctx.at('lr')}: must be > 0, got {self.lr}")
        if self.momentum < 0:
            raise LthError(f"{ctx.at('momentum')}: must be >= 0, got {self.momentum}")
        _training(self.duration, self.eval_every, ctx)


@dataclass(frozen=True)
class TransferDomainsSettings:
    """params.yaml `experiments.transfer_domains`: the pipeline's tickets at `rounds` (its trial `trial`) trained on
    each target dataset (another domain or task) `trials` times, beside random re-init and the dense network:
    the transfer curve. Training is the pipeline's `train` with the length given here."""

    targets: tuple[str, ...] = ("tts-digits", "mnist-5k-rotation")
    rounds: tuple[str, ...] = ("r02", "r05", "r09", "r12")
    trial: int = 0
    trials: int = 2
    duration: str = "20ep"
    eval_every: str = "1ep"

    def check(self, ctx: Context) -> None:
        if not self.targets:
            raise LthError(f"{ctx.at('targets')}: list at least one target dataset")
        for i, target in enumerate(self.targets):
            _at(ctx.at(f"targets[{i}]"), lambda: replace(ctx.run, dataset=target, task="auto").validate())
            _same_inputs(ctx.run.dataset, target, ctx.at(f"targets[{i}]"))
        if not self.rounds:
            raise LthError(f"{ctx.at('rounds')}: list at least one pruned round")
        declared = ctx.rounds
        for i, key in enumerate(self.rounds):
            if key not in declared:
                raise LthError(f"{ctx.at(f'rounds[{i}]')}: {key!r} is not a declared pruned round; valid: "
                               f"{', '.join(declared) or 'none'}")
        if len(set(self.rounds)) != len(self.rounds):
            raise LthError(f"{ctx.at('rounds')}: a round is listed twice: {', '.join(self.rounds)}")
        _trial(self.trial, ctx)
        if self.trials < 1:
            raise LthError(f"{ctx.at('trials')}: must be at least 1, got {self.trials}")
        _training(self.duration, self.eval_every, ctx)


def _same_inputs(source: str, target: str, where: str) -> None:
    """Registered source and target datasets whose examples differ in shape: an error naming both shapes."""
    from lth.datasets import DATASETS

    a, b = DATASETS.get(source), DATASETS.get(target)
    if a is not None and b is not None and tuple(a.input_shape) != tuple(b.input_shape):
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        raise LthError(f"{where}: '{target}' has {shape(b.input_shape)} inputs but the tickets were found on "
                       f"'{source}' ({shape(a.input_shape)} inputs): input shapes must match")


@dataclass(frozen=True)
class CombineSettings:
    """params.yaml `experiments.combine`: parent A is the pipeline's ticket at `round`; parent B is found by
    the stage itself (find-ticket with the pipeline's settings, seed `seed_b` and criterion `criterion_b`)."""

    round: str = "r05"
    seed_b: int = 1
    criterion_b: str = "large_final"
    how: tuple[str, ...] = ("union", "intersection")

    def check(self, ctx: Context) -> None:
        _round(self.round, ctx, pruned=True)
        _at(ctx.at("seed_b"), lambda: replace(ctx.run, seed=self.seed_b).validate())
        _at(ctx.at("criterion_b"), lambda: replace(ctx.run, criterion=self.criterion_b).validate())
        if not self.how:
            raise LthError(f"{ctx.at('how')}: give at least one combination: {', '.join(COMBINATIONS)}")
        for how in self.how:
            _choice(how, COMBINATIONS, "combination", ctx.at("how"))


@dataclass(frozen=True)
class RemovalSettings:
    """params.yaml `experiments.removal`."""

    round: str = "r05"
    trial: int = 0
    max_tickets: int = 3
    margin: float = 0.02
    removed: str = "zero"
    duration: str = "10ep"
    eval_every: str = "1ep"

    def check(self, ctx: Context) -> None:
        _round(self.round, ctx, pruned=True)
        _trial(self.trial, ctx)
        if self.max_tickets < 1:
            raise LthError(f"{ctx.at('max_tickets')}: must be >= 1, got {self.max_tickets}")
        if not 0 <= self.margin < 1:
            raise LthError(f"{ctx.at('margin')}: must be in [0, 1) (how much worse than dense a ticket may be), "
                           f"got {self.margin}")
        _choice(self.removed, REMOVED_VALUES, "removed-weights value", ctx.at("removed"))
        _training(self.duration, self.eval_every, ctx)


@dataclass(frozen=True)
class Variant:
    """Overrides of one sweep point; lr 0 keeps the model's learning rate."""

    optimizer: str = "adam"
    lr: float = 0.0
    momentum: float = 0.0
    warmup: str = "0it"
    rewind: str = "0it"

    def apply(self, settings: RunSettings) -> RunSettings:
        rewinding = Step.parse(self.rewind) != Step()
        return replace(settings, train__optimizer=self.optimizer, train__lr=self.lr or None,
                       train__momentum=self.momentum, train__warmup=self.warmup, train__nesterov=False,
                       rewind=self.rewind, mask1_action="rewind" if rewinding else "reset").validate()

    def check(self, base: RunSettings, ctx: Context, where: str) -> None:
        """Each override on its own (the first bad one named by its key), then the variant's whole training."""
        _at(f"{where}.optimizer", lambda: replace(base, train__optimizer=self.optimizer).validate())
        if self.lr < 0:
            raise LthError(f"{where}.lr: must be >= 0 (0 keeps the model's learning rate), got {self.lr}")
        if self.momentum < 0:
            raise LthError(f"{where}.momentum: must be >= 0, got {self.momentum}")
        length = base.train.duration
        for key in ("warmup", "rewind"):
            _step(getattr(self, key), f"{where}.{key}")
            _within(getattr(self, key), length, f"{where}.{key}", key, ctx)
        _at(where, lambda: self.apply(base))


DEFAULT_VARIANTS: dict[str, Variant] = {
    "radam-no-warmup": Variant("radam"),
    "adam-no-warmup": Variant("adam"),
    "adam-warmup": Variant("adam", warmup="2ep"),
    "sgd-warmup": Variant("sgd", lr=0.05, momentum=0.9, warmup="2ep"),
    "adam-rewind": Variant("adam", rewind="1ep"),
}


@dataclass(frozen=True)
class OptimizersSettings:
    """params.yaml `experiments.optimizers`: pruning rounds (after the dense r00) and training length of every
    variant, and the variants."""

    rounds: int = 3
    duration: str = "5ep"
    eval_every: str = "1ep"
    variants: dict[str, dict] = field(default_factory=dict)  # name -> Variant fields; empty: DEFAULT_VARIANTS

    def parsed_variants(self, where: str = "experiments.optimizers.variants") -> dict[str, Variant]:
        from lth.core.config import build

        if not self.variants:
            return dict(DEFAULT_VARIANTS)
        return {name: build(Variant, spec or {}, f"{where}.{name}") for name, spec in self.variants.items()}

    def check(self, ctx: Context) -> None:
        if self.rounds < 1:
            raise LthError(f"{ctx.at('rounds')}: must be >= 1, got {self.rounds}")
        _training(self.duration, self.eval_every, ctx)
        base = replace(ctx.run, trials=1, controls=(), train__duration=self.duration or None,
                       train__eval_every=self.eval_every or None)
        for name, variant in self.parsed_variants(ctx.at("variants")).items():
            variant.check(base, ctx, ctx.at("variants", name))


@dataclass(frozen=True)
class PerturbSettings:
    """params.yaml `experiments.perturb` (the network starts from the pipeline's θ0, trial 0)."""

    fraction: float = 0.2
    noise: str = "gaussian"
    scale: float = 1.0
    criterion: str = "large_final"
    duration: str = "10ep"
    eval_every: str = "1ep"

    def validate(self) -> "PerturbSettings":
        from lth.pruning.criteria import get_criterion

        if not 0 < self.fraction < 1:
            raise LthError(f"bad fraction {self.fraction}: must be in (0, 1)")
        if self.noise not in NOISES:
            raise unknown_choice("noise", self.noise, NOISES)
        if not self.scale >= 0:
            raise LthError(f"bad scale {self.scale}: must be >= 0")
        if get_criterion(self.criterion).gradient_at:
            raise LthError(f"criterion '{self.criterion}' needs data; per-epoch masks use weight-only criteria "
                           "such as large_final, movement, magnitude_increase")
        return self

    def check(self, ctx: Context) -> None:
        for key in ("fraction", "noise", "scale", "criterion"):  # the first bad one, named by its key
            _at(ctx.at(key), dataclasses.replace(PerturbSettings(), **{key: getattr(self, key)}).validate)
        _training(self.duration, self.eval_every, ctx)


@dataclass(frozen=True)
class StabilitySettings:
    """params.yaml `experiments.stability`: which pipeline ticket, which rewind points, the pair and the line."""

    round: str = "r05"
    trial: int = 0
    rewinds: tuple[str, ...] = ("0it", "100it", "500it")
    pair: str = "data-order"
    points: int = 30
    duration: str = ""  # empty: the run's own training length
    eval_every: str = ""

    def check(self, ctx: Context) -> None:
        _round(self.round, ctx)
        _trial(self.trial, ctx)
        _at(ctx.at("pair"), lambda: check_line(self.pair, self.points))
        _training(self.duration, self.eval_every, ctx)
        length = self.duration or ctx.run.train.duration
        for i, point in enumerate(self.rewinds):
            if point != OWN:
                _step(point, ctx.at(f"rewinds[{i}]"))
                _within(point, length, ctx.at(f"rewinds[{i}]"), "rewind point", ctx)


def check_line(pair: str, points: int) -> None:
    if pair not in PAIRS:
        raise unknown_choice("pair", pair, PAIRS)
    if points < 3:
        raise LthError(f"bad points {points}: the line needs at least 3 points (both ends and one between)")


def _trial(trial: int, ctx: Context) -> None:
    if not 0 <= trial < ctx.run.trials:
        raise LthError(f"{ctx.at('trial')}: {trial} is not a trial of the pipeline, which has trials "
                       f"0..{ctx.run.trials - 1}")


SETTINGS: dict[str, type] = {
    "transfer": TransferSettings,
    "transfer_domains": TransferDomainsSettings,
    "combine": CombineSettings,
    "removal": RemovalSettings,
    "optimizers": OptimizersSettings,
    "perturb": PerturbSettings,
    "stability": StabilitySettings,
}


def iterations_per_epoch(dataset: str, batch_size: int) -> Optional[int]:
    """One epoch's optimizer steps on a registered dataset whose training split's size is known; else None."""
    from lth.datasets import DATASETS

    spec = DATASETS.get(dataset)
    size = getattr(spec, "train_size", None)
    return size // batch_size if size and batch_size <= size else None


def check_experiments(experiments: Any, run: RunSettings, rounds: list[str], where: str) -> dict[str, Any]:
    """Every group of params.yaml's `experiments` section, built and checked; name -> its settings.

    An LthError names the first bad value's key path (`where`.experiments.NAME.KEY) and the fix."""
    from lth.core.config import build

    if experiments is None:
        return {}
    if not isinstance(experiments, Mapping):
        raise LthError(f"{where}: experiments: expected a mapping of experiment name -> settings, got {experiments!r}")
    per_epoch = iterations_per_epoch(run.dataset, run.train.batch_size)
    groups = {}
    for name, group in experiments.items():
        if name not in SETTINGS:
            raise LthError(f"{where}: experiments: {unknown_choice('experiment', str(name), SETTINGS)}")
        settings = build(SETTINGS[name], group if group is not None else {}, f"{where}: experiments.{name}")
        settings.check(Context(run, tuple(rounds), f"{where}: experiments.{name}", per_epoch))
        groups[name] = settings
    return groups


def workspace_experiments(run: Any) -> dict[str, Any]:
    """The checked `experiments` groups of a DVC workspace (lth.runs.run.Run from its params.yaml)."""
    from lth.runs.params import read_yaml

    path = run.layout.params_file
    return check_experiments(read_yaml(path).get("experiments"), run.settings, list(run.rounds), str(path))
