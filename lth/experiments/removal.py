"""Ticket removal ("is there only one ticket?"): remove a found ticket's weights, search the rest again.

Ticket 1 is the ticket a run found at round R. For ticket j > 1 the weights of tickets 1..j-1 are
removed: zeroed and frozen (`removed: zero`), or frozen at a fresh random draw (`removed: reinit`, so the
network keeps their scale but not their values). The complement network (every other weight, reset to
θ0) is trained, which is also round 0 of a new search: R rounds of the run's own IMP (its criterion,
rates and layerwise/global method) inside the remaining weights, each round keeping round(n (1-p)^r)
of the n weights that were available, rewinding survivors to θ0. The ticket so found is trained and
compared with the dense network; the removal stops at the first ticket whose early-stop test headline
metric (accuracy; RMSE for regression) is more than `margin` worse than the dense network's, or after
`max_tickets`. `removable` counts the tickets that still matched: how many successive tickets the
network holds.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch import Tensor

from lth.core.errors import LthError, unknown_choice
from lth.experiments.common import Arm, State, Ticket, train_arms, with_training
from lth.core.seeds import derive_seed
from lth.experiments.settings import REMOVED_VALUES, RemovalSettings

def shrink(settings, scores: Mapping[str, Tensor], mask: Mapping[str, Tensor], available: Mapping[str, Tensor],
           kinds: Mapping[str, str], round_index: int) -> dict[str, Tensor]:
    """The run's pruning rule applied inside `available` only: round r keeps round(n (1 - rate)^r) of a
    layer's n available weights (or of all of them, for global pruning), best-scored survivors first.

    Implemented by handing the core's `next_mask` the available entries of every layer as a flat tensor,
    so the schedule, tie-breaking and global/layerwise choice are the core's own.
    """
    from lth.pruning.prune import next_mask

    flat_scores = {n: scores[n][available[n]] for n in mask}
    flat_mask = {n: mask[n][available[n]] for n in mask}
    flat = next_mask(flat_scores, flat_mask, kinds, settings.prune.rates, settings.prune.method, round_index,
                     derive_seed(settings.seed, "removal"))
    out = {}
    for n, m in mask.items():
        full = torch.zeros_like(m, dtype=torch.bool)
        full[available[n]] = flat[n]
        out[n] = full
    return out


def compose(init: Mapping[str, Tensor], mask: Mapping[str, Tensor], removed: Mapping[str, Tensor],
            removed_values: Optional[Mapping[str, Tensor]]) -> State:
    """Starting weights: θ0 where kept, the removed values (zero or fresh) where removed, zero elsewhere."""
    state = {k: v.clone() for k, v in init.items()}
    for n, m in mask.items():
        values = removed_values[n] if removed_values is not None else torch.zeros_like(init[n])
        state[n] = torch.where(m, init[n], torch.where(removed[n], values, torch.zeros_like(init[n])))
    return state


def remove_tickets(ticket: Ticket, splits, max_tickets: int = 3, margin: float = 0.02, removed: str = "zero",
                   duration: Optional[str] = None, eval_every: Optional[str] = None,
                   log: Callable[[str], None] = lambda _: None) -> dict:
    """Remove successive tickets (see the module docstring). Returns the dense result, one entry per ticket
    (its complement network's and its own results, its mask, whether it matched) and `removable`."""
    from lth.core.masks import remaining_fraction
    from lth.tasks import get_task
    from lth.models import build_model
    from lth.models.layers import prunable_layers
    from lth.steps.score import score_weights

    if removed not in REMOVED_VALUES:
        raise unknown_choice("removed-weights value", removed, REMOVED_VALUES)
    if max_tickets < 1:
        raise LthError(f"bad max_tickets {max_tickets}: must be >= 1")
    if not 0 <= margin < 1:
        raise LthError(f"bad margin {margin}: must be in [0, 1) (how much worse than dense a ticket may be)")
    if ticket.round < 1:
        raise LthError("ticket removal needs a pruned ticket: round >= 1")
    settings = with_training(ticket.settings, duration=duration, eval_every=eval_every)
    model = build_model(settings.model, splits.input_shape, splits.num_outputs, derive_seed(settings.seed, "removed"))
    kinds = prunable_layers(model)
    fresh = {k: v.detach().clone() for k, v in model.state_dict().items()} if removed == "reinit" else None
    init = ticket.init
    everything = {n: torch.ones_like(m, dtype=torch.bool) for n, m in ticket.mask.items()}
    nothing = {n: torch.zeros_like(m, dtype=torch.bool) for n, m in ticket.mask.items()}

    metric = get_task(splits.task).headline
    judged = f"early_stop_test_{metric.name}"

    def train_one(name: str, start: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> dict:
        result = train_arms(settings, splits, [Arm(name, start, mask)])[name]
        log(f"{name}: {100 * result['weights_remaining']:.2f}% weights, test {metric.label} "
            f"{metric.show(result[judged])}{metric.unit} (early stop)")
        return result

    dense = train_one("dense", init, everything)
    threshold = dense[judged] - margin if metric.higher_is_better else dense[judged] + margin
    removed_mask = dict(nothing)
    entries, removable = [], 0
    for j in range(1, max_tickets + 1):
        entry: dict = {"ticket": j}
        if j == 1:
            mask = ticket.mask
            entry["found"] = train_one("ticket-1", ticket.start, mask)
        else:
            available = {n: ~removed_mask[n] for n in ticket.mask}
            mask, start = available, compose(init, available, removed_mask, fresh)
            entry["complement"] = result = train_one(f"complement-{j}", start, mask)
            for r in range(1, ticket.round + 1):
                scores = score_weights(settings, init, result_state(result), mask, r - 1, start, splits)
                mask = shrink(settings, scores, mask, available, kinds, r)
                start = compose(init, mask, removed_mask, fresh)
                result = train_one(f"ticket-{j} round {r}", start, mask)
            entry["found"] = result
        entry["mask"] = {n: m.clone() for n, m in mask.items()}
        entry["matching"] = metric.better(entry["found"][judged], threshold)
        entries.append(entry)
        if not entry["matching"]:
            break
        removable += 1
        removed_mask = {n: removed_mask[n] | mask[n] for n in mask}
        if remaining_fraction({n: ~m for n, m in removed_mask.items()}) == 0:
            break
    for entry in entries:  # trained weights were only needed to score the next round
        for key in ("found", "complement"):
            entry.get(key, {}).pop("state", None)
    return {"dense": dense, "tickets": entries, "removable": removable, "threshold": threshold}


def result_state(result: dict) -> State:
    if "state" not in result:
        raise LthError("internal: the removal search needs the trained weights of the previous round")
    return result["state"]


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_removal`: remove successive tickets starting from the workspace's ticket."""
    from lth.experiments.common import experiment_params

    exp = experiment_params(run, "removal", RemovalSettings)
    ticket = run.ticket(exp.round, exp.trial)
    out = remove_tickets(ticket, run.data(), exp.max_tickets, exp.margin, exp.removed, exp.duration,
                         exp.eval_every, log=print)
    return metrics(out)


def metrics(out: dict) -> dict:
    """Flat DVC metrics: dense.*, t1.found.*, t2.complement.*, t2.found.*, removable."""
    strip = lambda r: {k: v for k, v in r.items() if k not in ("curve", "state")}  # noqa: E731
    flat: dict = {"removable": out["removable"], "dense": strip(out["dense"])}
    for entry in out["tickets"]:
        flat[f"t{entry['ticket']}"] = {k: strip(entry[k]) for k in ("complement", "found") if k in entry}
    return flat
