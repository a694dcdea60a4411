"""Effective sparsity (Vysogorets & Kempe 2021): a kept weight counts only when it lies on a path from the
inputs to the outputs through kept weights.

Why: pruning can disconnect a whole neuron or channel (every weight into it pruned, or every weight out of
it), and the weights still kept on its other side cannot change the output any more. The usual count
("weights remaining") then overstates what the network uses; at high sparsity, and for pruning at
initialization, the two differ a lot (layer collapse is the extreme: a layer with nothing left).

Computed on a chain of Linear/Conv layers (lth.models.topology.chain_layers: activations, pooling and flatten
between them), at the level of units: a Linear's neurons, a Conv's channels, a flattened channel's H*W
columns of the next Linear. A unit is *connected* when some path of kept weights reaches it from the inputs
and leaves it towards the outputs; a weight is effective when it is kept and both units it joins are
connected (every input feature counts as connected from the inputs). Models that are not such a chain get a
clear "not computed" (their branches would need a graph walk this module does not do).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from lth.pruning.structured import unit_span


@dataclass(frozen=True)
class Effective:
    """Per layer: kept and effective weights, its size, and its disconnected output units (hidden layers)."""

    kept: dict[str, int]
    effective: dict[str, int]
    total: dict[str, int]
    disconnected_units: dict[str, int]
    masks: dict[str, Tensor]  # the effective masks

    @property
    def effective_remaining(self) -> float:
        return sum(self.effective.values()) / max(sum(self.total.values()), 1)

    @property
    def remaining(self) -> float:
        return sum(self.kept.values()) / max(sum(self.total.values()), 1)

    def layer_remaining(self) -> dict[str, float]:
        return {name: self.effective[name] / max(self.total[name], 1) for name in self.total}


def _units(mask: Tensor, span: int) -> Tensor:
    """(out units, in units) connectivity of a weight mask whose input columns come `span` per unit."""
    rows = mask.reshape(mask.shape[0], mask.shape[1], -1).any(-1)  # kernel positions of a conv
    return rows.reshape(rows.shape[0], rows.shape[1] // span, span).any(-1)


def effective_masks(masks: Mapping[str, Tensor], chain: Sequence[str]) -> Effective:
    """The effective part of `masks` (weight name -> bool mask) of layers `chain` in data-flow order, the first
    reading the inputs and the last producing the outputs."""
    layers = [masks[name].bool().cpu() for name in chain]
    spans = [1] + [unit_span(tuple(a.shape), tuple(b.shape)) for a, b in zip(layers, layers[1:])]
    units = [_units(m, s).float() for m, s in zip(layers, spans)]
    from_input = [torch.ones(units[0].shape[1], dtype=torch.float32)]  # every input feature (or channel) is there
    for connectivity in units:
        from_input.append((connectivity @ from_input[-1] > 0).float())
    to_output = [torch.ones(units[-1].shape[0], dtype=torch.float32)]  # every output is wanted
    for connectivity in reversed(units):
        to_output.insert(0, (connectivity.t() @ to_output[0] > 0).float())
    # unit i of level k (level 0: the inputs; level k: the outputs of layer k-1) is connected both ways
    connected = [(a > 0) & (b > 0) for a, b in zip(from_input, to_output)]
    kept, effective, total, disconnected, out = {}, {}, {}, {}, {}
    for k, (name, mask, span) in enumerate(zip(chain, layers, spans)):
        rows = connected[k + 1].view(-1, *([1] * (mask.dim() - 1)))
        columns = connected[k].repeat_interleave(span).view(1, -1, *([1] * (mask.dim() - 2)))
        useful = mask & rows & columns
        kept[name], effective[name], total[name] = int(mask.sum()), int(useful.sum()), mask.numel()
        disconnected[name] = int((~connected[k + 1]).sum()) if k < len(chain) - 1 else 0
        out[name] = useful
    return Effective(kept, effective, total, disconnected, out)


def model_chain(model) -> list[str]:  # noqa: ANN001 - nn.Module
    """The weight names of the model's prunable layers in data-flow order; an LthError ("effective sparsity is
    not computed: ...") when the model is not a chain of Linear/Conv layers."""
    from lth.core.errors import LthError
    from lth.models.layers import weight_name
    from lth.models.topology import chain_layers

    try:
        return [weight_name(name) for name in chain_layers(model, "effective sparsity")]
    except LthError as exc:
        reason = str(exc).replace("effective sparsity works", "it works")
        raise LthError(f"effective sparsity is not computed: {reason}") from None


def chain_of(model_name: str, input_shape: tuple[int, ...], num_outputs: int) -> "list[str] | str":
    """The model's layer chain for `effective_fields`, or why effective sparsity is not computed for it."""
    from lth.core.errors import LthError
    from lth.models import build_model

    try:
        return model_chain(build_model(model_name, input_shape, num_outputs, 0))
    except LthError as exc:
        return str(exc)


def effective_fields(mask: Mapping[str, Tensor], chain: "Sequence[str] | str") -> dict:
    """What every record lth writes says of a network's effective sparsity: `effective_remaining` (a fraction of
    all prunable weights), `disconnected_units` (hidden neurons/channels on no input-to-output path) and, per
    layer, both; or `effective_remaining: null` with `effective_not_computed` saying why (a graph that is not a
    chain, a mask without the chain's layers)."""
    if isinstance(chain, str):
        return {"effective_remaining": None, "effective_not_computed": chain}
    if set(chain) != set(mask):
        return {"effective_remaining": None,
                "effective_not_computed": "effective sparsity is not computed: the mask's layers are not the chain's"}
    result = effective_masks(mask, chain)
    return {"effective_remaining": round(result.effective_remaining, 6),
            "disconnected_units": sum(result.disconnected_units.values()),
            "effective_layers": {name: {"effective_remaining": round(result.effective[name] / result.total[name], 6),
                                        "disconnected_units": result.disconnected_units[name]} for name in chain}}
