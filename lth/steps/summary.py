"""Step `summary`: the tables of finished rounds, and the files they go to.

A round record holds one entry per network (trial x arm). Tables here are long (one row per network,
metrics/networks.csv) for analysis, or aggregated over trials (mean, min, max) per round and arm for the
plot data and the DVC metrics: the headline (metrics/summary.json: `best.early_stop_test_acc`,
`sparsest_matching.weights_remaining`, the fewest weights at which the ticket still matches the dense
network's early-stop test metric, `dense.*`, `last.*`) apart from the per-round detail
(metrics/per_round.json: `r05.end_test_acc`, `r05.reinit.early_stop_test_acc`), so tables of the
headline stay narrow. Names and units follow lth.runs.records (fractions; `{when}_{split}_{metric}`).
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import fmean, stdev
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from lth.core import files
from lth.runs.params import DENSE_ROUND
from lth.runs.records import TICKET, compute_to_ticket, headline, task_of
from lth.runs.run import Run

if TYPE_CHECKING:
    from lth.core import noise
    from lth.tasks.base import Task

def network_columns(task: "Task") -> list[str]:
    """The columns of metrics/networks.csv for a task: one row per network, the task's test metrics at the
    end and at early stop, the early-stop iteration, validation metrics and losses (lth.runs.records names)."""
    names = [m.name for m in task.metrics]
    return ["round", "trial", "arm", "weights_remaining", "effective_remaining", *(f"end_test_{m}" for m in names),
            *(f"early_stop_test_{m}" for m in names), "early_stop_iteration", *(f"end_val_{m}" for m in names),
            "end_val_loss", "end_test_loss", "iterations"]


def stat_keys(task: "Task") -> list[str]:
    """What `arm_stats` aggregates over trials."""
    names = [m.name for m in task.metrics]
    return [*(f"end_test_{m}" for m in names), "end_test_loss", *(f"early_stop_test_{m}" for m in names),
            "early_stop_iteration"]


def round_keys(task: "Task") -> list[str]:
    """What per_round.json holds of each round's ticket (besides its compute)."""
    return ["weights_remaining", *(f"end_test_{m.name}" for m in task.metrics), "end_test_loss",
            *(f"early_stop_test_{m.name}" for m in task.metrics), f"early_stop_test_{task.headline.name}_std",
            "early_stop_iteration"]


def control_keys(task: "Task") -> list[str]:
    """What per_round.json holds of each control arm (means over trials, and the early-stop metric's spread)."""
    return [f"end_test_{task.headline.name}", f"early_stop_test_{task.headline.name}",
            f"early_stop_test_{task.headline.name}_std"]


COMPUTE_KEYS = ("to_ticket_iterations", "total_iterations")  # not the seconds: `dvc metrics diff` shows results


def network_rows(records: Iterable[dict]) -> list[dict]:
    """One flat row per (round, trial, arm); per-layer detail and curves stay in the round records."""
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        columns = network_columns(task_of(record))
        for net in record["networks"]:
            # effective_remaining: None in records written before it was measured (or not computed for the model)
            rows.append({c: _finite(record["round"] if c == "round" else net.get(c) if c == "effective_remaining"
                                    else net[c]) for c in columns})
    return rows


def arm_stats(record: dict, arm: str) -> Optional[dict]:
    """Mean, min and max over trials of one arm's results in a round (None if the arm was not trained)."""
    nets = [n for n in record["networks"] if n["arm"] == arm]
    if not nets:
        return None
    stats: dict = {"weights_remaining": nets[0]["weights_remaining"], "trials": len(nets)}
    for key in stat_keys(task_of(record)):
        values = [n[key] for n in nets if _finite(n[key]) is not None]
        stats[key] = fmean(values) if values else None
        stats[f"{key}_min"] = min(values) if values else None
        stats[f"{key}_max"] = max(values) if values else None
        stats[f"{key}_std"] = stdev(values) if len(values) > 1 else 0.0 if values else None
        stats[f"{key}_values"] = values
    return stats


