"""What a round measured, as written to metrics/rounds/rNN.json: one entry per network (trial x arm), and the
one naming scheme every results file follows.

A metric key names when it was taken, on which split, and what: `{when}_{split}_{metric}`, with `when`
one of `start` (the masked starting weights, before any training), `end` (the end of training) and
`early_stop` (the evaluation with the lowest validation loss), `split` val or test, and `metric` the
loss or one of the task's metrics (lth.tasks: `acc` for classification; `rmse` and `r2` for regression).
So `early_stop_test_acc`, `end_val_loss`, `start_test_rmse`. Fractions stay fractions in every file
(accuracy 0.962, weights remaining 0.3287); tables a person reads show percent. Learning-curve points
are taken at their `iteration` and name split and metric only (`test_acc`).

Records written before this scheme (format 1: `test_acc` for the end of training, weights remaining in
percent) are upgraded when read (`upgrade`), so older runs stay readable and comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from lth.core import files
from lth.core.masks import kept_counts, remaining_fraction, tensor_remaining_fraction

if TYPE_CHECKING:
    from torch import Tensor

    from lth.tasks.base import Task
    from lth.training.state import TrainResult
    from lth.training.trainer import Network

TICKET = "ticket"  # the arm name of a trial's ticket; controls are named after lth.pruning.controls.CONTROLS
FORMAT = 2  # of round records: 1 had `test_acc` for the end of training and weights remaining in percent
WHEN = ("start", "end", "early_stop")


def key(when: str, split: str, metric: str) -> str:
    """The name of a metric in every results file: 'early_stop_test_acc'."""
    return f"{when}_{split}_{metric}"


def headline(task: "Task", when: str = "early_stop") -> str:
    """The key a ticket is judged by: its test headline metric ('early_stop_test_acc', 'early_stop_test_rmse')."""
    return key(when, "test", task.headline.name)


def task_of(record: Mapping[str, Any]) -> "Task":
    """The task a record (or any results file carrying `task`) was measured for."""
    from lth.tasks import get_task

    return get_task(record.get("task", "classification"))


def network_metrics(mask: Mapping[str, "Tensor"], result: "TrainResult", task: "Task",
                    chain: "Sequence[str] | str | None" = None) -> dict:
    """The scalar results of one network, plus per-layer sparsity measured in the trained tensors; with the
    model's layer `chain` (lth.pruning.effective.chain_of) also its effective sparsity, overall and per layer."""
    start, final, early = result.curve[0], result.final, result.early_stop
    in_tensors = tensor_remaining_fraction(result.state, list(mask))
    layers = {
        name: {"kept": kept, "total": total, "remaining": round(kept / total, 6),
               "nonzero_remaining": round(in_tensors[name], 6)}
        for name, (kept, total) in kept_counts(mask).items()
    }
    names = [m.name for m in task.metrics]
    effective = {}
    if chain is not None:
        from lth.pruning.effective import effective_fields

        effective = effective_fields(mask, chain)
        for name, fields in effective.pop("effective_layers", {}).items():
            layers[name].update(fields)
    return {
        "weights_remaining": round(remaining_fraction(mask), 6),
        **effective,
        "nonzero_weights_remaining": round(in_tensors["all"], 6),
        **{key("start", "test", m): start[f"test_{m}"] for m in names},
        **{key("end", split, m): final[f"{split}_{m}"] for split in ("test", "val") for m in (*names, "loss")},
        "early_stop_iteration": early["iteration"],
        **{key("early_stop", split, m): early[f"{split}_{m}"] for split, m in
           [*(("test", m) for m in names), *(("val", m) for m in names), ("val", "loss")]},
        "iterations": result.iterations,
        "layers": layers,
    }


def round_record(round_index: int, networks: Sequence["Network"], results: Sequence["TrainResult"], task: "Task",
                 seconds: Optional[float] = None, chain: "Sequence[str] | str | None" = None) -> dict:
    """Everything measured in a round: one entry per network (trial, arm, metrics, learning curve).

    `seconds`, the wall time of the round's training, is shared equally among the networks trained together
    (each entry's `seconds`: what its training cost, for compute-to-ticket). `chain`: see `network_metrics`.
    """
    share = {} if seconds is None else {"seconds": round(seconds / max(len(networks), 1), 3)}
    entries = [{"trial": n.trial, "arm": n.arm, **network_metrics(n.mask, r, task, chain), **share, "curve": r.curve}
               for n, r in zip(networks, results)]
    ticket = next((e for e in entries if e["arm"] == TICKET), entries[0])  # experiments may name no arm 'ticket'
    return {"format": FORMAT, "task": task.name, "round": round_index, "weights_remaining": ticket["weights_remaining"],
            "networks": entries}


