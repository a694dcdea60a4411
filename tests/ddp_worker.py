"""`python -m lth ARGS` with a recorder: every process saves the masks it trained under and the weights it
ended with, per round and network, so a test can compare the ranks of a torchrun run with each other.

Usage: LTH_RECORD=DIR torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py find-ticket ...
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Callable

import torch

import lth.training.trainer


def recorder(record: Path, rank: int, train_networks: Callable = lth.training.trainer.train_networks) -> Callable:
    """lth.training.trainer.train_networks that also saves rank<R>-round<N>-trial<T>-<arm>.pt in `record`.

    The trainer is not told the round; N is read off the mask: LeNet's output layer keeps 0.9^N of its
    weights after N rounds at the paper's rate (controls keep the ticket's per-layer counts)."""
    record.mkdir(parents=True, exist_ok=True)

    def recording_train_networks(job, splits, networks, progress=None, **options):
        results = train_networks(job, splits, networks, progress, **options)
        for net, result in zip(networks, results):
            output = net.mask["fc3.weight"]
            round_index = round(math.log(float(output.float().mean())) / math.log(0.9))
            torch.save({"mask": {k: v.clone() for k, v in net.mask.items()}, "state": result.state},
                       record / f"rank{rank}-round{round_index}-trial{net.trial}-{net.arm}.pt")
        return results

    return recording_train_networks


if __name__ == "__main__":
    from lth.cli import main

    lth.training.trainer.train_networks = recorder(Path(os.environ["LTH_RECORD"]), int(os.environ.get("RANK", "0")))
    sys.argv = ["lth", *sys.argv[1:]]
    main()
