"""Export: the compacted network as a `torch.export` program, the file `lth compact` writes.

`torch.export.load(path).module()(x)` needs nothing from lth, so a compacted ticket runs anywhere torch does.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn


def export_bytes(network: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """`torch.export` program of `network` (any batch size), serialised: what `compact` writes to disk."""
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(network.eval(), (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def load_exported(data: bytes | str | Path) -> nn.Module:
    """The callable module of a saved export (what a user without lth does: torch.export.load(path).module())."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    return torch.export.load(source).module()
