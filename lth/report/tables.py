"""The report's tables, as pandas frames: every network, each arm aggregated over trials, and per-layer sparsity.

Aggregation is over trials only (mean, min, max per run, round and arm), so a band in a plot is the
spread between seeds. At round 0 every arm is the dense network; controls start at round 1. Columns are
named as in every results file (lth.runs.records: `early_stop_test_acc`, fractions); the runs of one
report share one task, whose headline metric (accuracy, RMSE) the tables and figures show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from lth.pruning.settings import PruneSettings
from lth.runs.records import TICKET, headline, task_of
from lth.steps.summary import layer_rows, network_columns, network_rows

if TYPE_CHECKING:
    import pandas as pd

    from lth.report.sources import RunData
    from lth.tasks.base import Task


def report_task(runs: Iterable["RunData"]) -> "Task":
    """The one task of the report's runs (their round records' and pruning-at-init results'); runs of two tasks
    are not compared on one axis."""
    from lth.core.errors import LthError

    found = {task_of(entry).name: task_of(entry) for run in runs for entry in (*run.records, *run.at_init)}
    if len(found) > 1:
        raise LthError(f"these runs are of different tasks ({', '.join(sorted(found))}): report them separately")
    return next(iter(found.values()), task_of({}))


def aggregated(task: "Task") -> tuple[str, ...]:
    """What the report aggregates over trials: the headline metric at early stop and at the end, the iteration."""
    return headline(task), headline(task, "end"), "early_stop_iteration"


def network_frame(runs: Iterable["RunData"]) -> "pd.DataFrame":
    """One row per (run, round, trial, arm) with the runner's per-network columns."""
    import pandas as pd

    runs = list(runs)
    columns = network_columns(report_task(runs))
    frames = [pd.DataFrame(network_rows(run.records), columns=columns).assign(run=run.label) for run in runs]
    frame = pd.concat(frames, ignore_index=True)
    return frame[["run", *columns]]


def arm_frame(networks: "pd.DataFrame", task: "Task") -> "pd.DataFrame":
    """Mean, min and max over trials of each run x round x arm (columns like `early_stop_test_acc_mean`)."""
    grouped = networks.groupby(["run", "round", "arm"], sort=False)
    stats = grouped[list(aggregated(task))].agg(["mean", "min", "max", "std"])
    stats.columns = [f"{metric}_{stat}" for metric, stat in stats.columns]
    stats["weights_remaining"] = grouped["weights_remaining"].first()
    stats["effective_remaining"] = grouped["effective_remaining"].mean()  # NaN where not measured
    stats["trials"] = grouped["trial"].nunique()
    frame = stats.reset_index()
    order = ["run", "round", "arm", "weights_remaining", "effective_remaining", "trials"]
    return frame[order + [c for c in frame.columns if c not in order]]  # in the records' order: ticket first


def dense_reference(arms: "pd.DataFrame") -> "pd.DataFrame":
    """Each run's dense network (round 0 ticket): the horizontal reference line of the accuracy plot."""
    dense = arms[(arms["round"] == 0) & (arms["arm"] == TICKET)]
    return dense.set_index("run")


def layer_frame(runs: Iterable["RunData"]) -> "pd.DataFrame":
    """Per run, round and layer: weights kept and % remaining (see lth.steps.summary.layer_rows)."""
    import pandas as pd

    columns = ["round", "weights_remaining", "layer", "kept", "total", "remaining"]  # fractions
    frames = [pd.DataFrame(layer_rows(run.records), columns=columns).assign(run=run.label) for run in runs]
    return pd.concat(frames, ignore_index=True)[["run", *columns]]


def layer_table(layers: "pd.DataFrame", run: str) -> "pd.DataFrame":
    """Wide per-layer table of one run: a row per round, a column per layer (the fraction remaining)."""
    own = layers[layers["run"] == run]
    wide = own.pivot_table(index=["round", "weights_remaining"], columns="layer", values="remaining", sort=False)
    wide.columns.name = None
    return wide.reset_index()


