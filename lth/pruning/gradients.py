"""Loss gradients of a masked network on a few seeded training batches (for gradient-based criteria); the loss
is the data's task's (lth.tasks)."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

GRADIENT_BATCHES = 10  # SNIP uses a handful of batches; ten keeps the estimate stable and the stage cheap


def mean_gradients(
    model_name: str,
    state: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    splits,
    batch_size: int,
    seed: int,
    batches: int = GRADIENT_BATCHES,
) -> dict[str, Tensor]:
    """d(loss)/d(weight) of every masked layer, averaged over `batches` seeded batches, at weights `state`."""
    from lth.models import build_model
    from lth.tasks import get_task

    device = splits.train_x.device
    model = build_model(model_name, splits.input_shape, splits.num_outputs, seed=0)
    model.load_state_dict({k: v for k, v in state.items()})
    model.to(device).train()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].mul_(m.to(device=device, dtype=params[name].dtype))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(splits.train_x), generator=generator)
    size = min(batch_size, len(order))
    model.zero_grad(set_to_none=True)
    task = get_task(splits.task)
    for b in range(batches):
        idx = order[(b * size) % len(order) :][:size].to(device)
        task.mean_loss(model(splits.train_x[idx]), splits.train_y[idx]).div(batches).backward()
    return {name: params[name].grad.detach().cpu().clone() for name in mask}
