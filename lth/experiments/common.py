"""What every experiment shares: training named arms, its params group, results tables.

A ticket comes from any run the engine wrote: a find-ticket run directory or the DVC workspace
(`lth.runs.run.open_results(...).ticket(round, trial)`). Arms are trained by the core's trainer
(`lth.training.trainer.train_networks`: batched where that pays, pruned weights held at their starting
values), so an experiment trains exactly as a round does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from lth.core.errors import LthError
from lth.runs.run import State, Ticket
from lth.runs.settings import RunSettings

if TYPE_CHECKING:
    from torch import Tensor

    from lth.runs.run import Run

__all__ = ["Arm", "State", "Ticket", "train_arms", "results_only", "with_training", "experiment_params",
           "arms_table", "result_keys", "method_group"]



def result_keys(task) -> list[str]:  # noqa: ANN001 - lth.tasks.base.Task
    """What an experiment keeps of each arm (lth.runs.records names): weights remaining, the task's test
    metrics at the end and at early stop, the early-stop iteration, validation metrics and loss at the end."""
    names = [m.name for m in task.metrics]
    return ["weights_remaining", *(f"end_test_{m}" for m in names), *(f"early_stop_test_{m}" for m in names),
            "early_stop_iteration", *(f"end_val_{m}" for m in names), "end_val_loss"]


@dataclass
class Arm:
    """One network an experiment trains: a name, starting weights, a mask (False = pruned, held at its start value)."""

    name: str
    start: Mapping[str, "Tensor"]
    mask: Mapping[str, "Tensor"]


def train_arms(settings: RunSettings, splits, arms: Sequence[Arm], seed: Optional[int] = None) -> dict[str, dict]:
    """Train every arm with `settings.train` (same data order for all: `seed`, default settings.seed).

    Returns arm name -> its results (`result_keys`), learning curve ('curve') and trained weights ('state').
    """
    from lth.runs.records import round_record
    from lth.pruning.actions import PRUNED_ACTIONS
    from lth.tasks import get_task
    from lth.training.trainer import Network, TrainJob, train_networks

    if len({arm.name for arm in arms}) != len(arms):
        raise LthError(f"internal: arm names must be distinct, got {[arm.name for arm in arms]}")
    seed = settings.seed if seed is None else seed
    networks = [Network(0, arm.name, seed, arm.start, arm.mask) for arm in arms]
    job = TrainJob(settings.model, settings.train, not PRUNED_ACTIONS[settings.mask0_action].frozen)
    trained = train_networks(job, splits, networks)
    task = get_task(splits.task)
    record = round_record(1, networks, trained, task)
    return {entry["arm"]: {**{k: entry[k] for k in result_keys(task)}, "curve": entry["curve"], "state": result.state}
            for entry, result in zip(record["networks"], trained)}


def results_only(results: Mapping[str, dict]) -> dict[str, dict]:
    """Arm results without learning curves and weights: what metrics JSON and tables show."""
    return {name: {k: v for k, v in r.items() if k not in ("curve", "state")} for name, r in results.items()}


def with_training(settings: RunSettings, **changes: Any) -> RunSettings:
    """`settings` with training fields changed (None leaves a value), validated."""
    from lth.runs.settings import replace

    return replace(settings, **{f"train__{k}": v for k, v in changes.items()}).validate()


def experiment_params(run: "Run", name: str, cls: type) -> Any:
    """The `experiments.<name>` group of the workspace's params.yaml as the experiment's settings dataclass
    (`cls`), checked as `lth check-params` checks it."""
    from lth.experiments.settings import workspace_experiments

    path = run.layout.params_file
    group = workspace_experiments(run).get(name)
    if group is None:
        raise LthError(f"{path}: missing 'experiments: {{{name}: ...}}' (the settings of the {name} experiment)")
    if not isinstance(group, cls):
        raise LthError(f"internal: experiments.{name} holds {type(group).__name__}, not {cls.__name__}")
    return group


def method_group(run: "Run", group: str, load: Any, method: str) -> Any:
    """The params.yaml group `group` ('prune_at_init', 'sparse_train') of the workspace read by `load` (its
    settings' loader), for the stage of one of its methods: a method not listed there is an error naming both."""
    from lth.runs.params import read_yaml

    path = run.layout.params_file
    settings = load(read_yaml(path).get(group), f"{path}: {group}")
    if method not in settings.methods:
        raise LthError(f"method '{method}' is not under {group}.methods in {path}: {', '.join(settings.methods)}")
    return settings


def arms_table(title: str, results: Mapping[str, dict], extra: Sequence[str] = ()):
    """A rich table: one row per arm, % weights and the test headline metric (accuracy %, RMSE ...) at the end
    and at early stop."""
    from rich.table import Table

    from lth.tasks import headline_in

    metric = headline_in(next(iter(results.values())))
    label = f"test {metric.label}{f' {metric.unit}' if metric.unit else ''}"
    table = Table(title=title)
    for column in ("arm", "% weights", f"{label} (end)", f"{label} (early stop)", "early-stop it", *extra):
        table.add_column(column, justify="right" if column != "arm" else "left")
    for name, r in results.items():
        table.add_row(name, f"{100 * r['weights_remaining']:.2f}", metric.show(r[f"end_test_{metric.name}"]),
                      metric.show(r[f"early_stop_test_{metric.name}"]), f"{r['early_stop_iteration']:.0f}",
                      *(str(r.get(c, "")) for c in extra))
    return table