def headline_table(arms: "pd.DataFrame", task: "Task") -> "pd.DataFrame":
    """Wide table per run and round: the ticket's mean [min, max] test headline metric at early stop (and its mean
    at the end) next to each control's mean at early stop."""
    import pandas as pd

    early, end = headline(task), headline(task, "end")
    rows = []
    for (run, r), group in arms.groupby(["run", "round"], sort=False):
        by_arm = group.set_index("arm")
        ticket = by_arm.loc[TICKET]
        row = {"run": run, "round": r, "weights_remaining": ticket["weights_remaining"],
               "trials": int(ticket["trials"]),
               f"ticket_{early}": ticket[f"{early}_mean"],
               f"ticket_{early}_min": ticket[f"{early}_min"],
               f"ticket_{early}_max": ticket[f"{early}_max"],
               f"ticket_{end}": ticket[f"{end}_mean"],
               "early_stop_iteration": ticket["early_stop_iteration_mean"]}
        for arm in by_arm.index.drop(TICKET):
            row[f"{arm}_{early}"] = by_arm.loc[arm, f"{early}_mean"]
        rows.append(row)
    return pd.DataFrame(rows)


def compaction_table(runs: Iterable["RunData"]) -> "pd.DataFrame":
    """What `lth compact` measured per round: size and CPU speed of the compacted vs the dense network."""
    import pandas as pd

    rows = []
    for run in runs:
        for c in run.compaction:
            end = next((k for k in c if k.startswith("end_test_")), "end_test_acc")
            row = {"run": run.label, "round": c["round"], "trial": c["trial"], "pruning": c["pruning"],
                   "weights_remaining": c.get("weights_remaining"), end: c.get(end),
                   "compact_params": c["params"]["compact"],
                   "params_fraction": c["params"]["compact"] / c["params"]["dense"],
                   "macs_fraction": c["macs"]["compact"] / c["macs"]["dense"],
                   "file_kib": c["file_bytes"]["compact"] / 1024,
                   "outputs_match": c["check"]["outputs_match"]}
            if "cpu" in c:  # timed only with `lth compact --benchmark`
                dense_ms, compact_ms = c["cpu"]["dense"]["latency_ms"], c["cpu"]["compact"]["latency_ms"]
                row.update(dense_ms=dense_ms, compact_ms=compact_ms, speedup=dense_ms / compact_ms)
            rows.append(row)
    return pd.DataFrame(rows)


def at_init_frame(runs: Iterable["RunData"], task: "Task") -> "pd.DataFrame":
    """Pruning at init, per run, method, target and arm: weights remaining and the test headline metric at early
    stop (mean, min, max over trials), and the layers the method emptied."""
    import pandas as pd

    key = headline(task)
    rows = []
    for run in runs:
        for result in run.at_init:
            emptied = sorted({layer for layers in result.get("collapsed_layers", {}).values() for layer in layers})
            for arm in dict.fromkeys(n["arm"] for n in result["networks"]):
                nets = [n for n in result["networks"] if n["arm"] == arm]
                values = [n[key] for n in nets]
                effective = [n.get("effective_remaining") for n in nets]
                rows.append({"run": run.label, "method": result["method"],
                             "target_weights_remaining": result["target_weights_remaining"], "arm": arm,
                             "weights_remaining": nets[0]["weights_remaining"],
                             "effective_remaining": (sum(effective) / len(effective) if None not in effective
                                                     else float("nan")), "trials": len(nets),
                             f"{key}_mean": round(sum(values) / len(values), 6), f"{key}_min": min(values),
                             f"{key}_max": max(values), "emptied_layers": ", ".join(emptied)})
    return pd.DataFrame(rows, columns=["run", "method", "target_weights_remaining", "arm", "weights_remaining",
                                       "effective_remaining", "trials", f"{key}_mean", f"{key}_min", f"{key}_max",
                                       "emptied_layers"])


SPARSE_METHODS = ("static", "set", "rigl")


def sparse_train_frame(runs: Iterable["RunData"], task: "Task") -> "pd.DataFrame":
    """Sparse training from scratch, per run, target, distribution and method: weights remaining (measured in the
    final masks), effective remaining, and the test headline metric at early stop as mean and std over trials."""
    import pandas as pd

    key = headline(task)
    rows = [{"run": run.label, "method": r["method"], "distribution": r["distribution"],
             "target_weights_remaining": r["target_remaining"], "weights_remaining": r["weights_remaining"],
             "effective_remaining": r["effective_remaining"] if r.get("effective_remaining") is not None
             else float("nan"), "trials": r["trials"], f"{key}_mean": r[key], f"{key}_std": r[f"{key}_std"]}
            for run in runs for r in run.sparse_train if key in r]
    order = {method: i for i, method in enumerate(SPARSE_METHODS)}  # static, SET, RigL: as the papers list them
    rows.sort(key=lambda r: (r["run"], -r["target_weights_remaining"], r["distribution"], order.get(r["method"], 99)))
    return pd.DataFrame(rows, columns=["run", "method", "distribution", "target_weights_remaining",
                                       "weights_remaining", "effective_remaining", "trials", f"{key}_mean",
                                       f"{key}_std"])


