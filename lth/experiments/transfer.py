"""Transfer (Morcos et al. 2019, "One ticket to win them all"): train a ticket found on one dataset and
optimizer on another dataset and/or optimizer, next to a random re-initialisation of the same mask and
the dense network.

The ticket is its mask plus its starting weights (the round's start: θ0 or θk after the mask-1/mask-0
actions). Inputs must have the same shape (the first layer's weights are tied to it). When the number of
outputs differs, the output layer is re-initialised (seeded fresh draw) and left dense in every arm,
since its mask was tied to the source outputs. The target may be any dataset, yours included; by default
(`dataset: ''` in params.yaml) it is the run's own, so the ticket moves to another optimizer only.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from lth.core.errors import LthError
from lth.experiments.common import Arm, State, Ticket, train_arms, with_training
from lth.experiments.settings import TransferSettings
from lth.core.seeds import derive_seed


def check_compatible(ticket: Ticket, target: str, target_shape: Optional[tuple[int, ...]] = None) -> None:
    """A clear error when the target's examples (given, or a registered dataset's) have another shape than the
    ticket's: its first layer's weights are tied to them. An unregistered target not yet loaded passes."""
    from lth.datasets import DATASETS

    if target_shape is None and target in DATASETS:
        target_shape = tuple(DATASETS[target].input_shape)
    if target_shape is not None and tuple(target_shape) != tuple(ticket.input_shape):
        shape = lambda s: "x".join(map(str, s))  # noqa: E731
        raise LthError(f"cannot transfer a ticket from '{ticket.settings.dataset}' ({shape(ticket.input_shape)} inputs) "
                       f"to '{target}' ({shape(target_shape)} inputs): input shapes must match")


def retarget(ticket: Ticket, num_outputs: int, seed: int) -> tuple[State, State, State]:
    """(start, θ0, mask) for `num_outputs` outputs: the output layer re-initialised and dense if the count differs."""
    from lth.models import build_model
    from lth.models.layers import output_layer

    start, init, mask = dict(ticket.start), dict(ticket.init), dict(ticket.mask)
    shape_probe = build_model(ticket.settings.model, ticket.input_shape, num_outputs, seed)
    head = output_layer(shape_probe)
    if tuple(start[f"{head}.weight"].shape) == tuple(shape_probe.state_dict()[f"{head}.weight"].shape):
        return start, init, mask
    fresh = shape_probe.state_dict()
    for key in (f"{head}.weight", f"{head}.bias"):
        if key in fresh:
            start[key] = init[key] = fresh[key].detach().clone()
    mask[f"{head}.weight"] = torch.ones_like(fresh[f"{head}.weight"], dtype=torch.bool)
    return start, init, mask


def transfer(ticket: Ticket, dataset: str, splits, optimizer: str | None = None, lr: float | None = None,
             momentum: float | None = None, duration: str | None = None, eval_every: str | None = None) -> dict:
    """Train the ticket, a random re-initialisation of its mask, and the dense network (from the source's θ0)
    on `splits` (the target dataset `dataset`, on its device) with the source's training settings changed
    as given. Returns arm name -> results."""
    from lth.core.masks import apply_mask
    from lth.models import build_model

    check_compatible(ticket, dataset, splits.input_shape)
    outputs, seed = splits.num_outputs, ticket.settings.seed
    start, init, mask = retarget(ticket, outputs, derive_seed(seed, "transfer-head"))
    fresh = build_model(ticket.settings.model, ticket.input_shape, outputs, derive_seed(seed, "transfer-reinit"))
    reinit = apply_mask({k: v.detach().clone() for k, v in fresh.state_dict().items()}, mask)
    dense = {name: torch.ones_like(m) for name, m in mask.items()}
    settings = with_training(dataclasses.replace(ticket.settings, dataset=dataset, task="auto"), optimizer=optimizer, lr=lr,
                             momentum=momentum, duration=duration, eval_every=eval_every)
    arms = [Arm("ticket", start, mask), Arm("reinit", reinit, mask), Arm("dense", init, dense)]
    return train_arms(settings, splits, arms)


def run_stage(run) -> dict:  # noqa: ANN001 - lth.engine.run.Run of the workspace
    """The DVC stage `exp_transfer`: the workspace's ticket `experiments.transfer.round` on the target."""
    from lth.datasets import load_dataset
    from lth.experiments.common import experiment_params, results_only
    from lth.training.device import resolve_device

    exp = experiment_params(run, "transfer", TransferSettings)
    ticket = run.ticket(exp.round, exp.trial)
    target = exp.dataset or run.settings.dataset
    check_compatible(ticket, target)
    splits = (run.data() if target == run.settings.dataset else
              load_dataset(target, run.params.dataset_dir).to(resolve_device(run.device)))
    results = transfer(ticket, target, splits, exp.optimizer, exp.lr, exp.momentum, exp.duration, exp.eval_every)
    return results_only(results)
