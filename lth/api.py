"""The Python API: find tickets and read results from a script or a notebook, with your own model and data.

    import lth

    records = lth.find_ticket("lenet-300-100", "mnist-5k", rounds=3, out="runs/demo", train={"duration": "2ep"})
    run = lth.load_run("runs/demo")
    run.rounds            # pandas: one row per round and arm (mean, min, max over trials)
    run.mask("r03")       # {layer: bool tensor}

A model is a registered name, `package.module:callable`, `path/to/file.py:callable`, or the callable itself
(`(input_shape, num_outputs) -> nn.Module`, a module-level function or class); a dataset is a registered
name, a `.npz`/`.pt` file, `package.module:callable`, or a dict of arrays (x_train, y_train, x_test, y_test
and optionally x_val, y_val). Settings are those of params.yaml (`lth list settings`), top-level ones as
keywords and groups as dicts (`train={"lr": 1e-3}`); they are validated as everywhere else. The API runs
the same round engine as `lth find-ticket` and writes the same run directory, so the CLI, the report and
the experiments read its results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Union

from lth.core.errors import LthError

if TYPE_CHECKING:
    import pandas as pd
    from torch import Tensor, nn

    from lth.runs.run import Run

__all__ = ["Results", "find_ticket", "load_run", "register_dataset", "register_model"]

Model = Union[str, Callable[..., Any]]
Dataset = Union[str, Mapping[str, Any]]


def register_model(name: str, factory: Callable[..., Any], defaults: Optional[Mapping[str, Any]] = None) -> str:
    """Make `factory(input_shape, num_outputs) -> nn.Module` the model `name` in this process (settings, CLI
    commands run in-process and the API then know it); `defaults` as a callable's `lth_defaults`. Returns name."""
    from lth.models import register_model as register

    register(name, factory, defaults)
    return name


def register_dataset(name: str, arrays: Mapping[str, Any], task: str = "auto") -> str:
    """Make arrays (x_train, y_train, x_test, y_test[, x_val, y_val]) the dataset `name` in this process."""
    from lth.datasets import register_dataset as register

    register(name, arrays, task=task)
    return name


def model_name(model: Model) -> str:
    """A model's name in settings: a string as it is; a callable is registered under `module:qualname`."""
    if isinstance(model, str):
        return model
    if not callable(model):
        raise LthError(f"model must be a name or a callable (input_shape, num_outputs) -> nn.Module, got "
                       f"{type(model).__name__}")
    qualname = getattr(model, "__qualname__", "")
    if not qualname or "<" in qualname:
        raise LthError(f"model {qualname or model!r} is a lambda or a local function: give a module-level function or "
                       "class, whose name identifies the model in the run's settings")
    return register_model(f"{model.__module__}:{qualname}", model)


def dataset_name(dataset: Dataset, task: str) -> str:
    """A dataset's name in settings: a string as it is; arrays are registered under a checksum of their content."""
    if isinstance(dataset, str):
        return dataset
    if not isinstance(dataset, Mapping):
        raise LthError(f"dataset must be a name, a file, package.module:callable or a dict of arrays, got "
                       f"{type(dataset).__name__}")
    from lth.datasets.arrays import dataset_name as named

    return register_dataset(named(dataset), dataset, task)


def settings_for(model: str, dataset: str, settings: Mapping[str, Any]):  # noqa: ANN201 - RunSettings
    """RunSettings: the model's defaults, with `settings` (params.yaml's names and groups) on top, validated."""
    from lth.core.config import build
    from lth.runs.settings import RunSettings, defaults_for

    return build(RunSettings, {"model": model, "dataset": dataset, **settings}, "lth.find_ticket",
                 defaults_for(model, dataset)).validate()


def find_ticket(model: Model, dataset: Dataset, *, rounds: int = 20, out: Optional[str | Path] = None,
                dataset_dir: str | Path = "data/datasets", device: str = "auto", progress: bool = False,
                checkpoint_every: str = "0it", **settings: Any) -> list[dict]:
    """Iterative pruning: the dense round r00 and `rounds` pruning rounds, into the run directory `out` (default
    runs/MODEL-DATASET-CRITERION-seedN), resumable as the CLI's; returns the round records (lth.runs.records).

    `settings`: params.yaml's settings, e.g. `criterion="movement"`, `trials=3`, `controls=["reinit"]`,
    `task="regression"`, `train={"lr": 1e-3, "duration": "2ep"}`, `prune={"rates": {"fc": 0.3}}`."""
    from lth.datasets import load_dataset
    from lth.steps.rounds import run_rounds
    from lth.training.device import resolve_device
    from lth.ui import ProgressReporter, run_name

    task = settings.get("task", "auto")
    chosen = settings_for(model_name(model), dataset_name(dataset, task), settings)
    splits = load_dataset(chosen.dataset, dataset_dir, chosen.task).to(resolve_device(device))
    out = Path(out) if out is not None else Path("runs") / run_name(chosen.model, chosen.dataset, chosen.criterion,
                                                                    f"seed{chosen.seed}")
    if not progress:
        return run_rounds(chosen, rounds, out, splits, checkpoint_every=checkpoint_every)
    with ProgressReporter(quiet=False) as reporter:
        return run_rounds(chosen, rounds, out, splits, reporter, checkpoint_every=checkpoint_every)