def sparse_matched_table(sparse: "pd.DataFrame", arms: "pd.DataFrame", at_init: "pd.DataFrame", task: "Task",
                         test_size: Optional[int] = None) -> "pd.DataFrame":
    """A row per run, target and distribution: each sparse-training method's mean ± std next to the IMP ticket and
    its reinit control at the IMP round nearest in weights remaining, and each pruning-at-init method at the
    nearest target; 'best' names the best of them and whether its lead over the second is beyond noise
    (lth.core.noise: 2 standard errors of the difference, the trials' spread or at least the test set's)."""
    import pandas as pd

    from lth.core import noise

    key = headline(task)
    better = task.headline.higher_is_better
    binomial = task.headline.percent
    rows = []
    for (run, target, distribution), group in sparse.groupby(["run", "target_weights_remaining", "distribution"],
                                                              sort=False):
        row: dict = {"run": run, "distribution": distribution,
                     "weights_remaining": round(float(group["weights_remaining"].mean()), 6)}
        candidates: dict[str, tuple[float, float, int]] = {}
        for _, r in group.iterrows():
            row[r["method"]] = f"{r[f'{key}_mean']:.4g} ± {r[f'{key}_std']:.2g}"
            candidates[r["method"]] = (r[f"{key}_mean"], r[f"{key}_std"], int(r["trials"]))
        for arm in (TICKET, "reinit"):
            own = arms[(arms["arm"] == arm)] if not arms.empty else arms
            for imp in (list(dict.fromkeys(own["run"])) if not own.empty else []):
                nearest = nearest_round(own[own["run"] == imp], row["weights_remaining"])
                name = f"IMP {arm}" if arms["run"].nunique() == 1 else f"{imp}: IMP {arm}"
                row[f"{name} weights_remaining"] = nearest["weights_remaining"]
                row[name] = f"{nearest[f'{key}_mean']:.4g}"
                spread = nearest[f"{key}_std"]
                candidates[name] = (nearest[f"{key}_mean"], 0.0 if spread != spread else spread, int(nearest["trials"]))
        tickets = at_init[at_init["arm"] == TICKET] if not at_init.empty else at_init
        for method, rows_of in (tickets.groupby("method", sort=False) if not tickets.empty else []):
            nearest = rows_of.loc[(rows_of["weights_remaining"] - row["weights_remaining"]).abs().idxmin()]
            if 1 / 1.5 <= nearest["weights_remaining"] / row["weights_remaining"] <= 1.5:  # else: not comparable
                row[f"at init: {method}"] = f"{nearest[f'{key}_mean']:.4g} ({100 * nearest['weights_remaining']:.3g}%)"
        ranked = sorted(candidates.items(), key=lambda kv: kv[1][0], reverse=better)
        if len(ranked) > 1:
            (first, a), (_, b) = ranked[0], ranked[1]
            estimates = [noise.from_spread(m, s, n, test_size, binomial) for m, s, n in (a, b)]
            gap = noise.difference(*estimates)
            row["best"] = f"{first} ({'beyond noise' if gap.beyond_noise else 'within noise of the next'})"
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty and frame["run"].nunique() == 1:
        frame = frame.drop(columns="run")
    return frame


def stability_frame(runs: Iterable["RunData"], task: "Task") -> "pd.DataFrame":
    """Instability analyses, a row per run, round, pair and rewind point: the error barrier (in the task's error:
    a fraction misclassified, or RMSE) and the two copies' test headline metric at the end of training."""
    import pandas as pd

    end = headline(task, "end")
    rows = [{"run": run.label, "round": s["round"], "weights_remaining": s["weights_remaining"], "pair": s["pair"],
             "rewind": r["rewind"], "rewind_iteration": r.get("rewind_iteration"), "barrier": r["barrier"],
             f"copy_1_{end}": r[end][0], f"copy_2_{end}": r[end][1]}
            for run in runs for s in run.stability for r in s["rewinds"]]
    return pd.DataFrame(rows, columns=["run", "round", "weights_remaining", "pair", "rewind", "rewind_iteration",
                                       "barrier", f"copy_1_{end}", f"copy_2_{end}"])


def nearest_round(tickets: "pd.DataFrame", weights: float) -> "pd.Series":
    """The (IMP) round whose % weights remaining is closest to `weights` (by ratio: 1.2% is nearer 1% than 0.5%)."""
    import numpy as np

    distance = (np.log(tickets["weights_remaining"]) - np.log(weights)).abs()
    return tickets.loc[distance.idxmin()]