# --- reading records, of every format ------------------------------------------------------------------------

_V1_NAMES = {"nonzero_remaining": "nonzero_weights_remaining", "supermask_test_acc": "start_test_acc",
             "test_acc": "end_test_acc", "test_loss": "end_test_loss", "val_acc": "end_val_acc",
             "val_loss": "end_val_loss"}
_V1_PERCENT = ("weights_remaining", "nonzero_remaining")


def upgrade(record: dict) -> dict:
    """A round record in today's format (a format-1 record renamed and converted; a current one as it is)."""
    if record.get("format", 1) >= FORMAT:
        return record
    networks = []
    for net in record.get("networks", []):
        entry = {}
        for name, value in net.items():
            if name in _V1_PERCENT and isinstance(value, (int, float)):
                value = round(value / 100, 6)
            elif name == "layers":
                value = {layer: {**info, **{k: round(info[k] / 100, 6) for k in ("remaining", "nonzero_remaining")
                                            if isinstance(info.get(k), (int, float))}} for layer, info in value.items()}
            entry[_V1_NAMES.get(name, name)] = value
        networks.append(entry)
    rest = {k: v for k, v in record.items() if k not in ("round", "weights_remaining", "networks")}
    return {"format": FORMAT, "task": "classification", "round": record["round"],
            "weights_remaining": round(record["weights_remaining"] / 100, 6), **rest, "networks": networks}


def upgrade_at_init(result: dict) -> dict:
    """A pruning-at-init result (lth.experiments.prune_at_init) in today's format: a format-1 result (target and
    weights in percent, `test_acc` for the end of training) renamed and converted."""
    if "target_weights_remaining" in result:
        return result
    record = upgrade({"round": 0, **{k: v for k, v in result.items()
                                     if k not in ("method", "remaining_target", "collapsed_layers")}})
    del record["round"]
    return {"method": result["method"], "target_weights_remaining": round(result["remaining_target"] / 100, 6),
            "collapsed_layers": result.get("collapsed_layers", {}), **record}


def upgrade_stability(record: dict) -> dict:
    """An instability analysis (lth.experiments.stability) in today's format: one written before the naming scheme (barrier and test error in
    percentage points, `endpoints_test_acc`) converted to fractions and today's names."""
    if record.get("task") is not None or not record.get("rewinds"):
        return record
    rewinds = [{**{k: v for k, v in r.items() if k not in ("barrier", "test_error", "endpoints_test_acc")},
                "barrier": round(r["barrier"] / 100, 6), "test_error": [round(e / 100, 6) for e in r["test_error"]],
                "end_test_acc": r["endpoints_test_acc"]} for r in record["rewinds"]]
    return {**record, "weights_remaining": round(record["weights_remaining"] / 100, 6), "task": "classification",
            "error": "error", "threshold": round(record.get("threshold", 2.0) / 100, 6), "rewinds": rewinds}


def read_record(path: str | Path) -> dict:
    """A round record from disk, in today's format."""
    return upgrade(files.read_json(path))


def compute_to_ticket(records: Sequence[dict]) -> list[dict]:
    """What each round's ticket cost, per trial: the training steps (and wall seconds) spent on that trial's
    tickets in the rounds before it (`to_ticket_*`: what finding its mask and start took, round r00 and its
    rewind point included) and with its own training (`total_*`: what knowing its accuracy took). Control
    arms are excluded; early-bird rounds count the steps they actually trained. Seconds are None where a
    record holds none (runs made before they were recorded)."""
    rows, spent = [], {}
    for record in sorted(records, key=lambda r: r["round"]):
        judged_by = headline(task_of(record))
        for net in record["networks"]:
            if net["arm"] != TICKET:
                continue
            iterations, seconds = spent.get(net["trial"], (0, 0.0))
            own = net.get("seconds")
            total_seconds = None if seconds is None or own is None else round(seconds + own, 3)
            rows.append({"round": record["round"], "trial": net["trial"], "weights_remaining": net["weights_remaining"],
                         judged_by: net[judged_by], "iterations": net["iterations"],
                         "stopped_early": net.get("early_bird", {}).get("stopped_at") is not None,
                         "to_ticket_iterations": iterations, "total_iterations": iterations + net["iterations"],
                         "to_ticket_seconds": seconds, "total_seconds": total_seconds})
            spent[net["trial"]] = (iterations + net["iterations"], total_seconds)
    return rows
