"""N networks of one architecture, as the training loop sees them: one plain module, or stacked copies.

The loop never asks which: it calls the networks on a batch per network, evaluates them on a shared
batch, reads their parameters (stacked over networks when there are several) and takes each one's state.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import torch
from torch import Tensor, nn


class Networks(Protocol):
    """N networks of one architecture, as the training loop sees them."""

    count: int
    params: dict[str, Tensor]  # name -> the trainable tensor (stacked over networks when count > 1)
    graph_safe: bool  # False: per-step Python state (fresh noise, counters) that a replayed CUDA graph would freeze

    def __call__(self, x: Tensor) -> Tensor: ...  # (N, B, ...) -> (N, B, classes), each its own batch

    def shared(self, x: Tensor) -> Tensor: ...  # (B, ...) -> (N, B, classes), every network the same batch

    def set_training(self, on: bool) -> None: ...

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor: ...  # one per network -> the layout of params[name]

    def tensors(self) -> list[Tensor]: ...  # every parameter and buffer

    def state(self, i: int) -> dict[str, Tensor]: ...  # network i's state_dict on the CPU

    # Optional: `losses_and_grads(x, y, task) -> Tensor` (each network's mean loss on its batch, every `.grad`
    # overwritten): networks with a hand-written backward pass (lth.training.batched.StackedMLP); the loop
    # uses it instead of autograd where it applies (no autocast, no DDP).


class SingleNetwork:
    """One network: a plain module call, no vmap overhead."""

    count = 1
    graph_safe = True

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = dict(model.named_parameters())

    def __call__(self, x: Tensor) -> Tensor:
        return self.model(x[0]).unsqueeze(0)

    def shared(self, x: Tensor) -> Tensor:
        return self.model(x).unsqueeze(0)

    def set_training(self, on: bool) -> None:
        self.model.train(on)

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor:
        return tensors[0]

    def tensors(self) -> list[Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def state(self, i: int) -> dict[str, Tensor]:
        # saved in the standard layout whatever layout training used (channels_last on CUDA)
        return {k: v.detach().clone(memory_format=torch.contiguous_format).cpu()
                for k, v in self.model.state_dict().items()}