def matched_sparsity_table(at_init: "pd.DataFrame", arms: "pd.DataFrame", task: "Task") -> "pd.DataFrame":
    """A row per pruning-at-init method and target: each arm's test headline metric at early stop (mean over
    trials) next to each IMP run's ticket at its nearest round (its weights shown, since IMP's sparsities are
    0.8^k, not the target)."""
    import pandas as pd

    key = headline(task)
    imp_runs = list(dict.fromkeys(arms["run"])) if not arms.empty else []
    rows = []
    for (run, method, target), group in at_init.groupby(["run", "method", "target_weights_remaining"], sort=False):
        by_arm = group.set_index("arm")
        row = {"run": run, "method": method, "weights_remaining": by_arm.loc[TICKET, "weights_remaining"],
               f"method_{key}": by_arm.loc[TICKET, f"{key}_mean"]}
        row.update({f"{arm}_{key}": by_arm.loc[arm, f"{key}_mean"] for arm in by_arm.index if arm != TICKET})
        for imp in imp_runs:
            tickets = arms[(arms["run"] == imp) & (arms["arm"] == TICKET)]
            nearest = nearest_round(tickets, row["weights_remaining"])
            prefix = "imp" if len(imp_runs) == 1 else f"{imp}: imp"
            row[f"{prefix}_weights_remaining"] = nearest["weights_remaining"]
            row[f"{prefix}_{key}"] = nearest[f"{key}_mean"]
        row["emptied_layers"] = by_arm.loc[TICKET, "emptied_layers"]
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty and frame["run"].nunique() == 1:
        frame = frame.drop(columns="run")
    return frame


def compute_frame(runs: Iterable["RunData"]) -> "pd.DataFrame":
    """Compute-to-ticket per run and round, mean over trials (lth.runs.records.compute_to_ticket): the ticket's
    test headline metric at early stop beside the training steps and seconds spent to reach it and to train it."""
    import pandas as pd

    from lth.runs.records import compute_to_ticket

    runs = list(runs)
    key = headline(report_task(runs))
    columns = ["round", "weights_remaining", key, "iterations", "to_ticket_iterations",
               "total_iterations", "to_ticket_seconds", "total_seconds", "stopped_early"]
    frames = [pd.DataFrame(compute_to_ticket(run.records), columns=["trial", *columns])
              .assign(run=run.label, schedule=schedule_name(run.params)) for run in runs if run.records]
    if not frames:
        return pd.DataFrame(columns=["run", "schedule", *columns])
    rows = pd.concat(frames, ignore_index=True)
    frame = rows.groupby(["run", "schedule", "round"], sort=False).agg(
        {c: ("any" if c == "stopped_early" else "first" if c == "weights_remaining" else "mean")
         for c in columns[1:]}).reset_index()
    return frame[["run", "schedule", *columns]].round({key: 6, "to_ticket_seconds": 3, "total_seconds": 3})


def schedule_name(params: dict) -> str:
    """How a run found its tickets, in a few words: 'one-shot to 5%', 'early-bird, distance 0.1' or 'IMP' (the
    iterative default), from its flat params ('prune.schedule')."""
    bird = f"early-bird, distance {params.get('prune.early_bird_distance', PruneSettings.early_bird_distance):g}"
    if params.get("prune.schedule") == "oneshot":
        return f"one-shot to {100 * float(params.get('prune.target', 0)):g}%" + (f" + {bird}" if
                                                                                 params.get("prune.early_bird") else "")
    return bird if params.get("prune.early_bird") else "IMP"


def compute_matched_table(frame: "pd.DataFrame", tolerance: float = 1.25) -> "pd.DataFrame":
    """Runs side by side at matched sparsity: the sparsities of the runs with the fewest pruning rounds (one-shot
    runs: their one ticket each), and every other run's round nearest to each (by ratio, within `tolerance`)."""
    import numpy as np
    import pandas as pd

    pruned = frame[frame["round"] > 0]
    if pruned.empty:
        return pd.DataFrame(columns=["weights_target", *frame.columns])
    counts = pruned.groupby("run", sort=False)["round"].count()
    fewest = pruned[pruned["run"].isin(counts[counts == counts.min()].index)]
    rows = []
    for weights in sorted(set(fewest["weights_remaining"]), reverse=True):
        for run, group in pruned.groupby("run", sort=False):
            nearest = nearest_round(group, weights)
            if abs(np.log(nearest["weights_remaining"] / weights)) <= np.log(tolerance):
                rows.append({"weights_target": weights, **nearest.to_dict()})
    return pd.DataFrame(rows, columns=["weights_target", *frame.columns])


