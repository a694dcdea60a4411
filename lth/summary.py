"""Tables of finished rounds: summary.csv / summary.json for a run, and the DVC metrics summary.

The DVC summary is keyed so `dvc metrics diff` and `dvc exp show` read well: `r05.test_acc`,
`r05.weights_remaining`, `best.test_acc`, and `sparsest_matching.weights_remaining` (the fewest
weights at which the ticket still matches the dense network's early-stop test accuracy).
"""

from __future__ import annotations

import math
from typing import Iterable

from lth import artifacts

SUMMARY_COLUMNS = [
    "round", "weights_remaining", "test_acc", "early_stop_test_acc", "early_stop_iteration", "val_acc",
    "val_loss", "test_loss", "iterations",
]
DVC_ROUND_KEYS = ("weights_remaining", "test_acc", "test_loss", "early_stop_test_acc", "early_stop_iteration")


def summary_rows(results: Iterable[dict]) -> list[dict]:
    """One flat row per round (the per-layer detail stays in each round's metrics.json)."""
    return [{c: _finite(m[c]) for c in SUMMARY_COLUMNS} for m in sorted(results, key=lambda m: m["round"])]


def write_summary(layout, results: list[dict]) -> None:
    """summary.csv (pandas) and summary.json for a find-ticket run directory."""
    import pandas as pd

    rows = summary_rows(results)
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    artifacts.atomic_write_bytes(layout.summary_csv, frame.to_csv(index=False).encode())
    artifacts.write_json(layout.summary_json, rows)


def dvc_summary(results: Iterable[dict]) -> dict:
    """Nested metrics for DVC: per round, plus the best round and the sparsest round matching the dense one."""
    rows = sorted(results, key=lambda m: m["round"])
    summary: dict = {}
    if rows:  # headline keys first: they are the leftmost columns of `dvc exp show`
        best = max(rows, key=lambda m: (m["early_stop_test_acc"], -m["weights_remaining"]))
        summary["best"] = _headline(best)
        dense = next((m for m in rows if m["round"] == 0), None)
        if dense is not None:
            matching = [m for m in rows if m["early_stop_test_acc"] >= dense["early_stop_test_acc"]]
            summary["sparsest_matching"] = _headline(min(matching, key=lambda m: m["weights_remaining"]))
    for m in rows:
        summary[f"r{m['round']:02d}"] = {k: _finite(m[k]) for k in DVC_ROUND_KEYS}
    return summary


def _headline(m: dict) -> dict:
    return {"round": m["round"], "weights_remaining": m["weights_remaining"],
            "test_acc": _finite(m["early_stop_test_acc"]), "early_stop_iteration": m["early_stop_iteration"]}


def plot_rows(results: Iterable[dict]) -> list[dict]:
    """Rows for `dvc plots`: accuracy and early-stop iteration against % weights remaining."""
    return [{"round": m["round"], "weights_remaining": m["weights_remaining"], "test_acc": _finite(m["test_acc"]),
             "early_stop_test_acc": _finite(m["early_stop_test_acc"]),
             "early_stop_iteration": m["early_stop_iteration"]}
            for m in sorted(results, key=lambda m: m["round"])]


def learning_curve_rows(results: Iterable[dict], curves: dict[int, list[dict]]) -> list[dict]:
    """Long-format learning curves, one row per (round, evaluation), labelled by % weights remaining."""
    rows = []
    for m in sorted(results, key=lambda m: m["round"]):
        label = f"r{m['round']:02d} ({m['weights_remaining']:.1f}%)"
        for point in curves.get(m["round"], []):
            rows.append({"weights": label, "iteration": point["iteration"], "test_acc": _finite(point["test_acc"]),
                         "val_loss": _finite(point["val_loss"])})
    return rows


def _finite(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value