def estimate_of(stats: dict, key: str, task: "Task", test_size: Optional[int]) -> "noise.Estimate":
    """An arm's `key` over its trials as lth.core.noise judges it (a fraction of test examples: binomial floor)."""
    from lth.core import noise

    binomial = task.metric(key.rsplit("_", 1)[-1]).percent if key.startswith(("end_test_", "early_stop_test_")) \
        else False
    return noise.estimate(stats[f"{key}_values"], test_size, binomial)


def arms(records: Iterable[dict]) -> list[str]:
    """Every arm present, ticket first."""
    found = {n["arm"] for r in records for n in r["networks"]}
    return [TICKET] + sorted(found - {TICKET})


def records_task(records: Sequence[dict]) -> "Task":
    """The one task of a run's records (runs mixing tasks do not exist: the task is a setting of the run)."""
    from lth.core.errors import LthError

    tasks = {task_of(r).name for r in records}
    if len(tasks) > 1:
        raise LthError(f"these records mix tasks ({', '.join(sorted(tasks))}); compare runs of one task")
    return task_of(records[0]) if records else task_of({})


def headline_metrics(records: Iterable[dict], test_size: Optional[int] = None) -> dict:
    """What `dvc metrics show` and `dvc exp show` should show first: the best ticket, the sparsest ticket
    still matching the dense network, the dense network and the last round (ticket means over trials, with
    their standard deviation), each judged by the task's test headline metric at early stop
    (`early_stop_test_acc`: higher is better; `early_stop_test_rmse`: lower is better). "Matching" is
    lth.core.noise's rule (worse than dense by no more than two standard errors of the difference: the trials'
    spread, at least the sampling error of `test_size` test examples), stated in the file under `matching`."""
    from lth.core import noise

    records = sorted(records, key=lambda r: r["round"])
    task = records_task(records)
    metric, judged_by = task.headline, headline(task)
    sign = 1 if metric.higher_is_better else -1
    tickets = [(r["round"], arm_stats(r, TICKET)) for r in records]
    summary: dict = {}
    if tickets:
        best = max(tickets, key=lambda rt: (sign * rt[1][judged_by], -rt[1]["weights_remaining"]))
        summary["best"] = _headline(*best, judged_by)
        dense = next((t for r, t in tickets if r == 0), None)
        if dense is not None:
            reference = estimate_of(dense, judged_by, task, test_size)
            matching = [rt for rt in tickets if noise.matches(estimate_of(rt[1], judged_by, task, test_size),
                                                              reference, metric.higher_is_better)]
            summary["sparsest_matching"] = _headline(*min(matching, key=lambda rt: rt[1]["weights_remaining"]),
                                                     judged_by)
            summary["dense"] = _headline(0, dense, judged_by)
        summary["last"] = _headline(*tickets[-1], judged_by)
        summary["matching"] = {"rule": noise.RULE, "z": noise.Z, "test_examples": test_size}
    return summary


def round_metrics(records: Iterable[dict]) -> dict:
    """Every round's ticket (mean over trials), its compute-to-ticket and its controls, for `dvc metrics diff`
    round by round."""
    records = sorted(records, key=lambda r: r["round"])
    compute = compute_to_ticket(records)
    metrics: dict = {}
    for record in records:
        task = task_of(record)
        ticket = arm_stats(record, TICKET)
        entry = {k: (_rounded if k.endswith("_std") else _finite)(
                 record["weights_remaining"] if k == "weights_remaining" else ticket[k]) for k in round_keys(task)}
        entry["compute"] = _mean_compute([row for row in compute if row["round"] == record["round"]])
        for arm in arms([record])[1:]:
            stats = arm_stats(record, arm)
            entry[arm] = {k: (_rounded if k.endswith("_std") else _finite)(stats[k]) for k in control_keys(task)}
        metrics[f"r{record['round']:02d}"] = entry
    return metrics


def _mean_compute(rows: list[dict]) -> dict:
    """Compute-to-ticket of a round in training steps, mean over trials (lth.runs.records.compute_to_ticket;
    the wall seconds are in the round records and the report)."""
    return {key: round(fmean(row[key] for row in rows), 3) for key in COMPUTE_KEYS}


def _headline(round_index: int, stats: dict, judged_by: str) -> dict:
    """A round in three numbers: which, how sparse, how good (at early stop; the rest is in per_round.json)."""
    return {"round": round_index, "weights_remaining": stats["weights_remaining"],
            judged_by: _finite(stats[judged_by]), f"{judged_by}_std": _rounded(stats[f"{judged_by}_std"]),
            "trials": stats["trials"]}