def transfer_frame(runs: Iterable["RunData"]) -> "pd.DataFrame":
    """Transfer curves (lth.experiments.transfer), a row per run, target, arm and round: the target task's test
    headline metric at early stop (mean and standard deviation over the trials), in the target's unit where it
    has one (RMSE in degrees for mnist-5k-rotation); `source` rows are the source run's own ticket curve (its
    own metric on its own test set)."""
    import pandas as pd

    from lth.tasks import metric_named

    rows = []
    for run in runs:
        for curve in run.transfer_curves:
            metric = metric_named(curve["metric"])
            unit = curve.get("unit") or {}
            scale = unit.get("per_target", 1.0) if metric.name == "rmse" else 1.0
            key = f"early_stop_test_{metric.name}"
            base = {"run": run.label, "target": curve["target"], "task": curve["task"], "metric": metric.name,
                    "unit": unit.get("name", "") if scale != 1.0 else ("%" if metric.percent else ""),
                    "trials": curve["trials"], "test_examples": curve.get("test_examples")}

            def row(arm: str, label: str, weights: float, entry: dict) -> dict:
                return {**base, "round": label, "arm": arm, "weights_remaining": weights,
                        "mean": round(entry[key] * scale, 6), "std": round(entry.get(f"{key}_std", 0.0) * scale, 6)}

            rows.append(row("dense", "r00", 1.0, curve["dense"]))
            for label, entry in curve["rounds"].items():
                for arm in ("ticket", "reinit"):
                    rows.append(row(arm, label, entry["weights_remaining"], entry[arm]))
            source = curve.get("source", {})
            for label, entry in source.get("curve", {}).items():
                name = next((k for k in entry if k.startswith("early_stop_test_")), None)
                if name is not None:
                    rows.append({**base, "round": label, "arm": f"source ({source.get('dataset', '?')})",
                                 "metric": name[len("early_stop_test_"):], "unit": "", "trials": 1,
                                 "weights_remaining": entry["weights_remaining"], "mean": entry[name], "std": 0.0})
    return pd.DataFrame(rows, columns=["run", "target", "task", "metric", "unit", "trials", "test_examples", "round",
                                       "arm", "weights_remaining", "mean", "std"])


def transfer_table(frame: "pd.DataFrame") -> "pd.DataFrame":
    """The transfer curves side by side: a row per run, target and round; ticket, reinit and dense as
    'mean ± std' in the target's metric, and whether the ticket beats re-init beyond noise (lth.core.noise: more
    than 2 standard errors of the difference, from the trials' spread and at least the test set's)."""
    import pandas as pd

    from lth.core import noise
    from lth.tasks import metric_named

    def estimate(row) -> noise.Estimate:  # noqa: ANN001 - a frame row, its metric in its unit
        size = pd.to_numeric(row["test_examples"], errors="coerce")  # numpy ints, None or NaN from older files
        return noise.from_spread(row["mean"], row["std"], int(row["trials"]),
                                 int(size) if pd.notna(size) and size > 0 else None, metric.percent)

    out = []
    for (run, target), rows in frame.groupby(["run", "target"], sort=False):
        arms = rows[rows["arm"].isin(["ticket", "reinit", "dense"])]
        metric = metric_named(arms["metric"].iloc[0])
        factor = 100 if metric.percent else 1
        show = lambda r: f"{factor * r['mean']:.4g} ± {factor * r['std']:.2g}"  # noqa: E731
        dense = arms[arms["arm"] == "dense"].iloc[0]
        for label, group in arms[arms["arm"] != "dense"].groupby("round", sort=False):
            ticket, reinit = (group[group["arm"] == arm].iloc[0] for arm in ("ticket", "reinit"))
            verdict = noise.difference(estimate(reinit), estimate(ticket))
            gain = verdict.diff if metric.higher_is_better else -verdict.diff
            unit = arms["unit"].iloc[0]
            out.append({"run": run, "target": target, "metric": f"{metric.label}{f' ({unit})' if unit else ''}",
                        "round": label, "% weights": round(100 * ticket["weights_remaining"], 2),
                        "ticket": show(ticket), "reinit": show(reinit), "dense": show(dense),
                        "ticket beats reinit": ("yes" if gain > 0 else "no") if verdict.beyond_noise else "within noise"})
    return pd.DataFrame(out, columns=["run", "target", "metric", "round", "% weights", "ticket", "reinit", "dense",
                                      "ticket beats reinit"])
