"""`python -m lth ARGS` with a recorder: every process saves the masks it trained under and the weights it
ended with, per round and network, so a test can compare the ranks of a torchrun run with each other.

Usage: LTH_RECORD=DIR torchrun --standalone --nproc_per_node 2 tests/ddp_worker.py find-ticket ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

import lth.rounds
from lth.cli import main

RECORD = Path(os.environ["LTH_RECORD"])
RANK = int(os.environ.get("RANK", "0"))
original = lth.rounds.train_networks


def recording_train_networks(settings, splits, networks, round_index, progress=None, **options):
    results, record = original(settings, splits, networks, round_index, progress, **options)
    for net, result in zip(networks, results):
        torch.save({"mask": {k: v.clone() for k, v in net.mask.items()}, "state": result.state},
                   RECORD / f"rank{RANK}-round{round_index}-trial{net.trial}-{net.arm}.pt")
    return results, record


if __name__ == "__main__":
    RECORD.mkdir(parents=True, exist_ok=True)
    lth.rounds.train_networks = recording_train_networks
    sys.argv = ["lth", *sys.argv[1:]]
    main()
