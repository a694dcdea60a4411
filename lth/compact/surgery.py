"""Surgery: build the physically smaller network, the model's own module tree with smaller tensors.

The units `lth.compact.units` finds dead are sliced out of their producer (rows, and the BatchNorm right
after it) and of every consumer (input columns). A dead-in unit's constant contribution to each consumer is
measured from the masked network itself and folded into the consumer: into the bias of a Linear, or, for a
padded conv whose borders see the constant differently, into a fixed per-position offset (`OffsetConv`).
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import Tensor, nn

from lth.compact.units import plan_units
from lth.core.masks import apply_mask
from lth.models import build_model
from lth.models.layers import CONVOLUTIONS, PRUNABLE, prunable_layers
from lth.pruning.structured import UnitLayer, unit_layers, unit_span

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class OffsetConv(nn.Module):
    """A conv plus a fixed (C, H, W) offset: the folded contribution of removed constant channels,
    which zero padding makes differ at the borders, so it cannot be a per-channel bias."""

    def __init__(self, conv: nn.Conv2d, offset: Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("offset", offset)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.offset


def module_of(weight_name: str) -> str:
    return weight_name.rsplit(".", 1)[0]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _probe(model: nn.Module, layers: list[UnitLayer], input_shape: tuple[int, ...]) -> tuple[dict, dict]:
    """One forward pass: each consumer's input (batch of 1), and the BatchNorm right after each producer."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[int, tuple[str, Tensor]] = {}  # the tensors are held, so no id is reused during the pass
    norms: dict[str, str] = {}
    consumers = {c for layer in layers for c in layer.consumers}
    producers = {layer.weight for layer in layers}
    handles = []
    for name, module in model.named_modules():
        weight = f"{name}.weight"
        if weight in consumers:
            handles.append(module.register_forward_pre_hook(
                lambda m, args, weight=weight: inputs.__setitem__(weight, args[0].detach().clone())))
        if weight in producers:
            handles.append(module.register_forward_hook(
                lambda m, args, out, weight=weight: outputs.__setitem__(id(out), (weight, out))))
        if isinstance(module, NORMS):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: norms.__setitem__(outputs[id(args[0])][0], name)
                if id(args[0]) in outputs and outputs[id(args[0])][1] is args[0] else None))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return inputs, norms


def _constant_offset(module: nn.Module, x: Tensor) -> Tensor:
    """The consumer's response (without bias) to only the removed units' constant values in `x`."""
    if isinstance(module, nn.Linear):
        return nn.functional.linear(x, module.weight)[0]
    if isinstance(module, CONVOLUTIONS):
        return module._conv_forward(x, module.weight, None)[0]
    raise TypeError(f"cannot fold constants into a {type(module).__name__}")


def _slice(module: nn.Module, index: Tensor, dim: int) -> None:
    """Keep only `index` along `dim` of a Linear/Conv (0: outputs, 1: inputs) or of a BatchNorm's features."""
    with torch.no_grad():
        if isinstance(module, PRUNABLE):
            module.weight = nn.Parameter(module.weight.index_select(dim, index).clone())
            if dim == 0 and module.bias is not None:
                module.bias = nn.Parameter(module.bias[index].clone())
            if isinstance(module, nn.Linear):
                module.out_features, module.in_features = module.weight.shape
            else:
                module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1]
        elif isinstance(module, NORMS):
            for name in ("weight", "bias"):
                if getattr(module, name) is not None:
                    setattr(module, name, nn.Parameter(getattr(module, name)[index].clone()))
            for name in ("running_mean", "running_var"):
                if getattr(module, name) is not None:
                    setattr(module, name, getattr(module, name)[index].clone())
            module.num_features = len(index)
        else:
            raise TypeError(f"cannot slice a {type(module).__name__}")


def masked_network(model: str, input_shape: tuple[int, ...], num_outputs: int, state: Mapping[str, Tensor],
                   mask: Mapping[str, Tensor]) -> nn.Module:
    """The full-size network with masked weights at exactly zero, in eval mode on the CPU."""
    net = build_model(model, input_shape, num_outputs, seed=0)
    net.load_state_dict(apply_mask({k: v.cpu() for k, v in state.items()}, {k: v.cpu() for k, v in mask.items()}))
    return net.eval()


def compact_network(masked: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict]:
    """A physically smaller copy of `masked` without its dead units; returns (network, per-layer unit counts).

    The model must be a chain of layers (lth.models.topology) or say what its units are (`structured_units`);
    otherwise the error says what it cannot handle."""
    kinds = prunable_layers(masked)
    layers = unit_layers(masked, kinds)
    params = dict(masked.named_parameters())
    plans = plan_units(layers, {name: params[name] for name in kinds})
    inputs, norms = _probe(masked, layers, input_shape)
    compact = copy.deepcopy(masked).eval()

    offsets: dict[str, Tensor] = {}
    for layer in layers:
        removed = ~plans[layer.weight].keep
        for consumer in layer.consumers:
            if not removed.any():
                continue
            span = unit_span(tuple(params[layer.weight].shape), tuple(params[consumer].shape))
            x = inputs[consumer]
            columns = removed.repeat_interleave(span).view(1, -1, *([1] * (x.dim() - 2)))
            with torch.no_grad():
                offset = _constant_offset(masked.get_submodule(module_of(consumer)), x * columns)
            offsets[consumer] = offsets.get(consumer, 0) + offset

    for layer in layers:
        keep = plans[layer.weight].keep.nonzero().squeeze(1)
        _slice(compact.get_submodule(module_of(layer.weight)), keep, 0)
        if layer.weight in norms:
            _slice(compact.get_submodule(norms[layer.weight]), keep, 0)
        for consumer in layer.consumers:
            span = unit_span(tuple(params[layer.weight].shape), tuple(params[consumer].shape))
            columns = (keep[:, None] * span + torch.arange(span)[None, :]).flatten()
            _slice(compact.get_submodule(module_of(consumer)), columns, 1)

    for consumer, offset in offsets.items():
        if consumer in plans:
            offset = offset[plans[consumer].keep]
        if not offset.any():
            continue
        name = module_of(consumer)
        module = compact.get_submodule(name)
        with torch.no_grad():
            first = offset.flatten(1)[:, :1].reshape(-1, *([1] * (offset.dim() - 1))) if offset.dim() > 1 else offset
            uniform = offset.dim() == 1 or torch.equal(offset, first.expand_as(offset))
            if uniform:
                per_unit = offset if offset.dim() == 1 else offset.flatten(1)[:, 0]
                bias = module.bias if module.bias is not None else torch.zeros_like(per_unit)
                module.bias = nn.Parameter(bias + per_unit)
            else:
                _set_module(compact, name, OffsetConv(module, offset.clone()))

    units = {name: {"units": len(p.keep), "kept": int(p.keep.sum()), "dead_in": int(p.dead_in.sum()),
                    "dead_out": int(p.dead_out.sum())} for name, p in plans.items()}
    return compact.eval(), units
