"""CIFAR ResNet-20 (He et al., 2016, Section 4.2) with 1x1-conv projection shortcuts."""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from lth.models.base import PrunableModel

_INNER_CONV = re.compile(r"^(blocks\.\d+)\.conv1\.weight$")
from lth.models.vgg import init_kaiming_normal


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with a residual connection; projects the shortcut when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(PrunableModel):
    """CIFAR ResNet of depth 6n+2: a 16-filter stem, three stages of n blocks (16/32/64), GAP, Linear."""

    output_layer = "fc"

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_outputs: int,
        blocks_per_stage: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(input_shape[0], widths[0], 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(widths[0])
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                # Downsample at the first block of every stage but the first.
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(in_channels, num_outputs)
        init_kaiming_normal(self)

    def structured_units(self, kinds: Mapping[str, str]) -> list[tuple[str, tuple[str, ...]]]:
        """Structured pruning's units (lth.pruning.structured): only the inner channels of each block, conv1's
        filters, read by conv2.

        Why not the residual stream: its channels are shared by the stem, every block's conv2 and every
        shortcut of a stage, and added together, so pruning one means tying it across the whole stage and
        gathering indices at each stage boundary. An inner channel lives between conv1 and conv2 of one
        block only, so removing it (conv1's filter, bn1's entry, conv2's input slice) keeps every residual
        add shape-consistent with no extra ops, and still shrinks both convs of every block. The stem,
        the conv2 outputs, the shortcuts and the classifier keep all their units.
        """
        units = []
        for name in kinds:
            match = _INNER_CONV.match(name)
            if match:
                consumer = f"{match.group(1)}.conv2.weight"
                if consumer not in kinds:
                    raise ValueError(f"{name} has no {consumer} to read its channels")
                units.append((name, (consumer,)))
        return units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
