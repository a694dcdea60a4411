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


def retarget(ticket: Ticket, num_outputs: int, seed: int, new_task: bool = False) -> tuple[State, State, State]:
    """(start, θ0, mask) for `num_outputs` outputs: the output layer re-initialised (seeded) and left dense when
    the count differs or the target is another task (its weights were tied to the source's outputs)."""
    from lth.models import build_model
    from lth.models.layers import output_layer

    start, init, mask = dict(ticket.start), dict(ticket.init), dict(ticket.mask)
    shape_probe = build_model(ticket.settings.model, ticket.input_shape, num_outputs, seed)
    head = output_layer(shape_probe)
    same_shape = tuple(start[f"{head}.weight"].shape) == tuple(shape_probe.state_dict()[f"{head}.weight"].shape)
    if same_shape and not new_task:
        return start, init, mask
    fresh = shape_probe.state_dict()
    for key in (f"{head}.weight", f"{head}.bias"):
        if key in fresh:
            start[key] = init[key] = fresh[key].detach().clone()
    mask[f"{head}.weight"] = torch.ones_like(fresh[f"{head}.weight"], dtype=torch.bool)
    return start, init, mask


def source_task(ticket: Ticket) -> str:
    """The task the ticket was found for: its data's (as the run recorded it), else its dataset's registered one."""
    from lth.datasets import DATASETS

    if ticket.shape is not None and getattr(ticket.shape, "task", None):
        return ticket.shape.task
    spec = DATASETS.get(ticket.settings.dataset)
    return spec.task if spec is not None else "classification"


def new_task(ticket: Ticket, splits) -> bool:  # noqa: ANN001 - lth.datasets.Splits
    """Whether the target is another task than the source (classification -> regression ...)."""
    return splits.task != source_task(ticket)


def transfer(ticket: Ticket, dataset: str, splits, optimizer: str | None = None, lr: float | None = None,
             momentum: float | None = None, duration: str | None = None, eval_every: str | None = None) -> dict:
    """Train the ticket, a random re-initialisation of its mask, and the dense network (from the source's θ0)
    on `splits` (the target dataset `dataset`, on its device) with the source's training settings changed
    as given. Returns arm name -> results."""
    from lth.core.masks import apply_mask
    from lth.models import build_model

    check_compatible(ticket, dataset, splits.input_shape)
    outputs, seed = splits.num_outputs, ticket.settings.seed
    start, init, mask = retarget(ticket, outputs, derive_seed(seed, "transfer-head"), new_task(ticket, splits))
    fresh = build_model(ticket.settings.model, ticket.input_shape, outputs, derive_seed(seed, "transfer-reinit"))
    reinit = apply_mask({k: v.detach().clone() for k, v in fresh.state_dict().items()}, mask)
    dense = {name: torch.ones_like(m) for name, m in mask.items()}
    settings = with_training(dataclasses.replace(ticket.settings, dataset=dataset, task="auto"), optimizer=optimizer, lr=lr,
                             momentum=momentum, duration=duration, eval_every=eval_every)
    arms = [Arm("ticket", start, mask), Arm("reinit", reinit, mask), Arm("dense", init, dense)]
    return train_arms(settings, splits, arms)


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
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


# --- the transfer curve: several rounds' tickets on one target, with trials ------------------------------------

CURVE_ARMS = ("ticket", "reinit")


def summarize(per_trial: list[dict], keys: list[str]) -> dict:
    """An arm over its trials: each key's mean, `<key>_std` (sample standard deviation) for the task's metrics,
    and the per-trial values under 'per_trial'."""
    from lth.core.noise import estimate

    out: dict = {"trials": len(per_trial)}
    for key in keys:
        spread = estimate([float(r[key]) for r in per_trial])
        out[key] = round(spread.mean, 6)
        if key.startswith(("end_test_", "early_stop_test_", "end_val_")) and key != "end_val_loss":
            out[f"{key}_std"] = round(spread.std, 6)
    out["per_trial"] = [{k: r[k] for k in keys} for r in per_trial]
    return out


