"""Step `prepare` (DVC workspace): the dataset as normalised tensors in one file, read once, loaded fast by
every later stage. find-ticket keeps the dataset in memory instead."""

from __future__ import annotations

from pathlib import Path

from lth.core import files
from lth.engine.run import Run


def outputs(run: Run) -> list[Path]:
    return [run.layout.prepared]


def run(run: Run, dataset_dir: str | Path) -> str:
    from lth.datasets import load_dataset

    splits = load_dataset(run.settings.dataset, dataset_dir)
    files.save_torch(run.layout.prepared, splits.state())
    return (f"{run.settings.dataset}: {len(splits.train_x)} train / {len(splits.val_x)} val / "
            f"{len(splits.test_x)} test -> {run.layout.prepared}")
