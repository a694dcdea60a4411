"""Step `prepare` (DVC workspace): the dataset as normalised tensors in one file, read once, loaded fast by
every later stage, and its spec (task, example shape, outputs), read by every stage that builds the model.
find-ticket keeps the dataset in memory instead (and writes the spec too)."""

from __future__ import annotations

from pathlib import Path

from lth.core import files
from lth.runs.run import Run


def outputs(run: Run) -> list[Path]:
    return [run.layout.prepared, run.layout.prepared_spec]


def execute(run: Run, dataset_dir: str | Path) -> str:
    from lth.datasets import load_dataset
    from lth.runs.run import Shape

    splits = load_dataset(run.settings.dataset, dataset_dir, run.settings.task)
    files.save_torch(run.layout.prepared, splits.state())
    Shape.of(splits, run.settings.dataset).write(run.layout.prepared_spec)
    return (f"{run.settings.dataset}: {splits.task}, {len(splits.train_x)} train / {len(splits.val_x)} val / "
            f"{len(splits.test_x)} test, inputs {'x'.join(map(str, splits.input_shape))}, {splits.num_outputs} "
            f"outputs -> {run.layout.prepared}")
