"""Which device trains: 'auto' picks a CUDA GPU when there is one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lth.core.errors import LthError, unknown_choice

if TYPE_CHECKING:
    import torch

DEVICES = {
    "auto": "a CUDA GPU when present, else the CPU",
    "cpu": "the CPU",
    "cuda": "the (current) CUDA GPU; an error when there is none",
}


def resolve_device(name: str) -> "torch.device":
    """'auto' picks CUDA when present; 'cuda' without a GPU is a clear error."""
    import torch

    if name not in DEVICES:
        raise unknown_choice("device", name, DEVICES)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise LthError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)