def load_run(path: str | Path, model: Optional[Model] = None) -> "Results":
    """The results of a find-ticket run directory (or a DVC workspace). A run whose model was a callable given in
    Python needs it again (`model=make_net`) to rebuild networks; tables and masks do not."""
    from lth.runs.run import open_results

    if model is not None and not isinstance(model, str):
        model_name(model)
    return Results(open_results(path))


def _round_key(round: int | str) -> str:
    from lth.runs.params import round_index, round_key

    return round_key(round) if isinstance(round, int) else round_key(round_index(round))


@dataclass
class Results:
    """A run's results as pandas frames and tensors; the same files the report and the CLI read."""

    run: "Run" = field(repr=False)

    @property
    def path(self) -> Path:
        return self.run.layout.root

    @property
    def settings(self) -> dict:
        """Every setting of the run (params.yaml's names)."""
        return self.run.settings.to_dict()

    @cached_property
    def records(self) -> list[dict]:
        """Each finished round's record: every network's metrics, per-layer counts and learning curve."""
        return [self.run.record(key) for key in self.run.finished_rounds()]

    @property
    def task(self) -> str:
        from lth.runs.records import task_of

        return task_of(self.records[0]).name if self.records else self.run.shape.task

    @property
    def networks(self) -> "pd.DataFrame":
        """One row per round, trial and arm: weights remaining, test metrics at the end and at early stop, ..."""
        import pandas as pd

        from lth.steps.summary import network_columns, network_rows, records_task

        return pd.DataFrame(network_rows(self.records), columns=network_columns(records_task(self.records)))

    @property
    def rounds(self) -> "pd.DataFrame":
        """One row per round and arm: the mean, min and max over trials of each metric (`early_stop_test_acc_mean`)."""
        from lth.report.tables import arm_frame
        from lth.steps.summary import records_task

        return arm_frame(self.networks.assign(run=str(self.path)), records_task(self.records)).drop(columns="run")

    @property
    def curves(self) -> "pd.DataFrame":
        """Learning curves, long: one row per round, trial, arm and evaluation (iteration, losses, metrics)."""
        import pandas as pd

        rows = [{"round": r["round"], "trial": n["trial"], "arm": n["arm"], **point}
                for r in self.records for n in r["networks"] for point in n["curve"]]
        return pd.DataFrame(rows)

    @property
    def layers(self) -> "pd.DataFrame":
        """Per round and prunable layer of trial 0's ticket: weights kept, total and the fraction remaining."""
        import pandas as pd

        from lth.steps.summary import layer_rows

        return pd.DataFrame(layer_rows(self.records))

    def mask(self, round: int | str, trial: int = 0) -> dict[str, "Tensor"]:
        """The ticket's mask of `round` (True: kept), per prunable layer."""
        return self.run.mask(self.run.layout.round_dir(_round_key(round), "mask"), trial)

    def weights(self, round: int | str, trial: int = 0, which: str = "final") -> dict[str, "Tensor"]:
        """The ticket's weights of `round`: 'final' (trained) or 'start' (rewound, before training)."""
        if which not in ("final", "start"):
            raise LthError(f"bad which '{which}': 'final' (trained) or 'start' (rewound)")
        return self.run.weights(self.run.layout.round_dir(_round_key(round), which), trial)

    def network(self, round: int | str, trial: int = 0, which: str = "final") -> "nn.Module":
        """The ticket of `round` as a module (pruned weights exactly zero), in eval mode on the CPU."""
        from lth.core.masks import apply_mask
        from lth.models import build_model

        net = build_model(self.run.settings.model, self.run.shape.input_shape, self.run.shape.num_outputs, 0)
        net.load_state_dict(apply_mask(self.weights(round, trial, which), self.mask(round, trial)))
        return net.eval()
