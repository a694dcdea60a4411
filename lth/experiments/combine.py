"""Combining tickets: the masks of two runs (other seeds or other criteria) merged by union or
intersection, trained from θ0 of the first run, next to both parent tickets trained as found
(each from its own start). Reports accuracy against weights remaining, and how much the masks overlap.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from lth.core.errors import LthError, unknown_choice
from lth.experiments.common import Arm, Ticket, train_arms, with_training
from lth.experiments.settings import COMBINATIONS, CombineSettings

OPERATIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {  # for every name in COMBINATIONS
    "union": torch.logical_or,
    "intersection": torch.logical_and,
}


def combine_masks(a: Mapping[str, Tensor], b: Mapping[str, Tensor], how: str) -> dict[str, Tensor]:
    if how not in COMBINATIONS:
        raise unknown_choice("combination", how, COMBINATIONS)
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        raise LthError("the two masks belong to different architectures")
    return {name: OPERATIONS[how](a[name].bool(), b[name].bool()) for name in a}


def overlap(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of two masks over all prunable weights."""
    both = sum(int((a[k] & b[k]).sum()) for k in a)
    either = sum(int((a[k] | b[k]).sum()) for k in a)
    return both / max(either, 1)


def combine(parent_a: Ticket, parent_b: Ticket, splits, how: Sequence[str] = ("union", "intersection"),
            duration: str | None = None, eval_every: str | None = None) -> dict:
    """Train each combination of the two parents' masks from parent A's θ0, and both parents as found."""
    from lth.core.masks import apply_mask

    a, b = parent_a.settings, parent_b.settings
    if (a.model, a.dataset) != (b.model, b.dataset):
        raise LthError(f"cannot combine a {a.model} ticket on {a.dataset} with a {b.model} ticket on {b.dataset}: "
                       "both runs must use the same model and dataset")
    if not how:
        raise LthError(f"give at least one combination: {', '.join(COMBINATIONS)}")
    combos = {name: combine_masks(parent_a.mask, parent_b.mask, name) for name in dict.fromkeys(how)}
    arms = [Arm("parent-a", parent_a.start, parent_a.mask), Arm("parent-b", parent_b.start, parent_b.mask)]
    arms += [Arm(name, apply_mask(dict(parent_a.init), mask), mask) for name, mask in combos.items()]
    settings = with_training(a, duration=duration, eval_every=eval_every)
    results = train_arms(settings, splits, arms)
    results["parent-a"]["overlap"] = results["parent-b"]["overlap"] = round(overlap(parent_a.mask, parent_b.mask), 6)
    return results


def parent_b_settings(settings, exp: CombineSettings):
    """The second parent's run: the pipeline's settings with another seed and criterion, no trials or controls."""
    return dataclasses.replace(settings, seed=exp.seed_b, criterion=exp.criterion_b, trials=1, controls=()).validate()


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_combine`: the workspace's ticket at `experiments.combine.round` and a second ticket
    found here (into data/experiments/combine/parent-b), combined and trained."""
    from lth.runs.params import round_index
    from lth.steps.rounds import run_rounds
    from lth.runs.run import open_run_dir
    from lth.experiments.common import experiment_params, results_only

    exp = experiment_params(run, "combine", CombineSettings)
    for name in exp.how:
        if name not in COMBINATIONS:
            raise unknown_choice("combination", name, COMBINATIONS)
    parent_a = run.ticket(exp.round)
    splits = run.data()
    parent_b_dir = run.layout.experiment_dir("combine") / "parent-b"
    run_rounds(parent_b_settings(run.settings, exp), round_index(exp.round), parent_b_dir, splits)
    parent_b = open_run_dir(parent_b_dir).ticket(exp.round)
    return results_only(combine(parent_a, parent_b, splits, exp.how))
