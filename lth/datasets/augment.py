"""Crop-and-flip augmentation of image batches (CIFAR), as whole-batch tensor ops on the data's device."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def augment_batch(x: Tensor, generator: torch.Generator | None = None, pad: int = 4) -> Tensor:
    """Random crop (zero padding `pad`, offsets uniform in [0, 2*pad]) plus random horizontal flip (p = 1/2).

    Whole-batch tensor ops on x's device, one gather for crop and flip together, so augmentation never
    becomes a per-sample Python loop. Randomness comes from `generator` (reproducible); when it lives on
    another device than x, the draws are made there and moved.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W) images, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"augment_batch: pad must be >= 0, got {pad}")
    n, c, h, w = x.shape
    draw_device = generator.device if generator is not None else x.device
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=draw_device).to(x.device)
    flip = torch.randint(0, 2, (n,), generator=generator, device=draw_device).to(x.device).bool()

    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + dx[:, None]  # (n, w): mirrored crop when flipped
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
