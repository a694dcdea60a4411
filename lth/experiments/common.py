"""What every experiment shares: training named arms, its params group, results tables.

A ticket comes from any run the engine wrote: a find-ticket run directory or the DVC workspace
(`lth.engine.run.open_results(...).ticket(round, trial)`). Arms are trained by the core's trainer
(`lth.training.trainer.train_networks`: batched where that pays, pruned weights held at their starting
values), so an experiment trains exactly as a round does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from lth.core.errors import LthError
from lth.engine.run import State, Ticket
from lth.engine.settings import RunSettings

if TYPE_CHECKING:
    from torch import Tensor

    from lth.engine.run import Run

__all__ = ["Arm", "State", "Ticket", "train_arms", "results_only", "with_training", "experiment_params",
           "arms_table"]

RESULT_KEYS = ("weights_remaining", "test_acc", "early_stop_test_acc", "early_stop_iteration", "val_acc",
               "val_loss")


@dataclass
class Arm:
    """One network an experiment trains: a name, starting weights, a mask (False = pruned, held at its start value)."""

    name: str
    start: Mapping[str, "Tensor"]
    mask: Mapping[str, "Tensor"]


def train_arms(settings: RunSettings, splits, arms: Sequence[Arm], seed: Optional[int] = None) -> dict[str, dict]:
    """Train every arm with `settings.train` (same data order for all: `seed`, default settings.seed).

    Returns arm name -> its results (RESULT_KEYS), learning curve ('curve') and trained weights ('state').
    """
    from lth.engine.records import round_record
    from lth.pruning.actions import PRUNED_ACTIONS
    from lth.training.trainer import Network, TrainJob, train_networks

    if len({arm.name for arm in arms}) != len(arms):
        raise LthError(f"internal: arm names must be distinct, got {[arm.name for arm in arms]}")
    seed = settings.seed if seed is None else seed
    networks = [Network(0, arm.name, seed, arm.start, arm.mask) for arm in arms]
    job = TrainJob(settings.model, settings.train, not PRUNED_ACTIONS[settings.mask0_action].frozen)
    trained = train_networks(job, splits, networks)
    record = round_record(1, networks, trained)
    return {entry["arm"]: {**{k: entry[k] for k in RESULT_KEYS}, "curve": entry["curve"], "state": result.state}
            for entry, result in zip(record["networks"], trained)}


def results_only(results: Mapping[str, dict]) -> dict[str, dict]:
    """Arm results without learning curves and weights: what metrics JSON and tables show."""
    return {name: {k: v for k, v in r.items() if k not in ("curve", "state")} for name, r in results.items()}


def with_training(settings: RunSettings, **changes: Any) -> RunSettings:
    """`settings` with training fields changed (None leaves a value), validated."""
    from lth.engine.settings import replace

    return replace(settings, **{f"train__{k}": v for k, v in changes.items()}).validate()


def experiment_params(run: "Run", name: str, cls: type) -> Any:
    """The `experiments.<name>` group of the workspace's params.yaml as the experiment's settings dataclass."""
    from lth.core.config import build
    from lth.engine.params import read_yaml

    path = run.layout.params_file
    group = (read_yaml(path).get("experiments") or {}).get(name)
    if group is None:
        raise LthError(f"{path}: missing 'experiments: {{{name}: ...}}' (the settings of the {name} experiment)")
    return build(cls, group, f"{path}: experiments.{name}")


def arms_table(title: str, results: Mapping[str, dict], extra: Sequence[str] = ()):
    """A rich table: one row per arm, % weights and test accuracy at the end and at early stop."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("arm", "% weights", "test acc (end)", "test acc (early stop)", "early-stop it", *extra):
        table.add_column(column, justify="right" if column != "arm" else "left")
    for name, r in results.items():
        table.add_row(name, f"{r['weights_remaining']:.2f}", f"{100 * r['test_acc']:.2f}",
                      f"{100 * r['early_stop_test_acc']:.2f}", f"{r['early_stop_iteration']:.0f}",
                      *(str(r.get(c, "")) for c in extra))
    return table
