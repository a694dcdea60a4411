"""Whether a model is a chain of layers, traced with torch.fx: what structured pruning and compaction need.

A chain: the input flows through the prunable layers one after another, and between two of them only
through elementwise activations, dropout, batch norm, pooling and flatten/reshape: no branch, no merge.
Removing a unit (a neuron or a channel) from such a network means removing a row of its layer and the
matching input columns of the next one, nothing else. A model that is not a chain can say itself which
units it has (`structured_units(kinds)`, as lth's ResNet does); otherwise the error names what breaks
the chain.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

from lth.core.errors import LthError, one_line
from lth.models.layers import PRUNABLE

PASS_THROUGH_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh,
    nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Flatten,
)
PASS_THROUGH_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu, F.silu, F.mish, torch.tanh, F.tanh,
    torch.sigmoid, F.sigmoid, F.hardtanh, F.softplus, F.dropout, torch.flatten,
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}
PASS_THROUGH_METHODS = {"relu", "tanh", "sigmoid", "flatten", "view", "reshape", "contiguous", "float"}
SHAPE_READS = {"size", "dim"}  # x.view(x.size(0), -1) reads x twice: the size is no second path


def chain_layers(model: nn.Module, what: str = "structured pruning") -> list[str]:
    """The module names of the model's prunable layers in the order data flows through them; an LthError
    saying what breaks the chain when the model is not one."""
    name = type(model).__name__
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - data-dependent control flow, unsupported ops ...
        raise LthError(f"{what} needs a model torch.fx can trace, and {name} cannot be traced "
                       f"({one_line(exc, 200)}); give the model a "
                       "`structured_units(kinds)` method instead") from None
    modules = dict(model.named_modules())
    inputs = [node for node in graph.nodes if node.op == "placeholder"]
    if len(inputs) != 1:
        raise LthError(f"{what} needs a model with one input; {name}.forward takes {len(inputs)}")
    current, order = inputs[0], []
    while True:
        users = [u for u in current.users if not _reads_shape(u)]
        if len(users) != 1:
            raise LthError(f"{what} works on a chain of Linear/Conv layers; in {name} the output of "
                           f"{_describe(current, modules)} feeds {len(users)} operations "
                           f"({', '.join(_describe(u, modules) for u in users) or 'none'}): a branch")
        node = users[0]
        if node.op == "output":
            return order
        others = [a for a in node.all_input_nodes if a is not current and not _reads_shape(a)]
        if others:
            raise LthError(f"{what} works on a chain of Linear/Conv layers; in {name}, {_describe(node, modules)} "
                           f"combines two paths (a residual connection or a concatenation)")
        if node.op == "call_module" and isinstance(modules[node.target], PRUNABLE):
            order.append(node.target)
        elif not _passes_through(node, modules):
            raise LthError(f"{what} works on a chain of Linear/Conv layers with elementwise activations, dropout, "
                           f"batch norm, pooling and flatten between them; {name} has {_describe(node, modules)}")
        current = node


def _reads_shape(node: torch.fx.Node) -> bool:
    return ((node.op == "call_method" and node.target in SHAPE_READS)
            or (node.op == "call_function" and node.target is getattr and node.args[1:2] == ("shape",))
            or (node.op == "call_function" and node.target is operator.getitem and _reads_shape(node.args[0])))


def _passes_through(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], PASS_THROUGH_MODULES)
    if node.op == "call_function":
        return node.target in PASS_THROUGH_FUNCTIONS
    return node.op == "call_method" and node.target in PASS_THROUGH_METHODS


def _describe(node: torch.fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return f"{node.target} ({type(modules[node.target]).__name__})"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    if node.op == "call_method":
        return f".{node.target}()"
    return "the input" if node.op == "placeholder" else node.op
