"""Which weights of a model are prunable, and what kind of layer each is (for per-kind pruning rates).

Any nn.Module works: every nn.Linear and nn.Conv1d/2d/3d weight is prunable; biases, normalisation layers
and embeddings never are. A layer's kind is 'conv' (a convolution), 'fc' (a hidden linear layer) or
'output', the layer producing the network's outputs: the one the model names in an `output_layer`
attribute, else the last nn.Linear in the order the model registers its modules (the last prunable
layer when there is no Linear). The output layer gets its own rate because pruning the few weights that
produce the outputs hurts most (Frankle & Carbin prune it at half the hidden rate).
"""

from __future__ import annotations

from torch import nn

from lth.core.errors import LthError

PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def weight_name(module_name: str) -> str:
    """The state-dict key of a layer's weight ('fc1' -> 'fc1.weight'; the model itself -> 'weight')."""
    return f"{module_name}.weight" if module_name else "weight"


def output_layer(model: nn.Module) -> str:
    """The module name of the layer producing the outputs (see the module docstring)."""
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]
    named = getattr(model, "output_layer", None)
    if named is not None and named != "":
        if named not in dict(layers):
            raise LthError(f"{type(model).__name__}.output_layer is '{named}', which is not one of its Linear/Conv "
                           f"layers ({', '.join(n or '(the model itself)' for n, _ in layers) or 'none'})")
        return named
    linears = [name for name, m in layers if isinstance(m, nn.Linear)]
    return linears[-1] if linears else (layers[-1][0] if layers else "")


def prunable_layers(model: nn.Module) -> dict[str, str]:
    """Each prunable weight's state-dict name -> its kind: 'conv', 'fc' or 'output' (in module order)."""
    output = output_layer(model)
    return {weight_name(name): "output" if name == output else ("conv" if isinstance(m, CONVOLUTIONS) else "fc")
            for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def has_convolutions(model: nn.Module) -> bool:
    """Whether the model convolves: such nets batch badly on CPUs and want channels-last layout on GPUs."""
    return any(isinstance(m, CONVOLUTIONS) for m in model.modules())
