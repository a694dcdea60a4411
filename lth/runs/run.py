"""One run as the round engine sees it: settings, layout, the model's shapes, verified file access, the data.

Both faces build one: `find-ticket` for a run directory (settings.json), each DVC stage for the
workspace (params.yaml); readers (report, experiments, compact) open either with `open_results`.
Every tensor file is checked against the model's shapes when read (and, in a run directory, against
the settings fingerprint), so a mismatched or damaged file is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from lth.core import files
from lth.core.errors import LthError
from lth.runs.layout import Layout
from lth.runs.params import DENSE_ROUND, round_index, round_key
from lth.runs.settings import RunSettings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from lth.datasets import Splits
    from lth.runs.params import PipelineParams

State = dict[str, "Tensor"]


class Reporter(Protocol):
    """Who hears about a run's progress (the CLI's progress bars; silent in a DVC stage)."""

    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None: ...

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None: ...

    def round_finished(self, record: dict, skipped: bool) -> None: ...


class SilentReporter:
    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None:
        pass

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None:
        pass

    def round_finished(self, record: dict, skipped: bool) -> None:
        pass


@dataclass(frozen=True)
class Shape:
    """What a model is built for and how it is judged: the shape of one example, the number of outputs (classes
    or target columns) and the task. Written beside the data (data/prepared/spec.json), so every step that
    builds the model knows it without loading the data."""

    input_shape: tuple[int, ...]
    num_outputs: int
    task: str = "classification"
    dataset: str = ""
    test_size: Optional[int] = field(default=None, compare=False)  # test examples: how finely a metric can tell

    @classmethod
    def of(cls, splits: "Splits", dataset: Optional[str] = None) -> "Shape":
        """The shape of `splits`, under the dataset's name in the settings (default: the data's own name)."""
        return cls(tuple(splits.input_shape), splits.num_outputs, splits.task, dataset or splits.name,
                   int(splits.test_y.shape[0]))

    def to_dict(self) -> dict:
        size = {} if self.test_size is None else {"test_size": self.test_size}
        return {"dataset": self.dataset, "task": self.task, "input_shape": list(self.input_shape),
                "num_outputs": self.num_outputs, **size}

    def write(self, path: Path) -> None:
        """The spec file (data/prepared/spec.json), atomically."""
        files.write_json(path, self.to_dict())

    @classmethod
    def read(cls, path: Path) -> "Shape":
        data = files.read_json(path)
        try:
            size = data.get("test_size")
            return cls(tuple(int(d) for d in data["input_shape"]), int(data["num_outputs"]), str(data["task"]),
                       str(data.get("dataset", "")), int(size) if size is not None else None)
        except (KeyError, TypeError, ValueError):
            raise LthError(f"{path} is not a dataset spec (dataset, task, input_shape, num_outputs); delete it and "
                           "rerun") from None


@dataclass
class Ticket:
    """A ticket as one round of a run left it: the settings that found it, θ0, its start, mask and trained weights."""

    settings: RunSettings  # one trial's settings (its own seed)
    round: int
    init: State
    start: State
    mask: State
    final: State
    shape: Optional[Shape] = None  # what its data gave the model (None: the dataset registry's)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example of the data the ticket was found on."""
        from lth.datasets import get_dataset_spec

        return self.shape.input_shape if self.shape else tuple(get_dataset_spec(self.settings.dataset).input_shape)


