"""Many same-shaped masked networks trained in one step: trials and control arms of a round together.

The networks' weights are stacked along a new leading dimension; a multilayer perceptron runs one
batched matmul per layer (`StackedMLP`), any other model is evaluated with
`torch.func.vmap(functional_call)` (`StackedNetworks`), so one step computes every network at once.
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
from lth.training.hooks import Hook, ProgressFn
from lth.training.loop import run_training
from lth.training.settings import TrainSettings
from lth.training.state import DataParallel, TrainResult

if TYPE_CHECKING:
    from lth.tasks.base import Task
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


class StackedMLP:
    """N copies of a multilayer perceptron (`PrunableModel.mlp_layers`) as stacked tensors: one batched
    matmul per layer (`torch.baddbmm`, the bias added inside it), no vmap, and a hand-written backward.

    Weights are stored input-major, (N, in, out): the forward is h @ W and the weight gradient hᵀ @ dY,
    both single batched matmuls in the stored layout. Training steps call `losses_and_grads`; autograd
    through `__call__` remains for what that does not cover (bf16 autocast, torchrun's DDP). Same
    interface and results as `StackedNetworks` (tests/test_batched.py).
    """

    graph_safe = True

    def __init__(self, template: nn.Module, states: Sequence[Mapping[str, Tensor]], device: torch.device):
        self.layers = tuple(template.mlp_layers)  # type: ignore[attr-defined]
        self.count = len(states)
        self.params = {name: self.stack(name, [s[name] for s in states]).to(device).requires_grad_()
                       for name, _ in template.named_parameters()}

    def _layers(self) -> list[tuple[Tensor, Tensor]]:
        """(weight, bias) per layer, looked up now: DDP's wrapper (lth.training.distributed) swaps `params`' tensors."""
        return [(self.params[f"{layer}.weight"], self.params[f"{layer}.bias"]) for layer in self.layers]

    def _forward(self, h: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, (weight, bias) in enumerate(self._layers()):
            h = torch.baddbmm(bias.unsqueeze(1).to(h.dtype), h, weight.to(h.dtype))
            if i < last:
                h = torch.relu(h)
        return h

    def __call__(self, x: Tensor) -> Tensor:
        return self._forward(x.flatten(2))

    def shared(self, x: Tensor) -> Tensor:
        return self._forward(x.flatten(1).expand(self.count, -1, -1))

    @torch.no_grad()
    def losses_and_grads(self, x: Tensor, y: Tensor, task: "Task") -> Tensor:
        """Each network's mean loss on its own batch (x: (N, B, ...), y: (N, B, ...)); the gradients of their
        sum are written into the parameters' `.grad`, replacing what was there. The task gives the loss and its
        gradient at the outputs (`losses_and_output_grad`).

        Autograd's backward of `__call__` + the task's loss, op for op (so the results are bit-identical),
        without its costs: the gradient tensors are kept and overwritten in place (a fresh 7.5 MB weight
        gradient per step for 8 LeNets costs page faults and cache misses), and no graph is built. On a
        2-core CPU a batched LeNet step is 6-9% faster for 8 networks, 14-20% for 3 (README, Speed).
        """
        inputs, h, layers = [], x.flatten(2), self._layers()
        last = len(layers) - 1
        for i, (weight, bias) in enumerate(layers):
            inputs.append(h)
            h = torch.baddbmm(bias.unsqueeze(1), h, weight)
            if i < last:
                h = h.relu_()
        losses, d = task.losses_and_output_grad(h, y)
        for i in range(last, -1, -1):  # the matmuls of autograd's baddbmm backward, the relu's threshold
            weight, bias = layers[i]
            torch.bmm(inputs[i].mT, d, out=_grad(weight))
            torch.sum(d, 1, out=_grad(bias))
            if i:
                d = torch.ops.aten.threshold_backward(torch.bmm(d, weight.mT), inputs[i], 0)
        return losses

    def set_training(self, on: bool) -> None:
        pass  # no dropout, no batch norm

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor:
        stacked = torch.stack(list(tensors))
        return stacked.mT.contiguous() if name.endswith(".weight") else stacked

    def tensors(self) -> list[Tensor]:
        return list(self.params.values())

    def state(self, i: int) -> dict[str, Tensor]:
        return {k: (v[i].mT if k.endswith(".weight") else v[i]).detach().contiguous().cpu()
                for k, v in self.params.items()}


def _grad(param: Tensor) -> Tensor:
    """param.grad, made once (empty: it is about to be overwritten) and then reused."""
    if param.grad is None:
        param.grad = torch.empty_like(param)
    return param.grad


def stacked(template: nn.Module, states: Sequence[Mapping[str, Tensor]], device: torch.device):
    """The fastest stacked form of `template`: batched matmuls for an MLP, vmap for anything else."""
    plain_mlp = getattr(template, "mlp_layers", ()) and not list(template.buffers())
    return (StackedMLP if plain_mlp else StackedNetworks)(template, states, device)


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
    hooks: Sequence[Hook] = (),
) -> list[TrainResult]:
    """Train len(starts) networks together; network i starts from starts[i] under masks[i], data order seeds[i].

    Returns one TrainResult per network, as `lth.training.loop.train` would for that network alone.
    """
    if not (len(starts) == len(masks) == len(seeds)) or not starts:
        raise LthError("train_batched needs one start state, one mask and one seed per network")
    nets = stacked(template, starts, splits.train_x.device)
    return run_training(nets, masks, splits, settings, seeds, progress, hold_pruned, parallel, checkpoint, hooks)
