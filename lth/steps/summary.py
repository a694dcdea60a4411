"""Step `summary`: the tables of finished rounds, and the files they go to.

A round record holds one entry per network (trial x arm). Tables here are long (one row per network,
metrics/networks.csv) for analysis, or aggregated over trials (mean, min, max) per round and arm for the
plot data and the DVC metrics: the headline (metrics/summary.json: `best.test_acc`,
`sparsest_matching.weights_remaining`, the fewest weights at which the ticket still matches the dense
network's early-stop test accuracy, `dense.*`, `last.*`) apart from the per-round detail
(metrics/per_round.json: `r05.test_acc`, `r05.reinit.early_stop_test_acc`), so tables of the
headline stay narrow.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean
from typing import Iterable, Optional

from lth.core import files
from lth.engine.params import DENSE_ROUND
from lth.engine.records import TICKET, compute_to_ticket
from lth.engine.run import Run

NETWORK_COLUMNS = [
    "round", "trial", "arm", "weights_remaining", "test_acc", "early_stop_test_acc", "early_stop_iteration",
    "val_acc", "val_loss", "test_loss", "iterations",
]
DVC_ROUND_KEYS = ("weights_remaining", "test_acc", "test_loss", "early_stop_test_acc", "early_stop_iteration")
DVC_CONTROL_KEYS = ("test_acc", "early_stop_test_acc")
STAT_KEYS = ("test_acc", "test_loss", "early_stop_test_acc", "early_stop_iteration")
COMPUTE_KEYS = ("to_ticket_iterations", "total_iterations")  # not the seconds: `dvc metrics diff` shows results


def network_rows(records: Iterable[dict]) -> list[dict]:
    """One flat row per (round, trial, arm); per-layer detail and curves stay in the round records."""
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        for net in record["networks"]:
            rows.append({c: _finite(record["round"] if c == "round" else net[c]) for c in NETWORK_COLUMNS})
    return rows


def arm_stats(record: dict, arm: str) -> Optional[dict]:
    """Mean, min and max over trials of one arm's results in a round (None if the arm was not trained)."""
    nets = [n for n in record["networks"] if n["arm"] == arm]
    if not nets:
        return None
    stats: dict = {"weights_remaining": nets[0]["weights_remaining"], "trials": len(nets)}
    for key in STAT_KEYS:
        values = [n[key] for n in nets if _finite(n[key]) is not None]
        stats[key] = fmean(values) if values else None
        stats[f"{key}_min"] = min(values) if values else None
        stats[f"{key}_max"] = max(values) if values else None
    return stats


def arms(records: Iterable[dict]) -> list[str]:
    """Every arm present, ticket first."""
    found = {n["arm"] for r in records for n in r["networks"]}
    return [TICKET] + sorted(found - {TICKET})


def headline_metrics(records: Iterable[dict]) -> dict:
    """What `dvc metrics show` and `dvc exp show` should show first: the best ticket, the sparsest ticket
    still matching the dense network, the dense network and the last round (ticket means over trials)."""
    records = sorted(records, key=lambda r: r["round"])
    tickets = [(r["round"], arm_stats(r, TICKET)) for r in records]
    summary: dict = {}
    if tickets:
        best = max(tickets, key=lambda rt: (rt[1]["early_stop_test_acc"], -rt[1]["weights_remaining"]))
        summary["best"] = _headline(*best)
        dense = next((t for r, t in tickets if r == 0), None)
        if dense is not None:
            matching = [rt for rt in tickets if rt[1]["early_stop_test_acc"] >= dense["early_stop_test_acc"]]
            summary["sparsest_matching"] = _headline(*min(matching, key=lambda rt: rt[1]["weights_remaining"]))
            summary["dense"] = _headline(0, dense)
        summary["last"] = _headline(*tickets[-1])
    return summary


def round_metrics(records: Iterable[dict]) -> dict:
    """Every round's ticket (mean over trials), its compute-to-ticket and its controls, for `dvc metrics diff`
    round by round."""
    records = sorted(records, key=lambda r: r["round"])
    compute = compute_to_ticket(records)
    metrics: dict = {}
    for record in records:
        ticket = arm_stats(record, TICKET)
        entry = {k: _finite(ticket[k]) for k in DVC_ROUND_KEYS}
        entry["compute"] = _mean_compute([row for row in compute if row["round"] == record["round"]])
        for arm in arms([record])[1:]:
            stats = arm_stats(record, arm)
            entry[arm] = {k: _finite(stats[k]) for k in DVC_CONTROL_KEYS}
        metrics[f"r{record['round']:02d}"] = entry
    return metrics