@dataclass
class Run:
    """A run's settings and layout, and what its steps share.

    `rounds` are the pruning rounds after the dense r00, in chain order. `splits` is the dataset on the
    training device; when not given it is read from the layout's prepared file. `trainer` trains a
    round's networks (lth.training.trainer.train_networks, or a distributed session's).
    """

    settings: RunSettings
    layout: Layout
    rounds: list[str] = field(default_factory=list)
    device: str = "auto"
    checkpoint_every: str = "0it"
    splits: Optional["Splits"] = None
    trainer: Optional[Callable[..., list]] = None
    reporter: Reporter = field(default_factory=SilentReporter)
    params: Optional["PipelineParams"] = None  # the workspace's params.yaml (dataset dir, supermask, processes)

    @property
    def trials(self) -> range:
        return range(self.settings.trials)

    def trial_settings(self, trial: int) -> RunSettings:
        return self.settings.for_trial(trial)

    def previous(self, key: str) -> str:
        """The round `key` continues from (its chain is declared in params.yaml or implied by --rounds)."""
        if key not in self.rounds:
            raise LthError(f"round '{key}' is not declared under 'rounds' in params.yaml; "
                           f"declared: {', '.join(self.rounds) or 'none'}")
        return round_key(round_index(key) - 1)

    @cached_property
    def shape(self) -> Shape:
        """What the model is built for: the given data's, else the spec written beside the data (no data loaded),
        else (a run made before specs were written) the dataset registry's."""
        from lth.datasets import get_dataset_spec

        if self.splits is not None:
            return Shape.of(self.splits)
        if self.layout.prepared_spec.is_file():
            shape = Shape.read(self.layout.prepared_spec)
            if shape.dataset != self.settings.dataset:
                raise LthError(f"{self.layout.prepared_spec} describes dataset '{shape.dataset}', not "
                               f"'{self.settings.dataset}' (a stale file?); delete it and rerun")
            return shape
        spec = get_dataset_spec(self.settings.dataset)
        return Shape(tuple(spec.input_shape), spec.num_outputs, spec.task, spec.name)

    @cached_property
    def template(self) -> "nn.Module":
        """The model as built for this run's data (seed 0): what its prunable layers, shapes and units are."""
        from lth.models import build_model

        return build_model(self.settings.model, self.shape.input_shape, self.shape.num_outputs, 0)

    @cached_property
    def kinds(self) -> dict[str, str]:
        """Prunable layer -> 'conv' | 'fc' | 'output'."""
        from lth.models.layers import prunable_layers

        return prunable_layers(self.template)

    @cached_property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every state entry -> its shape."""
        return {k: tuple(v.shape) for k, v in self.template.state_dict().items()}

    def units(self) -> list:
        """The model's units for structured pruning (lth.pruning.structured.unit_layers)."""
        from lth.pruning.structured import unit_layers

        return unit_layers(self.template, self.kinds)

    # --- files ---------------------------------------------------------------------------------------------

    def load_weights(self, path: Path) -> State:
        return files.load_tensors(path, "weights", self.settings.model, self.shapes, self.layout.readable)

    def load_mask(self, path: Path) -> State:
        shapes = {name: self.shapes[name] for name in self.kinds}
        return files.load_tensors(path, "mask", self.settings.model, shapes, self.layout.readable)

    def load_scores(self, path: Path) -> State:
        return files.load_tensors(path, "scores", self.settings.model, None, self.layout.readable)

    def save(self, path: Path, kind: str, tensors: State, **meta: Any) -> None:
        if self.layout.fingerprint is not None:
            meta["settings"] = self.layout.fingerprint
        files.save_tensors(path, kind, self.settings.model, tensors, **meta)

    def weights(self, directory: Path, trial: int) -> State:
        return self.load_weights(Layout.trial_file(directory, trial))

    def mask(self, directory: Path, trial: int) -> State:
        return self.load_mask(Layout.trial_file(directory, trial))

    # --- data ----------------------------------------------------------------------------------------------

    def data(self) -> "Splits":
        """The dataset on the training device: the one given, or the prepared file (checked against the settings)."""
        if self.splits is None:
            from lth.core import timing
            from lth.datasets import Splits
            from lth.runs.settings import check_data
            from lth.training.device import resolve_device

            with timing.timed("data"):
                splits = Splits.from_state(files.load_torch(self.layout.prepared, "prepared dataset"))
                check_data(self.settings, splits)
                self.splits = splits.to(resolve_device(self.device))
        return self.splits

    # --- results -------------------------------------------------------------------------------------------

    def finished_rounds(self) -> list[str]:
        """Rounds whose metrics are written (r00 first), among the declared ones."""
        return [key for key in [DENSE_ROUND, *self.rounds] if self.layout.round_metrics(key).is_file()]

    def record(self, key: str) -> dict:
        """Round `key`'s record (lth.runs.records), in today's format whatever version wrote it."""
        from lth.runs.records import read_record

        return read_record(self.layout.round_metrics(key))

    def ticket(self, key: str, trial: int = 0) -> Ticket:
        """Round `key` of trial `trial`; the round must be finished."""
        if not 0 <= trial < self.settings.trials:
            raise LthError(f"bad trial {trial}: {self.layout.root} has trials 0..{self.settings.trials - 1}")
        if key not in self.finished_rounds():
            raise LthError(f"round {key} of {self.layout.root} is not finished; finished rounds: "
                           f"{', '.join(self.finished_rounds()) or 'none'}")
        dirs = {name: self.layout.round_dir(key, name) for name in ("start", "mask", "final")}
        return Ticket(self.trial_settings(trial), round_index(key), self.weights(self.layout.theta0, trial),
                      self.weights(dirs["start"], trial), self.mask(dirs["mask"], trial),
                      self.weights(dirs["final"], trial), self.shape)


def open_workspace(root: str | Path = ".", **options: Any) -> Run:
    """The DVC workspace at `root` as a Run, from its params.yaml."""
    from lth.core import timing
    from lth.runs.params import load_params

    timing.mark("ready")  # a stage has imported what it runs (benchmarks/pipeline_profile.py)
    layout = Layout(Path(root))
    params = load_params(layout.params_file)
    return Run(params.settings, layout, list(params.rounds), params.device, params.checkpoint_every,
               params=params, **options)


def open_run_dir(root: str | Path, **options: Any) -> Run:
    """A find-ticket run directory as a Run, from its settings.json; its rounds are those finished."""
    from lth.runs.settings import from_dict

    layout = Layout(Path(root))
    if not layout.settings_file.is_file():
        raise LthError(f"{root} is not a find-ticket run directory (no settings.json)")
    recorded = files.read_json(layout.settings_file)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("settings"), dict):
        raise LthError(f"{layout.settings_file} holds no settings")
    settings = from_dict(recorded["settings"], where=str(layout.settings_file))
    layout = Layout.of_run(layout.root, settings)
    return Run(settings, layout, [key for key in layout.finished_round_keys() if key != DENSE_ROUND], **options)


def open_results(path: str | Path, **options: Any) -> Run:
    """A run directory (settings.json) or a DVC workspace (params.yaml): whichever `path` is."""
    layout = Layout(Path(path))
    if layout.settings_file.is_file():
        return open_run_dir(path, **options)
    if layout.params_file.is_file():
        return open_workspace(path, **options)
    raise LthError(f"{path} is neither a find-ticket run directory (no settings.json) nor a DVC workspace "
                   "(no params.yaml)")
