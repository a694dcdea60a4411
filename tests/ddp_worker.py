"""`python -m lth ARGS` with a recorder: every process saves the masks it trained under and the weights it
ended with, per round and network, so a test can compare the ranks of a torchrun run with each other.

Usage: LTH_RECORD=DIR torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py find-ticket ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import torch

import lth.engine.rounds


def recorder(record: Path, rank: int, train_networks: Callable = lth.engine.rounds.train_networks) -> Callable:
    """lth.engine.rounds.train_networks that also saves rank<R>-round<N>-trial<T>-<arm>.pt in `record`."""
    record.mkdir(parents=True, exist_ok=True)

    def recording_train_networks(settings, splits, networks, round_index, progress=None, **options):
        results, summary = train_networks(settings, splits, networks, round_index, progress, **options)
        for net, result in zip(networks, results):
            torch.save({"mask": {k: v.clone() for k, v in net.mask.items()}, "state": result.state},
                       record / f"rank{rank}-round{round_index}-trial{net.trial}-{net.arm}.pt")
        return results, summary

    return recording_train_networks


if __name__ == "__main__":
    from lth.cli import main

    lth.engine.rounds.train_networks = recorder(Path(os.environ["LTH_RECORD"]), int(os.environ.get("RANK", "0")))
    sys.argv = ["lth", *sys.argv[1:]]
    main()
