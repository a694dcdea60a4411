"""Transfer (Morcos et al. 2019, "One ticket to win them all"): train a ticket found on one dataset and
optimizer on another dataset and/or optimizer, next to a random re-initialisation of the same mask and
the dense network.

The ticket is its mask plus its starting weights (the round's start: θ0 or θk after the mask-1/mask-0
actions). Inputs must have the same shape (the first layer's weights are tied to it). When the class
count differs, the output layer is re-initialised (seeded fresh draw) and left dense in every arm,
since its mask was tied to the source classes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from lth.core.errors import LthError
from lth.experiments.common import Arm, State, Ticket, train_arms, with_training
from lth.core.seeds import derive_seed


@dataclass(frozen=True)
class TransferSettings:
    """params.yaml `experiments.transfer`: which pipeline ticket, and the target dataset and training."""

    round: str = "r05"
    trial: int = 0
    dataset: str = "mnist-5k"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    duration: str = "10ep"
    eval_every: str = "1ep"


def check_compatible(source_dataset: str, target_dataset: str) -> tuple[tuple[int, int, int], int, int]:
    """(input shape, source classes, target classes); a clear error when the input shapes differ."""
    from lth.datasets import get_dataset_spec

    source, target = get_dataset_spec(source_dataset), get_dataset_spec(target_dataset)
    if tuple(source.input_shape) != tuple(target.input_shape):
        shape = lambda s: "x".join(map(str, s.input_shape))  # noqa: E731
        raise LthError(f"cannot transfer a ticket from '{source.name}' ({shape(source)} inputs) to "
                       f"'{target.name}' ({shape(target)} inputs): input shapes must match")
    return tuple(source.input_shape), source.num_outputs, target.num_outputs


def retarget(ticket: Ticket, num_outputs: int, seed: int) -> tuple[State, State, State]:
    """(start, θ0, mask) for `num_outputs` outputs: the output layer re-initialised and dense if the count differs."""
    from lth.models import build_model
    from lth.models.layers import output_layer

    start, init, mask = dict(ticket.start), dict(ticket.init), dict(ticket.mask)
    shape_probe = build_model(ticket.settings.model, _input_shape(ticket), num_outputs, seed)
    head = output_layer(shape_probe)
    if tuple(start[f"{head}.weight"].shape) == tuple(shape_probe.state_dict()[f"{head}.weight"].shape):
        return start, init, mask
    fresh = shape_probe.state_dict()
    for key in (f"{head}.weight", f"{head}.bias"):
        if key in fresh:
            start[key] = init[key] = fresh[key].detach().clone()
    mask[f"{head}.weight"] = torch.ones_like(fresh[f"{head}.weight"], dtype=torch.bool)
    return start, init, mask


def _input_shape(ticket: Ticket) -> tuple[int, int, int]:
    from lth.datasets import get_dataset_spec

    return tuple(get_dataset_spec(ticket.settings.dataset).input_shape)


def transfer(ticket: Ticket, dataset: str, splits, optimizer: str | None = None, lr: float | None = None,
             momentum: float | None = None, duration: str | None = None, eval_every: str | None = None) -> dict:
    """Train the ticket, a random re-initialisation of its mask, and the dense network (from the source's θ0)
    on `splits` (the target dataset `dataset`, on its device) with the source's training settings changed
    as given. Returns arm name -> results."""
    from lth.core.masks import apply_mask
    from lth.models import build_model

    _, _, classes = check_compatible(ticket.settings.dataset, dataset)
    if splits.num_outputs != classes or tuple(splits.input_shape) != _input_shape(ticket):
        raise LthError(f"the loaded data ({splits.name}) does not match dataset '{dataset}'")
    seed = ticket.settings.seed
    start, init, mask = retarget(ticket, classes, derive_seed(seed, "transfer-head"))
    fresh = build_model(ticket.settings.model, _input_shape(ticket), classes, derive_seed(seed, "transfer-reinit"))
    reinit = apply_mask({k: v.detach().clone() for k, v in fresh.state_dict().items()}, mask)
    dense = {name: torch.ones_like(m) for name, m in mask.items()}
    settings = with_training(dataclasses.replace(ticket.settings, dataset=dataset), optimizer=optimizer, lr=lr,
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
    check_compatible(ticket.settings.dataset, exp.dataset)
    splits = load_dataset(exp.dataset, run.params.dataset_dir).to(resolve_device(run.device))
    results = transfer(ticket, exp.dataset, splits, exp.optimizer, exp.lr, exp.momentum, exp.duration, exp.eval_every)
    return results_only(results)
