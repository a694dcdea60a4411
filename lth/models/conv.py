"""Conv-2/4/6: the VGG-like CIFAR-10 networks of Frankle & Carbin (2019), Figure 2."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from lth.models.base import PrunableModel
from lth.models.lenet import init_glorot_normal, probe_flat_size


class ConvNet(PrunableModel):
    """Stages of two 3x3 convs then a 2x2 max pool, followed by fc 256-256-classes.

    `stage_widths` picks the depth: (64,) is Conv-2, (64, 128) Conv-4, (64, 128, 256) Conv-6.
    """

    output_layer = "fc3"

    def __init__(self, input_shape: tuple[int, int, int], num_outputs: int, stage_widths: Sequence[int]) -> None:
        super().__init__()
        if not stage_widths:
            raise ValueError("ConvNet needs at least one stage")
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for width in stage_widths:
            layers += [
                nn.Conv2d(in_channels, width, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.Conv2d(width, width, kernel_size=3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.fc1 = nn.Linear(probe_flat_size(self.features, input_shape), 256)
        self.fc2 = nn.Linear(256, 256)
        self.fc3 = nn.Linear(256, num_outputs)
        init_glorot_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
