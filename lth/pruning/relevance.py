"""Epsilon-LRP relevance of every prunable weight, from a few training samples per class.

The rule (Bach et al. 2015; used for pruning by Yeom et al. 2021, "Pruning by explaining"): for a
Linear or Conv2d layer z_j = sum_i a_i w_ij + b_j, relevance R_j at its output is passed to its inputs
by the epsilon rule  R_i = sum_j a_i w_ij R_j / (z_j + eps * sign(z_j)), and the relevance of the
connection (weight) w_ij is  R_ij = a_i w_ij R_j / (z_j + eps * sign(z_j))  (sign(0) := +1, so z = 0
passes nothing). ReLU passes relevance unchanged, max pooling routes it to the winning input, average
pooling, flatten and residual sums split it in proportion to their inputs (the z-rule); BatchNorm in
eval mode is an affine map treated like a layer whose shift absorbs relevance, as a bias does. The
relevance at the output is the task's (lth.tasks): the true class's logit (one-hot selection), or for
regression the prediction itself.

How it is computed, exactly and in one backward pass: with the gradient at every Linear/Conv2d output
scaled by z / (z + eps * sign(z)), relevance at any activation is activation x (modified) gradient, so
the weight relevance is w * (modified dL/dw) with L = sum over samples of the true-class logit. For
eps -> 0 this is gradient x input; eps > 0 damps contributions through near-zero pre-activations.

The score of a weight is its relevance summed (signed) over the samples: weights whose contribution
points away from the true class score lowest and are pruned first. Masked weights are zeroed first, so
pruned connections carry no relevance.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

EPSILON = 1e-2  # absolute stabiliser of the epsilon rule; pre-activations of our nets are O(1)
SAMPLES_PER_CLASS = 10  # "ten samples per class": a cheap, class-balanced reference set (regression: 100 samples)


class _EpsilonGradient(torch.autograd.Function):
    """Identity forward; backward scales the gradient by z / (z + eps * sign(z)) (the epsilon rule)."""

    @staticmethod
    def forward(ctx, z: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(z)
        ctx.eps = eps
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (z,) = ctx.saved_tensors
        sign = torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))
        return grad * z / (z + ctx.eps * sign), None


def weight_relevance(
    model_name: str,
    state: Mapping[str, Tensor],
    mask: Mapping[str, Tensor],
    splits,
    batch_size: int,
    seed: int,
    per_class: int = SAMPLES_PER_CLASS,
    eps: float = EPSILON,
) -> dict[str, Tensor]:
    """Summed epsilon-LRP relevance of every masked layer's weights at `state` (see the module docstring).

    Same signature as `lth.pruning.gradients.mean_gradients`, so a criterion can use either as its evidence;
    `batch_size` only bounds how many samples go through the network at once.
    """
    from lth.models import build_model
    from lth.tasks import get_task

    device = splits.train_x.device
    model = build_model(model_name, splits.input_shape, splits.num_outputs, seed=0)
    model.load_state_dict(dict(state))
    model.to(device).eval()  # BatchNorm uses running statistics: relevance of a fixed, deterministic map
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].mul_(m.to(device=device, dtype=params[name].dtype))
    hooks = [module.register_forward_hook(lambda _m, _i, out: _EpsilonGradient.apply(out, eps))
             for module in model.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
    try:
        task = get_task(splits.task)
        idx = task.reference_samples(splits.train_y, per_class, seed).to(device)
        model.zero_grad(set_to_none=True)
        for start in range(0, len(idx), max(1, batch_size)):
            chunk = idx[start : start + max(1, batch_size)]
            task.relevance(model(splits.train_x[chunk]), splits.train_y[chunk]).backward()
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (params[name].detach() * params[name].grad).cpu().clone() for name in mask}
