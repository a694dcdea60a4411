"""DVC experiments side by side in a few columns: what `lth exp-table` prints.

`dvc exp show` lists every param and metric, hundreds of columns; a researcher comparing experiments
wants the params that differ and the headline of each (metrics/summary.json).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from lth.report.sources import experiment_rows, flatten

if TYPE_CHECKING:
    import pandas as pd

_ROUND = re.compile(r"^rounds\.(r\d{2,})\.prev$")


def _at(row: dict, prefix: str) -> str | None:
    """'96.2% @ 32.9%': the headline metric of summary.json's `prefix` entry at its weights remaining (accuracy
    in percent, RMSE as it is), or None when the experiment has none."""
    from lth.tasks import metric_named

    key = next((k for k in row if k.startswith(f"{prefix}.early_stop_test_")), None)
    value, weights = row.get(key) if key else None, row.get(f"{prefix}.weights_remaining")
    if not isinstance(value, (int, float)) or not isinstance(weights, (int, float)):
        return None
    metric = metric_named(key.rsplit("_", 1)[-1])
    return f"{metric.brief(value)} @ {100 * weights:.1f}%"


def experiment_frame(repo: str = ".") -> "pd.DataFrame":
    """One row per experiment (baseline and workspace included): its name, the params that differ between
    the rows, and the best ticket, the sparsest ticket still matching the dense network and the last round's
    ticket, each as its test headline metric at early stop @ % weights ('96.2% @ 32.9%')."""
    import pandas as pd
    import yaml

    params_file = Path(repo) / "params.yaml"
    known = set(flatten(yaml.safe_load(params_file.read_text()) or {})) if params_file.is_file() else set()
    rows = experiment_rows(repo)
    keys = sorted({k for row in rows for k in row if k in known or _ROUND.match(k)})
    # a round an experiment does not declare shows up as a missing value ('-', '' or None, by DVC version)
    rounds = [sum(1 for k in row if _ROUND.match(k) and isinstance(row[k], str) and row[k].startswith("r"))
              for row in rows]
    differing = [k for k in keys if not _ROUND.match(k) and len({repr(row.get(k)) for row in rows}) > 1]
    out = []
    for row, count in zip(rows, rounds):
        changed = [f"{k}={row.get(k)}" for k in differing]
        if len(set(rounds)) > 1:
            changed.append(f"rounds={count}")
        out.append({
            "experiment": row.get("Experiment") or row.get("rev"),
            "params that differ": ", ".join(changed) or "-",
            "best": _at(row, "best"),
            "sparsest matching": _at(row, "sparsest_matching"),
            "last round": _at(row, "last"),
        })
    return pd.DataFrame(out, columns=["experiment", "params that differ", "best", "sparsest matching", "last round"])
