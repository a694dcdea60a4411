"""What every lth model shares: which weights are prunable, and which layer is the output layer."""

from __future__ import annotations

from torch import nn


def has_convolutions(model: nn.Module) -> bool:
    """Whether the model convolves: such nets batch badly on CPUs and want channels-last layout on GPUs."""
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


class PrunableModel(nn.Module):
    """A model whose Linear/Conv weights are prunable; biases and BatchNorm never are.

    Subclasses set `output_layer` to the module name of the final classifier layer.
    """

    output_layer: str = ""
    # A plain multilayer perceptron spells its layers here: flatten, then these Linear layers with a ReLU
    # between each two (lth.training.batched trains stacked copies of it with batched matmuls, no vmap).
    mlp_layers: tuple[str, ...] = ()

    def prunable_layers(self) -> dict[str, str]:
        """Map each prunable parameter name (e.g. 'fc1.weight') to its kind: 'conv', 'fc' or 'output'."""
        kinds: dict[str, str] = {}
        for name, module in self.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                kind = "output" if name == self.output_layer else ("conv" if isinstance(module, nn.Conv2d) else "fc")
                kinds[f"{name}.weight"] = kind
        if f"{self.output_layer}.weight" not in kinds:
            raise ValueError(f"{type(self).__name__}.output_layer '{self.output_layer}' is not a Linear/Conv layer")
        return kinds
