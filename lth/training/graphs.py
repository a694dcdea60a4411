"""GPU specifics of the loop: the whole training step as one CUDA graph, and channels-last conv nets.

Capturing needs a few real warm-up steps first (they allocate gradients and optimizer state); those
steps change the weights, so everything they touch is put back afterwards and the first replay starts
from exactly the state the eager loop would start from.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import Tensor

from lth.models.base import has_convolutions
from lth.training.networks import Networks, SingleNetwork


def cuda_graphs_enabled(device: torch.device) -> bool:
    """Whole-step CUDA graphs on CUDA devices, unless LTH_CUDA_GRAPHS=0 (e.g. to debug a model eagerly)."""
    return device.type == "cuda" and os.environ.get("LTH_CUDA_GRAPHS", "1") != "0"


def channels_last_wanted(nets: Networks, device: torch.device) -> bool:
    """NHWC layout for a convolutional network on CUDA, where cuDNN's fastest (tensor-core) kernels want it.

    Only on the single-network path: vmap's convolution rule folds the stacked networks into channel
    groups, which has no channels-last form. On the CPU the standard layout stays, so CPU results stay
    bit-identical to those of earlier versions.
    """
    return device.type == "cuda" and isinstance(nets, SingleNetwork) and has_convolutions(nets.model)


def capture_cuda_graph(step: Callable[[], None], nets: Networks, optimizer: torch.optim.Optimizer,
                       running: Tensor, record: Callable[[Callable[[], None]], Callable[[], None]]) -> Callable[[], None]:
    """Capture one whole training step as a CUDA graph with `record`; returns its replay, the state reset."""
    saved = [t.detach().clone() for t in nets.tensors()]
    replay = record(step)
    with torch.no_grad():
        for tensor, value in zip(nets.tensors(), saved):
            tensor.copy_(value)
        for state in optimizer.state.values():  # step counts and moments back to their initial zeros
            for value in state.values():
                if isinstance(value, Tensor):
                    value.zero_()
        running.zero_()
    return replay


def record_cuda_graph(step: Callable[[], None], warm_up: int = 3) -> Callable[[], None]:
    """Run `warm_up` eager steps on a side stream, then record one step into a CUDA graph (CUDA only).

    Kept apart from `capture_cuda_graph` so the rest of the graph path (capturable optimizer, learning
    rate as a device tensor updated in place, the reset after warm-up, in-place checkpoint restore) can
    be checked on any device with a stand-in that runs the warm-up steps and returns `step` itself.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm_up):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay
