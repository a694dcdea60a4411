"""Instability analysis (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis").

A ticket is *stable to SGD noise* when two copies trained from the same rewound weights with different data
orders end in one linearly connected basin: the test error along the straight line between them,
(1 - α)·w1 + α·w2, rises by less than 2 percentage points (0.02). The *error barrier* is the largest error
on the line minus the mean of the two endpoints' errors (≥ 0; a fraction, as every file keeps it). LeNet on
MNIST is stable at initialisation; larger networks only after rewinding to an early iteration k, which is
when IMP finds matching tickets. The error is the task's (lth.tasks): the fraction misclassified, or for
regression the RMSE, for which no threshold is established (the barrier is reported, not judged).

For each rewind point k, the round's mask is applied to θk (the dense network after k steps of the run's
training, θ0 for k = 0; by default the run's own rewind point, i.e. the round's start) and two copies are
trained as one batched step:
- `data-order` (the paper's test): same start, different data orders;
- `init` (the contrast): the second copy starts from another initialisation (rewound the same way).
Models with batch norm have their running statistics recomputed on the training data at every α, as the
paper does: the interpolated statistics mean nothing.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from lth.core.seeds import derive_seed
from lth.experiments.settings import OWN, StabilitySettings, check_line

if TYPE_CHECKING:
    from torch import Tensor

    from lth.runs.run import Ticket

def interpolate(a: Mapping[str, "Tensor"], b: Mapping[str, "Tensor"], alpha: float) -> dict:
    """(1 - α)·a + α·b for floating tensors; integer buffers (batch-norm step counts) are a's."""
    return {k: (1 - alpha) * a[k] + alpha * b[k] if a[k].is_floating_point() else a[k].clone() for k in a}


def _recompute_batch_norm(model, x: "Tensor", batch_size: int = 1000) -> None:
    """Running statistics of every batch-norm layer recomputed from the training data (a cumulative average)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            model(x[start:start + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def error_line(model_name: str, splits, w1: Mapping[str, "Tensor"], w2: Mapping[str, "Tensor"],
               alphas: Sequence[float]) -> list[float]:
    """The task's test error of the network at each α on the line from w1 to w2: the fraction misclassified
    (classification) or the RMSE (regression)."""
    from lth.models import build_model
    from lth.tasks import get_task
    from lth.training.evaluation import evaluate
    from lth.training.networks import SingleNetwork

    task = get_task(splits.task)
    model = build_model(model_name, splits.input_shape, splits.num_outputs, 0).to(splits.test_x.device)
    errors = []
    for alpha in alphas:
        model.load_state_dict(interpolate(w1, w2, alpha))
        _recompute_batch_norm(model, splits.train_x)
        model.eval()
        measured = evaluate(SingleNetwork(model), splits.test_x, splits.test_y, task)
        errors.append(task.error_of({name: float(values[0]) for name, values in measured.items()}))
    return errors


def barrier(errors: Sequence[float]) -> float:
    """Largest error on the line minus the mean of its ends (≥ 0: the ends are on the line), in the error's units."""
    return max(0.0, max(errors) - (errors[0] + errors[-1]) / 2)


def rewind_iterations(ticket: "Ticket", splits, rewind: str) -> int:
    """k of a rewind point in iterations ('own': the run's own rewind setting)."""
    from lth.core.durations import Step
    from lth.training.loop import iterations_per_epoch

    per_epoch = iterations_per_epoch(len(splits.train_x), ticket.settings.train.batch_size)
    return Step.parse(ticket.settings.rewind if rewind == OWN else rewind).to_iterations(per_epoch)


def rewound(ticket: "Ticket", splits, init: Mapping[str, "Tensor"], rewind: str, seed: int) -> dict:
    """`init` after `rewind` steps of the run's dense training (data order `seed`): θk; θ0 itself at 0."""
    from lth.training.trainer import Network, TrainJob, train_networks

    k = rewind_iterations(ticket, splits, rewind)
    if k == 0:
        return dict(init)
    short = dataclasses.replace(ticket.settings.train, duration=f"{k}it", eval_every=f"{k}it")
    dense = {n: m.new_ones(m.shape) for n, m in ticket.mask.items()}
    return train_networks(TrainJob(ticket.settings.model, short), splits, [Network(0, "dense", seed, init, dense)])[0].state


