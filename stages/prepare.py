"""Stage `prepare`: the dataset as normalised tensors in data/prepared/splits.pt (read once, loaded fast)."""

from __future__ import annotations

from stages._common import run


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.datasets import load_dataset
    from lth.engine.params import load_params

    params = load_params()
    splits = load_dataset(params.settings.dataset, params.dataset_dir)
    artifacts.save_torch(pipeline.PREPARED, splits.state())
    print(f"{params.settings.dataset}: {len(splits.train_x)} train / {len(splits.val_x)} val / "
          f"{len(splits.test_x)} test -> {pipeline.PREPARED}")


if __name__ == "__main__":
    run(main)
