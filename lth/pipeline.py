"""Where the DVC pipeline keeps each artifact. The stage scripts in stages/ only read and write these."""

from __future__ import annotations

from pathlib import Path

PREPARED = Path("data/prepared/splits.pt")
INIT = Path("data/init/theta0.pt")
REWIND_POINT = Path("data/init/rewind_point.pt")
ROUNDS = Path("data/rounds")
METRICS = Path("metrics")
ROUND_METRICS = METRICS / "rounds"
CURVES = METRICS / "curves"
SUMMARY = METRICS / "summary.json"
ACCURACY_PLOT = METRICS / "accuracy.json"
CURVES_PLOT = METRICS / "learning_curves.json"


def round_file(round_key: str, name: str) -> Path:
    """data/rounds/<round>/<name>.pt, name in start | mask | scores | final."""
    return ROUNDS / round_key / f"{name}.pt"


def round_metrics(round_key: str) -> Path:
    return ROUND_METRICS / f"{round_key}.json"


def round_curve(round_key: str) -> Path:
    return CURVES / f"{round_key}.json"
