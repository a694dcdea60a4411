"""`lth compare A B`: two runs lined up round by round and arm by arm, each difference with its uncertainty
and a verdict, beyond noise or not (lth.core.noise), instead of a raw `dvc metrics diff`.

A and B are what `lth report` reads (run directories, DVC workspaces, DVC experiments). Rows pair the same
round of both runs; by default every arm both have (ticket with ticket, reinit with reinit ...), or one arm
of A with another of B (`arm_a='ticket', arm_b='random-prune'`, A and B may be the same run: a ticket
against its own control). The metric is the task's test headline at early stop, each side's mean over its
trials with the standard error the noise rule gives it (trials' spread, at least the binomial error of the
test set for accuracies).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from lth.core import noise
from lth.core.errors import LthError

if TYPE_CHECKING:
    import pandas as pd

    from lth.report.sources import RunData

COLUMNS = ["round", "weights_a", "weights_b", "arm_a", "arm_b", "a", "b", "difference", "uncertainty",
           "beyond_noise", "trials_a", "trials_b"]


def compare_frame(a: "RunData", b: "RunData", arm_a: Optional[str] = None, arm_b: Optional[str] = None,
                  z: float = noise.Z) -> "pd.DataFrame":
    """A row per round both runs finished and arm pair: means (fractions in files; the caller shows percent),
    b - a, the difference's standard error, and whether |b - a| > z x that error."""
    import pandas as pd

    from lth.runs.records import headline, task_of
    from lth.steps.summary import arm_stats, estimate_of

    if not a.records or not b.records:
        raise LthError(f"nothing to compare: '{(a if not a.records else b).name}' has no finished round")
    task_a, task_b = task_of(a.records[0]), task_of(b.records[0])
    if task_a.name != task_b.name:
        raise LthError(f"cannot compare a {task_a.name} run with a {task_b.name} run")
    key = headline(task_a)
    by_round_b = {r["round"]: r for r in b.records}
    rows = []
    for record_a in a.records:
        record_b = by_round_b.get(record_a["round"])
        if record_b is None:
            continue
        arms_a = list(dict.fromkeys(n["arm"] for n in record_a["networks"]))
        arms_b = {n["arm"] for n in record_b["networks"]}
        if arm_a or arm_b:
            pairs = [(arm_a or "ticket", arm_b or "ticket")]
        else:
            pairs = [(arm, arm) for arm in arms_a if arm in arms_b]
        for left, right in pairs:
            stats_a, stats_b = arm_stats(record_a, left), arm_stats(record_b, right)
            if not stats_a or not stats_b or not stats_a[f"{key}_values"] or not stats_b[f"{key}_values"]:
                continue
            est_a = estimate_of(stats_a, key, task_a, a.test_size)
            est_b = estimate_of(stats_b, key, task_b, b.test_size)
            diff = noise.difference(est_a, est_b, z)
            rows.append({"round": record_a["round"], "weights_a": stats_a["weights_remaining"],
                         "weights_b": stats_b["weights_remaining"],
                         "arm_a": left, "arm_b": right, "a": round(est_a.mean, 6), "b": round(est_b.mean, 6),
                         "difference": round(diff.diff, 6), "uncertainty": round(diff.se, 6),
                         "beyond_noise": diff.beyond_noise, "trials_a": est_a.trials, "trials_b": est_b.trials})
    if not rows:
        wanted = f" (arms {arm_a or 'ticket'} / {arm_b or 'ticket'})" if arm_a or arm_b else ""
        raise LthError(f"'{a.name}' and '{b.name}' share no finished round with results to compare{wanted}")
    return pd.DataFrame(rows, columns=COLUMNS)


def compare_table(frame: "pd.DataFrame", metric, a_label: str, b_label: str, z: float = noise.Z):  # noqa: ANN001
    """The comparison as a rich table: values in percent for accuracies, a verdict per row."""
    from rich.table import Table

    scale = 100 if metric.percent else 1
    unit = " (points)" if metric.percent else ""
    table = Table(title=f"test {metric.label} at early stop: B - A, ± {z:g} standard errors{unit}",
                  caption=f"A: {a_label}   B: {b_label}")
    for column in ("round", "% weights", "arm", "A", "B", "B - A", "±", "verdict"):
        table.add_column(column, justify="left" if column in ("arm", "verdict") else "right",
                         no_wrap=column == "verdict")  # a verdict is read whole, even at 80 columns
    for _, row in frame.iterrows():
        arm = row["arm_a"] if row["arm_a"] == row["arm_b"] else f"{row['arm_a']} / {row['arm_b']}"
        weights = f"{100 * row['weights_a']:.1f}" + ("" if abs(row["weights_a"] - row["weights_b"]) < 5e-4
                                                      else f" / {100 * row['weights_b']:.1f}")
        table.add_row(f"r{int(row['round']):02d}", weights, arm, f"{scale * row['a']:.2f}", f"{scale * row['b']:.2f}",
                      f"{scale * row['difference']:+.2f}", f"{scale * z * row['uncertainty']:.2f}",
                      "beyond noise" if row["beyond_noise"] else "within noise")
    return table