def _rounded(value):
    """A spread to 6 digits (float noise in the last bits would show as changes in `dvc metrics diff`)."""
    value = _finite(value)
    return round(value, 6) if isinstance(value, float) else value


def plot_rows(records: Iterable[dict], controls: Iterable[str] = ("reinit", "random-prune")) -> list[dict]:
    """One row per round for `dvc plots`: the ticket's mean (and range) over trials, and each control's mean.

    Every control column is present in every row (null where not trained) so a plot's fields always
    exist; at round 0 every arm is the dense network, so controls take the dense values there.
    """
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        ticket, task = arm_stats(record, TICKET), task_of(record)
        end, early = headline(task, "end"), headline(task)
        row = {"round": record["round"], "weights_remaining": record["weights_remaining"]}
        for key in (end, early, "early_stop_iteration", f"{early}_min", f"{early}_max"):
            row[key] = _finite(ticket[key])
        for control in controls:
            stats = arm_stats(record, control) or (ticket if record["round"] == 0 else None)
            column = control.replace("-", "_")
            row[f"{column}_{early}"] = _finite(stats[early]) if stats else None
            row[f"{column}_early_stop_iteration"] = _finite(stats["early_stop_iteration"]) if stats else None
        rows.append(row)
    return rows


def learning_curve_rows(records: Iterable[dict]) -> list[dict]:
    """Long-format learning curves of the ticket (mean over trials): its test headline metric and validation loss
    at each evaluation, labelled by round and % weights."""
    rows = []
    for record in sorted(records, key=lambda r: r["round"]):
        curves = [n["curve"] for n in record["networks"] if n["arm"] == TICKET]
        label = f"r{record['round']:02d} ({100 * record['weights_remaining']:.1f}%)"
        metric = f"test_{task_of(record).headline.name}"
        for points in zip(*curves):
            rows.append({"weights": label, "iteration": points[0]["iteration"],
                         metric: _finite(fmean(p[metric] for p in points)),
                         "val_loss": _finite(fmean(p["val_loss"] for p in points))})
    return rows


def layer_rows(records: Iterable[dict]) -> list[dict]:
    """Per round and prunable layer: weights kept and the fraction remaining in trial 0's ticket (trials prune
    alike)."""
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
    return [layout.summary, layout.round_summary, layout.networks_table, layout.sparsity_plot, layout.curves_plot,
            layout.layers_plot]


def execute(run: Run, keys: list[str] | None = None) -> list[dict]:
    """Summarises rounds `keys` (default: r00 and every declared round) into metrics/summary.json (headline
    metrics), metrics/per_round.json, metrics/networks.csv and the plot data; returns their records."""
    import pandas as pd

    layout = run.layout
    records = [run.record(key) for key in (keys or [DENSE_ROUND, *run.rounds])]
    files.write_json(layout.summary, headline_metrics(records, run.shape.test_size))
    files.write_json(layout.round_summary, round_metrics(records))
    frame = pd.DataFrame(network_rows(records), columns=network_columns(records_task(records)))
    files.atomic_write_bytes(layout.networks_table, frame.to_csv(index=False).encode())
    files.write_json(layout.sparsity_plot, plot_rows(records))
    files.write_json(layout.curves_plot, learning_curve_rows(records))
    files.write_json(layout.layers_plot, layer_rows(records))
    return records


def remove_undeclared_rounds(run: Run) -> list[str]:
    """Remove the results of rounds params.yaml no longer declares (after `rounds` shrank): their metrics and
    data/rounds folders, so the workspace and git hold only what the params made and nobody reads an r07
    of an earlier chain beside today's r01-r03. DVC's cache keeps the data (`dvc checkout` of that commit).
    Returns the removed rounds."""
    import shutil

    declared = {DENSE_ROUND, *run.rounds}
    stale = [key for key in run.layout.round_keys_on_disk() if key not in declared]
    for key in stale:
        run.layout.round_metrics(key).unlink(missing_ok=True)
        folder = run.layout.root / "data" / "rounds" / key
        if folder.is_dir():
            shutil.rmtree(folder)
    return stale
