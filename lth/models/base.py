"""The base class of lth's own models: their prunable weights, their output layer and, for a plain MLP, its layers.

A researcher's model need not derive from it: any nn.Module works (lth.models.layers finds its prunable
layers). Deriving lets a model name its output layer and, for a multilayer perceptron, its layers, which
the batched trainer then runs as stacked matmuls (lth.training.batched.StackedMLP).
"""

from __future__ import annotations

from torch import nn

from lth.models.layers import has_convolutions, prunable_layers

__all__ = ["PrunableModel", "has_convolutions"]


class PrunableModel(nn.Module):
    """A model whose Linear/Conv weights are prunable; biases and BatchNorm never are.

    Subclasses set `output_layer` to the module name of the final layer.
    """

    output_layer: str = ""
    # A plain multilayer perceptron spells its layers here: flatten, then these Linear layers with a ReLU
    # between each two (lth.training.batched trains stacked copies of it with batched matmuls, no vmap).
    mlp_layers: tuple[str, ...] = ()

    def prunable_layers(self) -> dict[str, str]:
        """Map each prunable parameter name (e.g. 'fc1.weight') to its kind: 'conv', 'fc' or 'output'."""
        return prunable_layers(self)
