"""What every stage shares: named arguments, params.yaml, and errors as one line with exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from lth.core.errors import LthError


def round_argument(description: str) -> str:
    """Parse `--round rNN`, returning the round name."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--round", required=True, help="round name as declared in params.yaml, e.g. r03")
    return parser.parse_args().round


def run(stage: Callable[[], None]) -> None:
    """Run a stage: a bad value or file, or an interruption (Ctrl-C, SIGTERM: the train stages save their
    state first), is one line on stderr and exit code 2."""
    from lth.core.interrupt import Interrupted, graceful_stop

    try:
        with graceful_stop():
            stage()
    except Interrupted as exc:
        print(f"error: {exc}; rerun `dvc repro` to continue (finished stages are kept)", file=sys.stderr)
        sys.exit(2)
    except LthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; rerun `dvc repro` to continue (finished stages are kept)", file=sys.stderr)
        sys.exit(2)


def shape_of(settings):
    """The model's input shape and class count, from the dataset registry (no data loaded)."""
    from lth.datasets import get_dataset_spec
    from lth.engine.rounds import Shape

    spec = get_dataset_spec(settings.dataset)
    return Shape(tuple(spec.input_shape), spec.num_classes)


def model_files(settings):
    """Loaders for this model's weights and mask files, verified against its shapes."""
    from lth.core import files as artifacts
    from lth.engine.rounds import describe_model

    kinds, shapes = describe_model(settings, shape_of(settings))
    mask_shapes = {name: shapes[name] for name in kinds}

    def weights(path):
        return artifacts.load_tensors(path, "weights", settings.model, shapes)

    def mask(path):
        return artifacts.load_tensors(path, "mask", settings.model, mask_shapes)

    return kinds, weights, mask


def training_processes(params, module: str, args: list[str], settings, needed: bool = True):
    """(session, splits) for a training stage, or None when this process has nothing left to do: the
    stage reran itself under torchrun (params.yaml `train.distributed.nproc` > 1), or this rank followed
    rank 0's training. `needed=False` keeps a stage that will not train in one process."""
    from lth.training.distributed import stage_processes

    nproc = params.distributed.nproc if needed else 1
    return stage_processes(nproc, params.distributed.mode, params.device, module, args,
                           lambda: load_splits(params.device, settings))


def load_splits(device: str, settings=None):
    """The prepared dataset, on the training device; with `settings`, checked against them (batch size,
    rewind step, model input) before any work."""
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.datasets import Splits
    from lth.engine.settings import check_data
    from lth.training.loop import resolve_device

    splits = Splits.from_state(artifacts.load_torch(pipeline.PREPARED, "prepared dataset"))
    if settings is not None:
        check_data(settings, splits.input_shape, splits.num_classes, len(splits.train_x))
    return splits.to(resolve_device(device))
