"""What a round measured, as written to metrics/rounds/rNN.json: one entry per network (trial x arm).

Every entry holds the network's weights remaining (from its mask, and measured in the trained tensors,
overall and per layer), its accuracy and loss at the end and at the early-stop point, and its curve.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from lth.core.masks import kept_counts, remaining_percent, tensor_remaining_percent

if TYPE_CHECKING:
    from torch import Tensor

    from lth.training.evaluation import TrainResult
    from lth.training.trainer import Network

TICKET = "ticket"  # the arm name of a trial's ticket; controls are named after lth.pruning.controls.CONTROLS


def network_metrics(mask: Mapping[str, "Tensor"], result: "TrainResult") -> dict:
    """The scalar results of one network, plus per-layer sparsity measured in the trained tensors."""
    final, early = result.final, result.early_stop
    in_tensors = tensor_remaining_percent(result.state, list(mask))
    layers = {
        name: {"kept": kept, "total": total, "remaining": round(100.0 * kept / total, 4),
               "nonzero_remaining": round(in_tensors[name], 4)}
        for name, (kept, total) in kept_counts(mask).items()
    }
    return {
        "weights_remaining": round(remaining_percent(mask), 4),
        "nonzero_remaining": round(in_tensors["all"], 4),
        "supermask_test_acc": result.curve[0]["test_acc"],  # the masked starting weights, before any training
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "val_acc": final["val_acc"],
        "val_loss": final["val_loss"],
        "early_stop_iteration": early["iteration"],
        "early_stop_test_acc": early["test_acc"],
        "early_stop_val_acc": early["val_acc"],
        "early_stop_val_loss": early["val_loss"],
        "iterations": result.iterations,
        "layers": layers,
    }


def round_record(round_index: int, networks: Sequence["Network"], results: Sequence["TrainResult"],
                 seconds: Optional[float] = None) -> dict:
    """Everything measured in a round: one entry per network (trial, arm, metrics, learning curve).

    `seconds`, the wall time of the round's training, is shared equally among the networks trained together
    (each entry's `seconds`: what its training cost, for compute-to-ticket).
    """
    share = {} if seconds is None else {"seconds": round(seconds / max(len(networks), 1), 3)}
    entries = [{"trial": n.trial, "arm": n.arm, **network_metrics(n.mask, r), **share, "curve": r.curve}
               for n, r in zip(networks, results)]
    ticket = next((e for e in entries if e["arm"] == TICKET), entries[0])  # experiments may name no arm 'ticket'
    return {"round": round_index, "weights_remaining": ticket["weights_remaining"], "networks": entries}


def compute_to_ticket(records: Sequence[dict]) -> list[dict]:
    """What each round's ticket cost, per trial: the training steps (and wall seconds) spent on that trial's
    tickets in the rounds before it (`to_ticket_*`: what finding its mask and start took, round r00 and its
    rewind point included) and with its own training (`total_*`: what knowing its accuracy took). Control
    arms are excluded; early-bird rounds count the steps they actually trained. Seconds are None where a
    record holds none (runs made before they were recorded)."""
    rows, spent = [], {}
    for record in sorted(records, key=lambda r: r["round"]):
        for net in record["networks"]:
            if net["arm"] != TICKET:
                continue
            iterations, seconds = spent.get(net["trial"], (0, 0.0))
            own = net.get("seconds")
            total_seconds = None if seconds is None or own is None else round(seconds + own, 3)
            rows.append({"round": record["round"], "trial": net["trial"], "weights_remaining": net["weights_remaining"],
                         "early_stop_test_acc": net["early_stop_test_acc"], "iterations": net["iterations"],
                         "stopped_early": net.get("early_bird", {}).get("stopped_at") is not None,
                         "to_ticket_iterations": iterations, "total_iterations": iterations + net["iterations"],
                         "to_ticket_seconds": seconds, "total_seconds": total_seconds})
            spent[net["trial"]] = (iterations + net["iterations"], total_seconds)
    return rows
