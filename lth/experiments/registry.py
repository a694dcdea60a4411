"""The research experiments by name: their modules, imported on demand (each pulls in torch).

Kept apart from the package's `__init__` so that importing `lth.experiments.settings` (every pipeline stage
checks the experiments' params) does not make every stage's code fingerprint cover the experiments' code.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType

from lth.core.errors import unknown_choice


@dataclass(frozen=True)
class Experiment:
    name: str
    module: str  # imported on demand: each pulls in torch
    description: str


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        Experiment("transfer", "lth.experiments.transfer",
                   "a ticket trained on another dataset and/or optimizer, vs random re-init and dense"),
        Experiment("transfer_domains", "lth.experiments.transfer_domains",
                   "tickets of several rounds trained on other domains and tasks (sound, regression): the curve"),
        Experiment("combine", "lth.experiments.combine",
                   "two tickets' masks combined by union or intersection, trained from θ0, vs both parents"),
        Experiment("removal", "lth.experiments.removal",
                   "successive tickets removed from the network until the next one no longer matches"),
        Experiment("optimizers", "lth.experiments.optimizers",
                   "IMP under RAdam without warmup, Adam/SGD with warmup, and rewinding: one sweep, one table"),
        Experiment("perturb", "lth.experiments.perturb",
                   "per-epoch masks whose removed weights are perturbed with noise, vs plain training and dropout"),
        Experiment("stability", "lth.experiments.stability",
                   "linear mode connectivity: the error barrier between two copies trained from one rewind point"),
    ]
}


def experiment_module(name: str) -> ModuleType:
    """The module of experiment `name`."""
    if name not in EXPERIMENTS:
        raise unknown_choice("experiment", name, EXPERIMENTS)
    return import_module(EXPERIMENTS[name].module)
