"""Train a set of networks of one architecture: a round's tickets and control arms, or an experiment's arms.

They train as one batched (vmapped) step where that pays, else one after another; either way each
network's result is what training it alone gives. Pruned weights are held at their starting values,
which the mask-0 action chose (0, θ0, ...). `lth.training.distributed.Session.train_networks` has the
same signature and shares the work with other processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from lth.core.errors import LthError
from lth.models import build_model
from lth.models.base import has_convolutions
from lth.training.batched import train_batched
from lth.training.checkpoint import Checkpoint
from lth.training.hooks import Hook, ProgressFn
from lth.training.loop import train
from lth.training.settings import TrainSettings
from lth.training.state import DataParallel, TrainResult


@dataclass
class Network:
    """One network to train: its starting weights, its mask (False = pruned) and its data-order seed,
    labelled by the trial and arm it belongs to."""

    trial: int
    arm: str
    seed: int
    start: Mapping[str, Tensor]
    mask: Mapping[str, Tensor]


@dataclass(frozen=True)
class TrainJob:
    """What training a set of networks needs besides the networks: the architecture and how it trains."""

    model: str
    train: TrainSettings
    trainable_pruned: bool = False  # the mask-0 action leaves pruned weights trainable (reinit_trainable)


Trainer = Callable[..., list[TrainResult]]  # train_networks' signature
# Given the indices (into the networks list) of the networks one training loop trains together (all of them
# when batched, one when they train one after another), the extra hooks that loop runs (lth.training.hooks).
HooksFor = Callable[[Sequence[int]], Sequence[Hook]]


def batching_pays(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether a round's networks train faster as one vmapped batch than one after another.

    On a GPU it always does. On a CPU, fully connected models batch about as fast as sequential runs
    or faster, and one pass over the data serves every arm; batched convolutions run slower per network
    than single ones, so conv nets train one network at a time there (measurements: benchmarks/).
    """
    return device.type == "cuda" or not has_convolutions(model)


def train_networks(
    job: TrainJob,
    splits,
    networks: list[Network],
    progress: Optional[ProgressFn] = None,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional[Checkpoint] = None,
    hooks_for: Optional[HooksFor] = None,
) -> list[TrainResult]:
    """Train every network (as one batched step where that pays); one result per network, in order.

    With `parallel` (lth.training.distributed) every network's batches are split over the processes.
    With `checkpoint` the training saves its state as it goes and resumes from it (lth.training.checkpoint).
    Running out of GPU memory is an LthError that suggests a smaller batch or the CPU.
    """
    try:
        return _train(job, splits, networks, progress, parallel, checkpoint, hooks_for or (lambda indices: ()))
    except torch.OutOfMemoryError:
        raise LthError(
            f"out of {splits.train_x.device.type.upper()} memory training {len(networks)} network(s) of "
            f"{job.model} with batch size {job.train.batch_size}: use a smaller --batch-size "
            "(train.batch_size), fewer --trials / --control arms, or --device cpu"
        ) from None


def _train(job: TrainJob, splits, networks: list[Network], progress: Optional[ProgressFn],
           parallel: Optional[DataParallel], checkpoint: Optional[Checkpoint], hooks_for: HooksFor) -> list[TrainResult]:
    device = splits.train_x.device
    template = build_model(job.model, splits.input_shape, splits.num_outputs, 0)
    masks = [{name: torch.ones_like(m) for name, m in n.mask.items()} if job.trainable_pruned else n.mask
             for n in networks]
    if len(networks) > 1 and batching_pays(template, device):
        own = checkpoint.for_networks([n.start for n in networks], masks) if checkpoint else None
        return train_batched(template, [n.start for n in networks], masks, splits, job.train,
                             [n.seed for n in networks], progress=progress, hold_pruned=True, parallel=parallel,
                             checkpoint=own, hooks=hooks_for(range(len(networks))))
    results = []
    for i, (net, net_mask) in enumerate(zip(networks, masks)):
        template.load_state_dict(dict(net.start))
        template.to(device)
        mask = {name: m.to(device) for name, m in net_mask.items()}
        own = checkpoint.for_networks([net.start], [net_mask], i if len(networks) > 1 else None) if checkpoint else None
        results.append(train(template, mask, splits, job.train, net.seed, progress=progress, hold_pruned=True,
                             parallel=parallel, checkpoint=own, hooks=hooks_for([i])))
    return results