def source_curve(run, rounds: list[str], trial: int) -> dict:  # noqa: ANN001 - lth.runs.run.Run
    """The source run's own ticket curve (its trial `trial`): round -> weights remaining and the headline
    metrics at early stop on the source's test set, r00 (dense) first."""
    from lth.runs.records import TICKET
    from lth.tasks import get_task

    curve = {}
    for key in ["r00", *[r for r in rounds if r != "r00"]]:
        if key not in run.finished_rounds():
            continue
        record = run.record(key)
        task = get_task(record.get("task", "classification"))
        entry = next((n for n in record["networks"] if n["trial"] == trial and n["arm"] == TICKET), None)
        if entry is not None:
            curve[key] = {"weights_remaining": entry["weights_remaining"],
                          **{f"early_stop_test_{m.name}": entry[f"early_stop_test_{m.name}"] for m in task.metrics}}
    return curve


def transfer_curve(run, target: str, splits, rounds: list[str], trial: int = 0, trials: int = 2,  # noqa: ANN001
                   optimizer: str | None = None, lr: float | None = None, momentum: float | None = None,
                   duration: str | None = None, eval_every: str | None = None, progress=None) -> dict:  # noqa: ANN001
    """The tickets of `rounds` (trial `trial` of `run`) trained on the target `target` (`splits`, on the training
    device), each beside a random re-initialisation of its mask, and the dense network: `trials` times each, with
    seeds of their own (data order, the re-initialised head of another task, the re-init arm's draw). All of them
    train together as one batched job. The result, per round: weights remaining and each arm's metrics (mean,
    spread, per trial); the dense network's; and the source run's own curve for reference."""
    from lth.core.masks import apply_mask
    from lth.datasets import DATASETS
    from lth.runs.records import round_record
    from lth.experiments.common import result_keys
    from lth.models import build_model
    from lth.pruning.actions import PRUNED_ACTIONS
    from lth.tasks import get_task
    from lth.training.trainer import Network, TrainJob, train_networks

    if trials < 1:
        raise LthError(f"bad trials {trials}: give at least 1")
    if not rounds:
        raise LthError("give at least one round for the transfer curve")
    tickets = {key: run.ticket(key, trial) for key in rounds}
    first = next(iter(tickets.values()))
    check_compatible(first, target, splits.input_shape)
    outputs, base_seed, other_task = splits.num_outputs, first.settings.seed, new_task(first, splits)
    networks: list = []
    for t in range(trials):
        seed = derive_seed(base_seed, "transfer-curve", t)
        head_seed = derive_seed(seed, "transfer-head")
        for key, ticket in tickets.items():
            start, init, mask = retarget(ticket, outputs, head_seed, other_task)
            fresh = build_model(ticket.settings.model, ticket.input_shape, outputs,
                                derive_seed(seed, "transfer-reinit", key))
            reinit = apply_mask({k: v.detach().clone() for k, v in fresh.state_dict().items()}, mask)
            networks += [Network(t, f"{key}/ticket", seed, start, mask), Network(t, f"{key}/reinit", seed, reinit, mask)]
        networks.append(Network(t, "dense", seed, init, {name: torch.ones_like(m) for name, m in mask.items()}))
    settings = with_training(dataclasses.replace(first.settings, dataset=target, task="auto"), optimizer=optimizer,
                             lr=lr, momentum=momentum, duration=duration, eval_every=eval_every)
    job = TrainJob(settings.model, settings.train, not PRUNED_ACTIONS[settings.mask0_action].frozen)
    trained = train_networks(job, splits, networks, progress=progress)
    task = get_task(splits.task)
    keys = result_keys(task)
    entries = round_record(1, networks, trained, task)["networks"]
    by_arm: dict[str, list[dict]] = {}
    for entry in entries:
        by_arm.setdefault(entry["arm"], []).append(entry)
    spec = DATASETS.get(target)
    unit = getattr(spec, "target_unit", None) if spec is not None else None
    curve = {}
    for key in rounds:
        arms = {arm: summarize(by_arm[f"{key}/{arm}"], keys) for arm in CURVE_ARMS}
        curve[key] = {"weights_remaining": arms["ticket"]["weights_remaining"], **arms}
    return {"target": target, "task": splits.task, "metric": task.headline.name, "test_examples": len(splits.test_y),
            "unit": {"name": unit[0], "per_target": unit[1]} if unit else None, "new_head": other_task,
            "trials": trials, "training": {"optimizer": settings.train.optimizer, "lr": settings.train.lr,
                                           "duration": str(settings.train.duration)},
            "dense": summarize(by_arm["dense"], keys), "rounds": curve,
            "source": {"dataset": first.settings.dataset, "trial": trial, "curve": source_curve(run, rounds, trial)}}
