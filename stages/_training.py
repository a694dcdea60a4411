"""What the stages that train share: the workspace with its data and trainer, in one process or several
(params.yaml `train.distributed`). Kept apart from _common so the other stages do not depend on the trainer."""

from __future__ import annotations

from typing import Any, Callable

from stages._common import workspace


def training_workspace(module: str, args: list[str], trains: Callable[[Any], bool] = lambda run: True):
    """The workspace as a Run for a stage that trains, or None when this process has nothing left to do:
    the stage reran itself under torchrun (params.yaml `train.distributed.nproc` > 1), or this rank
    followed rank 0's training. A run for which `trains(run)` is False stays in one process."""
    from lth.training.distributed import stage_processes

    run = workspace()
    processes_of = run.params.distributed
    nproc = processes_of.nproc if trains(run) else 1
    processes = stage_processes(nproc, processes_of.mode, run.device, module, args, run.data)
    if processes is None:
        return None
    session, splits = processes
    run.splits, run.trainer = splits, session.train_networks
    return run
