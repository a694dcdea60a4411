"""The optimizers a round can train with, and the learning-rate schedule (warmup, then step decay).

Torch is imported inside the builders, so the registry's names are available to help texts and
params.yaml validation without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol, Union

from lth.core.errors import unknown_choice

if TYPE_CHECKING:
    import torch
    from torch import Tensor

Lr = Union[float, "Tensor"]


class OptimizerSettings(Protocol):
    """What an optimizer is built from: the fields of lth.training.settings.TrainSettings it reads (a protocol,
    so the settings may name this registry as their choices without the two modules importing each other)."""

    optimizer: str
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float


@dataclass(frozen=True)
class Optimizer:
    name: str
    description: str
    # (params, settings, lr, graph) -> optimizer; `graph` asks for a CUDA-graph-safe one (state and lr on the device)
    build: Callable[[list, "OptimizerSettings", Lr, bool], Any]


def _adam(params: list, s: "OptimizerSettings", lr: Lr, graph: bool) -> "torch.optim.Optimizer":
    import torch

    # fused: one pass over all parameters per step (benchmarks/ measures what it buys)
    return torch.optim.Adam(params, lr=lr, weight_decay=s.weight_decay, fused=True, capturable=graph)


def _sgd(params: list, s: "OptimizerSettings", lr: Lr, graph: bool) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.SGD(params, lr=lr, momentum=s.momentum, nesterov=s.nesterov, weight_decay=s.weight_decay,
                           fused=True)


def _radam(params: list, s: "OptimizerSettings", lr: Lr, graph: bool) -> "torch.optim.Optimizer":
    import torch

    return torch.optim.RAdam(params, lr=lr, weight_decay=s.weight_decay, foreach=True, capturable=graph)


OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in [
        Optimizer("adam", "Adam (Frankle & Carbin's LeNet and Conv nets)", _adam),
        Optimizer("sgd", "SGD with optional (Nesterov) momentum (VGG, ResNet)", _sgd),
        Optimizer("radam", "RAdam: Adam with a variance-rectified warmup built in (Liu et al. 2020)", _radam),
    ]
}


def make_optimizer(params: list["Tensor"], settings: "OptimizerSettings", graph: bool = False) -> "torch.optim.Optimizer":
    import torch

    if settings.optimizer not in OPTIMIZERS:
        raise unknown_choice("optimizer", settings.optimizer, OPTIMIZERS)
    lr: Lr = torch.tensor(settings.lr, device=params[0].device) if graph else settings.lr
    return OPTIMIZERS[settings.optimizer].build(params, settings, lr, graph)


def lr_factor(iteration: int, warmup: int, milestones: list[int], gamma: float) -> float:
    """Linear warmup over `warmup` steps, then x gamma at each milestone passed."""
    factor = min(1.0, (iteration + 1) / warmup) if warmup > 0 else 1.0
    return factor * gamma ** sum(iteration >= m for m in milestones)
