"""Many same-shaped masked networks trained in one step: trials and control arms of a round together.

The networks' weights are stacked along a new leading dimension and the model is evaluated with
`torch.func.vmap(functional_call)`, so one step runs batched matmuls/convolutions for all networks.
Each network draws its own batches (its own seeded data order) and its loss is its own mean; the
summed loss gives every network exactly the gradient it would get alone. Adam and SGD act elementwise,
so one optimizer over the stacked tensors *is* per-network Adam/SGD. The loop itself is
`lth.training.loop`, shared with the single-network trainer.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lth.core.errors import LthError
from lth.training.evaluation import TrainResult
from lth.training.hooks import ProgressFn
from lth.training.loop import DataParallel, run_training
from lth.training.settings import TrainSettings

if TYPE_CHECKING:
    from lth.training.checkpoint import Checkpoint


class InputMajorLinear(nn.Linear):
    """nn.Linear whose weight is stored transposed, as (in, out): under vmap both the forward (x @ W) and
    the weight gradient (xᵀ @ dY) are then single batched matmuls that write the stored layout directly.

    With the standard (out, in) layout vmap's backward makes the gradient as (N, in, out) and a transposing
    copy of every stacked weight follows. Only the stacked template uses this; states go in and out in
    the standard layout (`StackedNetworks.stack` / `state`).
    """

    def forward(self, x: Tensor) -> Tensor:
        out = torch.matmul(x, self.weight)
        return out if self.bias is None else out + self.bias.to(out.dtype)  # bf16 under autocast, as F.linear


class StackedNetworks:
    """N copies of one architecture as stacked parameter/buffer tensors, called through vmap.

    Linear weights are stacked input-major, (N, in, out) (`InputMajorLinear`); everything the loop hands
    in (masks) or takes out (states) is converted by name, so callers see the standard layout only.
    """

    graph_safe = True

    def __init__(self, template: nn.Module, states: Sequence[Mapping[str, Tensor]], device: torch.device):
        self.base = copy.deepcopy(template).to("meta")
        self.input_major = set()
        for name, module in self.base.named_modules():
            if type(module) is nn.Linear:
                module.__class__ = InputMajorLinear
                module.weight = nn.Parameter(module.weight.mT, requires_grad=False)  # (in, out), on meta
                self.input_major.add(f"{name}.weight" if name else "weight")
        self.count = len(states)
        self.params = {name: self.stack(name, [s[name] for s in states]).to(device).requires_grad_()
                       for name, _ in template.named_parameters()}
        self.buffers = {name: torch.stack([s[name] for s in states]).to(device)
                        for name, _ in template.named_buffers()}
        call = lambda p, b, x: functional_call(self.base, (p, b), (x,))  # noqa: E731
        self._own_batches = vmap(call, in_dims=(0, 0, 0))
        self._shared_batch = vmap(call, in_dims=(0, 0, None))

    def __call__(self, x: Tensor) -> Tensor:
        return self._own_batches(self.params, self.buffers, x)

    def shared(self, x: Tensor) -> Tensor:
        return self._shared_batch(self.params, self.buffers, x)

    def set_training(self, on: bool) -> None:
        self.base.train(on)

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor:
        stacked = torch.stack(list(tensors))
        return stacked.mT.contiguous() if name in self.input_major else stacked

    def tensors(self) -> list[Tensor]:
        return [*self.params.values(), *self.buffers.values()]

    def state(self, i: int) -> dict[str, Tensor]:
        out = {k: (v[i].mT if k in self.input_major else v[i]).detach().contiguous().cpu()
               for k, v in self.params.items()}
        out.update({k: v[i].detach().clone().cpu() for k, v in self.buffers.items()})
        return out


def train_batched(
    template: nn.Module,
    starts: Sequence[Mapping[str, Tensor]],
    masks: Sequence[Mapping[str, Tensor]],
    splits,
    settings: TrainSettings,
    seeds: Sequence[int],
    progress: Optional[ProgressFn] = None,
    hold_pruned: bool = False,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional["Checkpoint"] = None,
) -> list[TrainResult]:
    """Train len(starts) networks together; network i starts from starts[i] under masks[i], data order seeds[i].

    Returns one TrainResult per network, as `lth.training.loop.train` would for that network alone.
    """
    if not (len(starts) == len(masks) == len(seeds)) or not starts:
        raise LthError("train_batched needs one start state, one mask and one seed per network")
    nets = StackedNetworks(template, starts, splits.train_x.device)
    return run_training(nets, masks, splits, settings, seeds, progress, hold_pruned, parallel, checkpoint)