def _mean_compute(rows: list[dict]) -> dict:
    """Compute-to-ticket of a round in training steps, mean over trials (lth.engine.records.compute_to_ticket;
    the wall seconds are in the round records and the report)."""
    return {key: round(fmean(row[key] for row in rows), 3) for key in COMPUTE_KEYS}


def _headline(round_index: int, stats: dict) -> dict:
    """A round in three numbers: which, how sparse, how accurate (at early stop; the rest is in per_round.json)."""
    return {"round": round_index, "weights_remaining": stats["weights_remaining"],
            "test_acc": _finite(stats["early_stop_test_acc"])}


def plot_rows(records: Iterable[dict], controls: Iterable[str] = ("reinit", "random-prune")) -> list[dict]:
    """One row per round for `dvc plots`: the ticket's mean (and range) over trials, and each control's mean.

    Every control column is present in every row (null where not trained) so a plot's fields always
    exist; at round 0 every arm is the dense network, so controls take the dense values there.
    """
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        ticket = arm_stats(record, TICKET)
        row = {"round": record["round"], "weights_remaining": record["weights_remaining"]}
        for key in ("test_acc", "early_stop_test_acc", "early_stop_iteration"):
            row[key] = _finite(ticket[key])
        row["early_stop_test_acc_min"] = _finite(ticket["early_stop_test_acc_min"])
        row["early_stop_test_acc_max"] = _finite(ticket["early_stop_test_acc_max"])
        for control in controls:
            stats = arm_stats(record, control) or (ticket if record["round"] == 0 else None)
            column = control.replace("-", "_")
            row[f"{column}_early_stop_test_acc"] = _finite(stats["early_stop_test_acc"]) if stats else None
            row[f"{column}_early_stop_iteration"] = _finite(stats["early_stop_iteration"]) if stats else None
        rows.append(row)
    return rows


def learning_curve_rows(records: Iterable[dict]) -> list[dict]:
    """Long-format learning curves of the ticket (mean over trials), labelled by round and % weights."""
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        curves = [n["curve"] for n in record["networks"] if n["arm"] == TICKET]
        label = f"r{record['round']:02d} ({record['weights_remaining']:.1f}%)"
        for points in zip(*curves):
            rows.append({"weights": label, "iteration": points[0]["iteration"],
                         "test_acc": _finite(fmean(p["test_acc"] for p in points)),
                         "val_loss": _finite(fmean(p["val_loss"] for p in points))})
    return rows


def layer_rows(records: Iterable[dict]) -> list[dict]:
    """Per round and prunable layer: weights kept and % remaining in trial 0's ticket (trials prune alike)."""
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        ticket = next((n for n in record["networks"] if n["arm"] == TICKET), None)
        for layer, info in (ticket or {}).get("layers", {}).items():
            rows.append({"round": record["round"], "weights_remaining": record["weights_remaining"], "layer": layer,
                         "kept": info["kept"], "total": info["total"], "remaining": info["remaining"]})
    return rows


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --- the step ------------------------------------------------------------------------------------------


def outputs(run: Run) -> list[Path]:
    layout = run.layout
    return [layout.summary, layout.round_summary, layout.networks_table, layout.accuracy_plot, layout.curves_plot,
            layout.layers_plot]


def run(run: Run, keys: list[str] | None = None) -> list[dict]:
    """Summarises rounds `keys` (default: r00 and every declared round) into metrics/summary.json (headline
    metrics), metrics/per_round.json, metrics/networks.csv and the plot data; returns their records."""
    import pandas as pd

    layout = run.layout
    records = [run.record(key) for key in (keys or [DENSE_ROUND, *run.rounds])]
    files.write_json(layout.summary, headline_metrics(records))
    files.write_json(layout.round_summary, round_metrics(records))
    frame = pd.DataFrame(network_rows(records), columns=NETWORK_COLUMNS)
    files.atomic_write_bytes(layout.networks_table, frame.to_csv(index=False).encode())
    files.write_json(layout.accuracy_plot, plot_rows(records))
    files.write_json(layout.curves_plot, learning_curve_rows(records))
    files.write_json(layout.layers_plot, layer_rows(records))
    return records
