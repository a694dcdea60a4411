"""Step `rewind_point`: θk of every trial, the dense network after k = `rewind` steps (θ0 when k = 0).

The dense run is deterministic, so training k steps here yields the weights round r00 holds after k of
its steps; keeping it a step of its own means changing `rewind` never retrains round r00.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lth.core.durations import Step
from lth.runs.params import DENSE_ROUND
from lth.runs.records import TICKET
from lth.runs.run import Run


def outputs(run: Run) -> list[Path]:
    return [run.layout.trial_file(run.layout.rewind_point, t) for t in run.trials]


def needs_training(run: Run) -> bool:
    return Step.parse(run.settings.rewind) != Step()


def execute(run: Run) -> int:
    """Writes θk for every trial; returns k in iterations."""
    from lth.training.loop import iterations_per_epoch

    layout = run.layout
    inits = [run.weights(layout.theta0, t) for t in run.trials]
    points, k = inits, 0
    if needs_training(run):
        from lth.training.trainer import Network, TrainJob, train_networks

        splits = run.data()
        per_epoch = iterations_per_epoch(len(splits.train_x), run.settings.train.batch_size)
        k = Step.parse(run.settings.rewind).to_iterations(per_epoch)
        short = dataclasses.replace(run.settings.train, duration=f"{k}it", eval_every=f"{k}it")
        networks = [Network(t, TICKET, run.trial_settings(t).seed, inits[t],
                            run.mask(layout.round_dir(DENSE_ROUND, "mask"), t)) for t in run.trials]
        trainer = run.trainer or train_networks
        points = [r.state for r in trainer(TrainJob(run.settings.model, short), splits, networks)]
    for t, point in zip(run.trials, points):
        run.save(layout.trial_file(layout.rewind_point, t), "weights", point, iteration=k)
    return k
