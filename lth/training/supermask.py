"""Learning a supermask (Zhou et al. 2019): the weights stay frozen, only a mask over them is trained.

Every prunable weight gets a trainable score s; each forward pass samples its mask m ~ Bernoulli(sigmoid(s))
and uses w * m. The sampling has no gradient, so the straight-through estimator passes the gradient of
m to sigmoid(s) unchanged. The frozen weights are θ0 or Zhou et al.'s signed constant (sign(θ0) x the
layer's init std). Dynamic weight rescaling multiplies each layer by (its weights / its kept weights) so
that the layer's output scale does not collapse as the mask thins out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call

from lth.core.errors import LthError, unknown_choice
from lth.core.steps import Step

FROZEN_WEIGHTS = ("init", "signed_constant")


@dataclass(frozen=True)
class SupermaskSettings:
    """How a supermask is learned: which frozen weights, how the scores train, for how long."""

    weights: str = "signed_constant"
    lr: float = 0.1
    batch_size: int = 60
    duration: str = "50ep"
    init_prob: float = 0.5
    rescale: bool = True
    eval_every: str = "1ep"

    def validate(self) -> "SupermaskSettings":
        if self.weights not in FROZEN_WEIGHTS:
            raise unknown_choice("supermask weights", self.weights, FROZEN_WEIGHTS)
        if not self.lr > 0:
            raise LthError(f"bad supermask lr {self.lr}: must be > 0")
        if self.batch_size < 1:
            raise LthError(f"bad supermask batch_size {self.batch_size}: must be >= 1")
        if not 0 < self.init_prob < 1:
            raise LthError(f"bad supermask init_prob {self.init_prob}: must be in (0, 1)")
        for value in (self.duration, self.eval_every):
            Step.parse(value)
        return self


def frozen_weights(state: dict[str, Tensor], prunable: list[str], kind: str) -> dict[str, Tensor]:
    """θ0 itself, or sign(θ0) x the per-layer std of θ0 on every prunable weight."""
    out = {k: v.clone() for k, v in state.items()}
    if kind == "signed_constant":
        for name in prunable:
            out[name] = torch.sign(state[name]) * float(state[name].float().std())
    return out


def learn_supermask(
    model_name: str,
    splits,
    settings: SupermaskSettings,
    seed: int,
    progress: Optional[Callable[[int, int, Optional[dict]], None]] = None,
) -> dict:
    """Train mask scores over frozen weights; returns metrics and the final (thresholded) mask."""
    from lth.models import build_model
    from lth.training.loop import iterations_per_epoch

    settings.validate()
    device = splits.train_x.device
    model = build_model(model_name, splits.input_shape, splits.num_classes, seed).to(device)
    prunable = list(model.prunable_layers())
    weights = frozen_weights({k: v.detach() for k, v in model.state_dict().items()}, prunable, settings.weights)
    logit = float(torch.logit(torch.tensor(settings.init_prob)))
    scores = {name: torch.full_like(weights[name], logit, requires_grad=True) for name in prunable}
    optimizer = torch.optim.Adam(list(scores.values()), lr=settings.lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    n = len(splits.train_x)
    per_epoch = iterations_per_epoch(n, settings.batch_size)
    total = Step.parse(settings.duration).to_iterations(per_epoch)
    eval_every = max(1, Step.parse(settings.eval_every).to_iterations(per_epoch))

    def masked_weights(sample: bool) -> dict[str, Tensor]:
        out = dict(weights)
        for name, s in scores.items():
            p = torch.sigmoid(s)
            if sample:
                m = torch.bernoulli(p.detach(), generator=generator)
                m = m + p - p.detach()  # straight-through: gradient of m is taken as gradient of p
            else:
                m = (p > 0.5).to(p.dtype)
            w = weights[name] * m
            if settings.rescale:
                w = w * (m.numel() / m.detach().sum().clamp(min=1.0))
            out[name] = w
        return out

    @torch.no_grad()
    def accuracy(x: Tensor, y: Tensor, sample: bool) -> float:
        model.eval()
        params = masked_weights(sample)
        correct = sum(int((functional_call(model, params, (x[i : i + 2000],)).argmax(1) == y[i : i + 2000]).sum())
                      for i in range(0, len(x), 2000))
        model.train()
        return correct / max(len(x), 1)

    curve = []
    model.train()
    iteration = 0
    while iteration < total:
        order = torch.randperm(n, generator=order_gen).to(device)
        for b in range(per_epoch):
            idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            loss = F.cross_entropy(functional_call(model, masked_weights(True), (splits.train_x[idx],)),
                                   splits.train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iteration += 1
            if iteration % eval_every == 0 or iteration == total:
                point = {"iteration": iteration, "train_loss": float(loss.detach()), "val_acc": accuracy(splits.val_x,
                         splits.val_y, True), "test_acc": accuracy(splits.test_x, splits.test_y, True)}
                curve.append(point)
                if progress:
                    progress(iteration, total, point)
            if iteration == total:
                break
    with torch.no_grad():
        probs = torch.cat([torch.sigmoid(s).flatten() for s in scores.values()])
        final_mask = {name: (torch.sigmoid(s) > 0.5).cpu() for name, s in scores.items()}
    kept = sum(int(m.sum()) for m in final_mask.values())
    total_weights = sum(m.numel() for m in final_mask.values())
    return {
        "metrics": {
            "test_acc_sampled": accuracy(splits.test_x, splits.test_y, True),
            "test_acc_thresholded": accuracy(splits.test_x, splits.test_y, False),
            "val_acc_sampled": accuracy(splits.val_x, splits.val_y, True),
            "expected_weights_remaining": round(100.0 * float(probs.mean()), 4),
            "weights_remaining": round(100.0 * kept / total_weights, 4),
            "iterations": total,
            "weights": settings.weights,
            "rescale": settings.rescale,
        },
        "curve": curve,
        "mask": final_mask,
    }