def instability(ticket: "Ticket", splits, rewinds: Sequence[str] = (OWN,), pair: str = "data-order",
                points: int = 30, duration: Optional[str] = None, eval_every: Optional[str] = None,
                progress=None) -> list[dict]:
    """For each rewind point, the two copies trained with the ticket's mask and the error along their line."""
    from lth.core.masks import apply_mask
    from lth.models import build_model
    from lth.tasks import get_task
    from lth.training.trainer import Network, TrainJob, train_networks

    check_line(pair, points)
    task = get_task(splits.task)
    settings = ticket.settings
    train = dataclasses.replace(settings.train, **{k: v for k, v in (("duration", duration),
                                                                     ("eval_every", eval_every)) if v})
    alphas = [i / (points - 1) for i in range(points)]
    seed = settings.seed
    other_init = None
    if pair == "init":
        fresh = build_model(settings.model, splits.input_shape, splits.num_outputs, derive_seed(seed, "stability-init"))
        other_init = {k: v.detach().clone() for k, v in fresh.state_dict().items()}
    out = []
    for rewind in rewinds:
        if rewind == OWN:
            first = dict(ticket.start)
            second = first if other_init is None else apply_mask(other_init, ticket.mask)
        else:
            first = apply_mask(rewound(ticket, splits, ticket.init, rewind, seed), ticket.mask)
            second = first if other_init is None else apply_mask(
                rewound(ticket, splits, other_init, rewind, derive_seed(seed, "stability-init-order")), ticket.mask)
        networks = [Network(0, f"copy-{i + 1}", derive_seed(seed, "stability-order", i), start, ticket.mask)
                    for i, start in enumerate((first, second))]
        results = train_networks(TrainJob(settings.model, train), splits, networks, progress=progress)
        errors = error_line(settings.model, splits, results[0].state, results[1].state, alphas)
        out.append({"rewind": rewind, "rewind_iteration": rewind_iterations(ticket, splits, rewind),
                    "barrier": round(barrier(errors), 6), "alphas": [round(a, 6) for a in alphas],
                    f"test_{task.error.name}": [round(e, 6) for e in errors],
                    **{f"end_test_{m.name}": [r.final[f"test_{m.name}"] for r in results] for m in task.metrics}})
    return out


def stability_record(ticket: "Ticket", round_index: int, trial: int, pair: str, rewinds: list[dict], task: str) -> dict:
    """What metrics/experiments/stability.json holds: which ticket, the task's error the barrier is measured in
    (`error`), the threshold below which copies count as linearly connected (None: no convention), and per
    rewind point the barrier, the error along the line and the two copies' test metrics at the end."""
    from lth.core.masks import remaining_fraction
    from lth.tasks import get_task

    spec = get_task(task)
    return {"round": round_index, "trial": trial, "weights_remaining": round(remaining_fraction(ticket.mask), 6),
            "pair": pair, "task": spec.name, "error": spec.error.name, "threshold": spec.barrier_threshold,
            "rewinds": rewinds}


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_stability`: the workspace's ticket `experiments.stability.round`."""
    from lth.runs.params import round_index
    from lth.experiments.common import experiment_params

    exp = experiment_params(run, "stability", StabilitySettings)
    check_line(exp.pair, exp.points)
    ticket = run.ticket(exp.round, exp.trial)
    splits = run.data()
    rewinds = instability(ticket, splits, list(exp.rewinds) or [OWN], exp.pair, exp.points,
                          exp.duration or None, exp.eval_every or None)
    return stability_record(ticket, round_index(exp.round), exp.trial, exp.pair, rewinds, splits.task)
