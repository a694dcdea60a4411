"""What every experiment shares: reading a finished ticket, training named arms, params, results tables.

A ticket comes from either face of the core: a `find-ticket` run directory (`ticket_from_run`) or the
DVC pipeline's round artifacts `data/rounds/rNN/{start,mask,final}/trial-T.pt` + `data/init/theta0`
(`ticket_from_pipeline`). Arms are trained by the core's `lth.engine.rounds.train_networks` (batched where
that pays, pruned weights held at their starting values), so an experiment trains exactly as a round does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from torch import Tensor

from lth.core import files as artifacts
from lth.core.errors import LthError
from lth.engine.settings import RunSettings

State = dict[str, Tensor]
RESULT_KEYS = ("weights_remaining", "test_acc", "early_stop_test_acc", "early_stop_iteration", "val_acc",
               "val_loss")


@dataclass
class Ticket:
    """A ticket as one round of a run left it: the settings that found it, θ0, its start, mask and trained weights."""

    settings: RunSettings  # one trial's settings (its own seed)
    round: int
    init: State
    start: State
    mask: State
    final: State


@dataclass
class Arm:
    """One network an experiment trains: a name, starting weights, a mask (False = pruned, held at its start value)."""

    name: str
    start: Mapping[str, Tensor]
    mask: Mapping[str, Tensor]


def model_loaders(settings: RunSettings):
    """Loaders of this model's weights and mask files, verified against its shapes."""
    from lth.datasets import get_dataset_spec
    from lth.engine.rounds import Shape, describe_model

    spec = get_dataset_spec(settings.dataset)
    kinds, shapes = describe_model(settings, Shape(tuple(spec.input_shape), spec.num_classes))
    mask_shapes = {name: shapes[name] for name in kinds}
    return (lambda p: artifacts.load_tensors(p, "weights", settings.model, shapes),
            lambda p: artifacts.load_tensors(p, "mask", settings.model, mask_shapes))


def run_settings(run_dir: str | Path) -> RunSettings:
    """The settings a find-ticket run directory was made with (its settings.json)."""
    from lth.core.files import RunLayout
    from lth.engine.settings import from_dict

    layout = RunLayout(run_dir)
    if not layout.settings.is_file():
        raise LthError(f"{run_dir} is not a find-ticket run directory (no settings.json)")
    return from_dict(artifacts.read_json(layout.settings).get("settings", {}), where=str(layout.settings))


def ticket_from_run(run_dir: str | Path, round_index: int, trial: int = 0) -> Ticket:
    """Round `round_index` of trial `trial` of a find-ticket run; the round must be finished."""
    from lth.core.files import RunLayout

    settings = run_settings(run_dir)
    layout = RunLayout(run_dir)
    if not 0 <= trial < settings.trials:
        raise LthError(f"bad trial {trial}: {run_dir} has trials 0..{settings.trials - 1}")
    if not layout.round_metrics(round_index).is_file():
        finished = sorted(int(p.stem.split("-")[1]) for p in (layout.root / "rounds").glob("round-*.json"))
        raise LthError(f"round {round_index} of {run_dir} is not finished; finished rounds: "
                       f"{', '.join(map(str, finished)) or 'none'}")
    weights, mask = model_loaders(settings)
    return Ticket(settings.for_trial(trial), round_index, weights(layout.init(trial)),
                  weights(layout.start(trial, round_index)), mask(layout.mask(trial, round_index)),
                  weights(layout.final(trial, round_index)))


def ticket_from_pipeline(settings: RunSettings, round_key: str, trial: int = 0) -> Ticket:
    """Round `round_key` (e.g. 'r05') of trial `trial` of the DVC pipeline, from data/rounds and data/init."""
    from lth.engine import layout as pipeline
    from lth.engine.params import round_index

    if not 0 <= trial < settings.trials:
        raise LthError(f"bad trial {trial}: params.yaml has trials 0..{settings.trials - 1}")
    weights, mask = model_loaders(settings)
    file = lambda directory: pipeline.trial_file(directory, trial)  # noqa: E731
    return Ticket(settings.for_trial(trial), round_index(round_key), weights(file(pipeline.INIT)),
                  weights(file(pipeline.round_dir(round_key, "start"))), mask(file(pipeline.round_dir(round_key, "mask"))),
                  weights(file(pipeline.round_dir(round_key, "final"))))


def train_arms(settings: RunSettings, splits, arms: Sequence[Arm], seed: Optional[int] = None) -> dict[str, dict]:
    """Train every arm with `settings.train` (same data order for all: `seed`, default settings.seed).

    Returns arm name -> its results (RESULT_KEYS), learning curve ('curve') and trained weights ('state').
    """
    from lth.engine.rounds import Network, train_networks

    if len({arm.name for arm in arms}) != len(arms):
        raise LthError(f"internal: arm names must be distinct, got {[arm.name for arm in arms]}")
    seed = settings.seed if seed is None else seed
    networks = [Network(0, arm.name, seed, arm.start, arm.mask) for arm in arms]
    trained, record = train_networks(settings, splits, networks, round_index=1)
    return {entry["arm"]: {**{k: entry[k] for k in RESULT_KEYS}, "curve": entry["curve"], "state": result.state}
            for entry, result in zip(record["networks"], trained)}


def results_only(results: Mapping[str, dict]) -> dict[str, dict]:
    """Arm results without learning curves and weights: what metrics JSON and tables show."""
    return {name: {k: v for k, v in r.items() if k not in ("curve", "state")} for name, r in results.items()}


def with_training(settings: RunSettings, **changes: Any) -> RunSettings:
    """`settings` with training fields changed (None leaves a value), validated."""
    from lth.engine.settings import replace

    return replace(settings, **{f"train__{k}": v for k, v in changes.items()}).validate()


# --- params.yaml -----------------------------------------------------------------------------------------


def experiment_params(name: str, cls: type, path: str | Path = "params.yaml") -> Any:
    """The `experiments.<name>` group of params.yaml as the experiment's settings dataclass."""
    import yaml

    from lth.engine.settings import build_dataclass

    data = yaml.safe_load(Path(path).read_text()) or {}
    group = (data.get("experiments") or {}).get(name)
    if group is None:
        raise LthError(f"{path}: missing 'experiments: {{{name}: ...}}' (the settings of the {name} experiment)")
    return build_dataclass(cls, group, f"{path}: experiments.{name}")


def prepared_splits(device: str):
    """The pipeline's prepared dataset (data/prepared/splits.pt) on the training device."""
    from lth.engine import layout as pipeline
    from lth.datasets import Splits
    from lth.training.loop import resolve_device

    return Splits.from_state(artifacts.load_torch(pipeline.PREPARED, "prepared dataset")).to(resolve_device(device))


def metrics_path(name: str) -> Path:
    """metrics/experiments/<name>.json: the experiment stage's DVC metrics."""
    from lth.engine.layout import METRICS

    return METRICS / "experiments" / f"{name}.json"


def to_plain(obj: Any) -> Any:
    """A settings dataclass as a JSON-ready dict."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj


# --- tables ------------------------------------------------------------------------------------------------


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
