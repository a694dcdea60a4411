"""Learning a supermask (Zhou et al. 2019): the weights stay frozen, only a mask over them is trained.

Every prunable weight gets a trainable score s; each forward pass samples its mask m ~ Bernoulli(sigmoid(s))
and uses w * m. The sampling has no gradient, so the straight-through estimator passes the gradient of
m to sigmoid(s) unchanged. The frozen weights are θ0 or Zhou et al.'s signed constant (sign(θ0) x the
layer's init std). Dynamic weight rescaling multiplies each layer by (its weights / its kept weights) so
that the layer's output scale does not collapse as the mask thins out.

The scores train in the shared training loop (lth.training.loop): `SupermaskNetwork` is the network it
steps, whose trainable tensors are the scores; evaluation (with sampled masks) is the loop's own.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from lth.models.layers import prunable_layers
from lth.training.hooks import ProgressFn
from lth.training.settings import SupermaskSettings, TrainSettings


def frozen_weights(state: dict[str, Tensor], prunable: list[str], kind: str) -> dict[str, Tensor]:
    """θ0 itself, or sign(θ0) x the per-layer std of θ0 on every prunable weight (SUPERMASK_WEIGHTS)."""
    out = {k: v.clone() for k, v in state.items()}
    if kind == "signed_constant":
        for name in prunable:
            out[name] = torch.sign(state[name]) * float(state[name].float().std())
    return out


class SupermaskNetwork:
    """One network with frozen weights whose trainable parameters are the mask scores (lth.training.networks)."""

    count = 1
    graph_safe = False  # a fresh Bernoulli draw every step: a replayed CUDA graph would repeat one draw

    def __init__(self, model: nn.Module, settings: SupermaskSettings, seed: int):
        self.model, self.settings = model, settings
        device = next(model.parameters()).device
        prunable = list(prunable_layers(model))
        self.weights = frozen_weights({k: v.detach() for k, v in model.state_dict().items()}, prunable,
                                      settings.weights)
        logit = float(torch.logit(torch.tensor(settings.init_prob)))
        self.params = {name: torch.full_like(self.weights[name], logit, requires_grad=True) for name in prunable}
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def masked_weights(self, sample: bool) -> dict[str, Tensor]:
        """The frozen weights times a sampled (straight-through) or thresholded (p > 0.5) mask, rescaled."""
        out = dict(self.weights)
        for name, s in self.params.items():
            p = torch.sigmoid(s)
            if sample:
                m = torch.bernoulli(p.detach(), generator=self.generator)
                m = m + p - p.detach()  # straight-through: gradient of m is taken as gradient of p
            else:
                m = (p > 0.5).to(p.dtype)
            w = self.weights[name] * m
            if self.settings.rescale:
                w = w * (m.numel() / m.detach().sum().clamp(min=1.0))
            out[name] = w
        return out

    def __call__(self, x: Tensor) -> Tensor:
        return functional_call(self.model, self.masked_weights(True), (x[0],)).unsqueeze(0)

    def shared(self, x: Tensor, sample: bool = True) -> Tensor:
        return functional_call(self.model, self.masked_weights(sample), (x,)).unsqueeze(0)

    def set_training(self, on: bool) -> None:
        self.model.train(on)

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor:
        return tensors[0]

    def tensors(self) -> list[Tensor]:
        return list(self.params.values())

    def state(self, i: int) -> dict[str, Tensor]:
        return {name: s.detach().cpu().clone() for name, s in self.params.items()}

    def mask(self) -> dict[str, Tensor]:
        """The final mask: weights whose keep probability is above one half."""
        return {name: (torch.sigmoid(s.detach()) > 0.5).cpu() for name, s in self.params.items()}


def learn_supermask(model_name: str, splits, settings: SupermaskSettings, seed: int,
                    progress: Optional[ProgressFn] = None) -> dict:
    """Train mask scores over frozen weights; returns metrics, the learning curve and the final mask."""
    from lth.models import build_model
    from lth.training.evaluation import evaluate
    from lth.training.loop import run_training

    from lth.tasks import get_task

    settings.validate()
    task = get_task(splits.task)
    model = build_model(model_name, splits.input_shape, splits.num_outputs, seed).to(splits.train_x.device)
    net = SupermaskNetwork(model, settings, seed)
    train = TrainSettings(optimizer="adam", lr=settings.lr, batch_size=settings.batch_size,
                          duration=settings.duration, eval_every=settings.eval_every)
    result = run_training(net, [{}], splits, train, [seed], progress=progress)[0]
    headline = task.headline.name

    def measure(split: str, sample: bool) -> float:
        x, y = getattr(splits, f"{split}_x"), getattr(splits, f"{split}_y")
        return float(evaluate(net if sample else _Thresholded(net), x, y, task)[headline][0])

    mask = net.mask()
    kept = sum(int(m.sum()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    with torch.no_grad():
        expected = float(torch.cat([torch.sigmoid(s).flatten() for s in net.params.values()]).mean())
    return {
        "metrics": {
            f"end_test_{headline}_sampled": measure("test", True),
            f"end_test_{headline}_thresholded": measure("test", False),
            f"end_val_{headline}_sampled": measure("val", True),
            "expected_weights_remaining": round(expected, 6),
            "weights_remaining": round(kept / total, 6),
            "iterations": result.iterations,
            "weights": settings.weights,
            "rescale": settings.rescale,
            "task": task.name,
        },
        "curve": result.curve,
        "mask": mask,
    }


class _Thresholded:
    """The supermask network evaluated with its thresholded (p > 0.5) mask."""

    def __init__(self, net: SupermaskNetwork):
        self.net, self.count = net, 1

    def shared(self, x: Tensor) -> Tensor:
        return self.net.shared(x, sample=False)

    def set_training(self, on: bool) -> None:
        self.net.set_training(on)
