"""What the stages that train share: the workspace with its data and trainer, in one process or several
(params.yaml `train.distributed`). Kept apart from _common so the other stages do not depend on the trainer.

Rerunning a stage under torchrun is pipeline knowledge, so it lives here; lth.training.distributed only
knows how processes that torchrun started train together.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
from typing import Any, Callable, Optional, Sequence, TypeVar

from stages._common import workspace

T = TypeVar("T")


def training_workspace(module: str, args: list[str], trains: Callable[[Any], bool] = lambda run: True):
    """The workspace as a Run for a stage that trains, or None when this process has nothing left to do:
    the stage reran itself under torchrun (params.yaml `train.distributed.nproc` > 1), or this rank
    followed rank 0's training. A run for which `trains(run)` is False stays in one process."""
    run = workspace()
    processes_of = run.params.distributed
    nproc = processes_of.nproc if trains(run) else 1
    processes = stage_processes(nproc, processes_of.mode, run.device, module, args, run.data)
    if processes is None:
        return None
    session, splits = processes
    run.splits, run.trainer = splits, session.train_networks
    return run


def relaunch(nproc: int, module: str, args: Sequence[str]) -> bool:
    """Run `python -m module args` under torchrun with `nproc` processes on this machine, unless we
    already are one of them or nproc is 1. True when it ran (the caller then has nothing left to do)."""
    from lth.training.distributed import world_from_env

    if nproc <= 1 or world_from_env() is not None:
        return False
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", module, *args]
    code = subprocess.call(command)
    if code:
        raise SystemExit(code)
    return True


def stage_processes(nproc: int, mode: str, device: str, module: str, args: Sequence[str],
                    load: Callable[[], T]) -> Optional[tuple[Any, T]]:
    """A DVC training stage's processes (params.yaml `train.distributed: {nproc, mode}`).

    With nproc > 1 outside torchrun, the stage reruns itself as `python -m module args` under torchrun
    on this machine and None is returned (nothing left to do). Under torchrun, every rank loads the
    data; the followers train what the leader sends and get None; the leader gets (session, data) and
    trains with `session.train_networks`. The followers are released when the leader's process exits.
    """
    if relaunch(nproc, module, args):
        return None
    from lth.training.distributed import Session, session, world_from_env

    if world_from_env() is None:
        from lth.training.device import resolve_device

        return Session(None, resolve_device(device), mode), load()
    joined = session(device, mode)
    current = joined.__enter__()
    atexit.register(joined.__exit__, None, None, None)
    data = current.prepare(load)
    if current.leader:
        return current, data
    current.follow(data)
    return None
