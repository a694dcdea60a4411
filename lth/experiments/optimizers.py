"""Optimizer swap / no rewinding: the same model's IMP under several optimizer, warmup and rewind settings.

Each variant is a set of overrides of existing settings (optimizer, lr, momentum, warmup, rewind step), run
by the core's resumable `find_ticket` into its own directory; the comparison is one table: the ticket's
early-stop test accuracy per round (and so per % weights remaining) for every variant. The question it
answers (Frankle et al. 2020; Liu et al. 2019): does RAdam without warmup, or warmup alone, find tickets
resetting to θ0 where plain Adam/SGD need rewinding to θk?
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Optional

from lth.core.errors import LthError, unknown_choice
from lth.runs.settings import RunSettings
from lth.experiments.settings import DEFAULT_VARIANTS, OptimizersSettings, Variant


def pick_variants(names: Optional[list[str]]) -> dict[str, Variant]:
    """The named default variants (all when `names` is empty)."""
    if not names:
        return dict(DEFAULT_VARIANTS)
    for name in names:
        if name not in DEFAULT_VARIANTS:
            raise unknown_choice("variant", name, DEFAULT_VARIANTS)
    return {name: DEFAULT_VARIANTS[name] for name in names}


def sweep(base: RunSettings, variants: Mapping[str, Variant], rounds: int, out: str | Path, splits,
          reporter_for: Optional[Callable[[str], object]] = None) -> dict[str, list[dict]]:
    """Run (or resume) IMP for every variant into out/<variant>: the dense round and `rounds` pruning rounds;
    variant -> its round records."""
    from lth.steps.rounds import run_rounds

    if rounds < 1:
        raise LthError(f"bad rounds {rounds}: must be >= 1")
    settings = {name: v.apply(base) for name, v in variants.items()}  # validate every variant before training
    return {name: run_rounds(s, rounds, Path(out) / name, splits, reporter_for(name) if reporter_for else None)
            for name, s in settings.items()}


def tabulate(records: Mapping[str, list[dict]]) -> dict[str, dict]:
    """variant -> rNN -> the ticket's weights remaining and its test headline metric at early stop (mean over
    trials): `adam-warmup.r02.early_stop_test_acc` in `dvc metrics`."""
    from lth.runs.records import TICKET, headline, task_of
    from lth.steps.summary import arm_stats

    table: dict[str, dict] = {}
    for name, rounds in records.items():
        row: dict = {}
        for record in rounds:
            judged_by = headline(task_of(record))
            row[f"r{record['round']:02d}"] = {"weights_remaining": record["weights_remaining"],
                                              judged_by: arm_stats(record, TICKET)[judged_by]}
        table[name] = row
    return table


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_optimizers`: the workspace's model, data, seed, criterion and pruning under every
    variant, each a find-ticket run in data/experiments/optimizers/<variant>."""
    from lth.experiments.common import experiment_params, with_training

    exp = experiment_params(run, "optimizers", OptimizersSettings)
    base = with_training(dataclasses.replace(run.settings, trials=1, controls=()), duration=exp.duration,
                         eval_every=exp.eval_every)
    records = sweep(base, exp.parsed_variants(), exp.rounds, run.layout.experiment_dir("optimizers"), run.data())
    return tabulate(records)
