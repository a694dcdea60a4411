"""Where the DVC pipeline keeps each artifact. The stage scripts in stages/ only read and write these.

Per-trial artifacts of one step are files `trial-T.pt` inside one directory, so each stage has a
single output per artifact whatever the number of trials.
"""

from __future__ import annotations

from pathlib import Path

PREPARED = Path("data/prepared/splits.pt")
INIT = Path("data/init/theta0")
REWIND_POINT = Path("data/init/rewind_point")
ROUNDS = Path("data/rounds")
METRICS = Path("metrics")
ROUND_METRICS = METRICS / "rounds"
SUMMARY = METRICS / "summary.json"
ACCURACY_PLOT = METRICS / "accuracy.json"
CURVES_PLOT = METRICS / "learning_curves.json"
LAYERS_PLOT = METRICS / "layer_sparsity.json"
REPORT = Path("report")
SUPERMASK = Path("data/supermask/mask.pt")
CHECKPOINTS = Path("data/checkpoints")
SUPERMASK_METRICS = METRICS / "supermask.json"


def round_dir(round_key: str, name: str) -> Path:
    """data/rounds/<round>/<name>/, name in start | mask | scores | final."""
    return ROUNDS / round_key / name


def checkpoint(round_key: str) -> Path:
    """The unfinished train stage's training state (lth.training.checkpoint): not a DVC output, removed when it finishes."""
    return CHECKPOINTS / f"train-{round_key}.pt"


def trial_file(directory: Path, trial: int) -> Path:
    return directory / f"trial-{trial}.pt"


def round_metrics(round_key: str) -> Path:
    return ROUND_METRICS / f"{round_key}.json"
