"""LeNet-300-100 and LeNet-5: the small MNIST networks of Frankle & Carbin (2019)."""

from __future__ import annotations

import math

import torch
from torch import nn

from lth.core.errors import LthError
from lth.models.base import PrunableModel


def init_glorot_normal(model: nn.Module) -> None:
    """Glorot-normal weights and zero biases: the initialisation the lottery-ticket paper rewinds to."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def probe_flat_size(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Run a zero input through `features` so fc sizes follow from the input shape, not hand arithmetic."""
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise LthError(f"input shape {tuple(input_shape)} is too small for this model: {exc}") from exc
    return out[0].numel()


class LeNet300100(PrunableModel):
    """Fully connected 300-100 network; the input is flattened, so examples of any shape work (images, vectors)."""

    output_layer = "fc3"
    mlp_layers = ("fc1", "fc2", "fc3")

    def __init__(self, input_shape: tuple[int, ...], num_outputs: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(math.prod(input_shape), 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_outputs)
        init_glorot_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(PrunableModel):
    """Classic LeNet-5 with ReLU and max pooling; 28x28 inputs are padded so the maps match 32x32 LeNet."""

    output_layer = "fc3"

    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        # Classic MNIST LeNet-5 pads 28x28 by 2 to emulate LeCun's 32x32 input.
        padding = 2 if min(height, width) < 32 else 0
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=padding),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(probe_flat_size(self.features, input_shape), 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_outputs)
        init_glorot_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
