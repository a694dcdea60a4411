"""CIFAR VGG-19 with BatchNorm, as used by Frankle et al. for the larger-scale lottery-ticket experiments."""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import nn

from lth.models.base import PrunableModel

# Output channels of each 3x3 conv; "M" is a 2x2 max pool. No pool after the last block:
# global average pooling follows, so the 2x2 map left on 32x32 inputs is fine.
VGG19_PLAN: tuple[Union[int, str], ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
)


def init_kaiming_normal(model: nn.Module) -> None:
    """He-normal (fan_in, ReLU) weights, zero biases, identity BatchNorm: the standard init for BN nets."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class VGG(PrunableModel):
    """3x3 conv + BN + ReLU blocks per `plan`, global average pooling, one Linear classifier."""

    output_layer = "fc"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_outputs: int,
        plan: Sequence[Union[int, str]] = VGG19_PLAN,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = input_shape[0]
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            width = int(item)
            # The conv bias is redundant before BatchNorm, so it is left out.
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels, num_outputs)
        init_kaiming_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
