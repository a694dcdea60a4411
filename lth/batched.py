"""Many same-shaped masked networks trained in one step: trials and control arms of a round together.

The networks' weights are stacked along a new leading dimension and the model is evaluated with
`torch.func.vmap(functional_call)`, so one step runs batched matmuls/convolutions for all networks.
Each network draws its own batches (its own seeded data order) and its loss is its own mean; the
summed loss gives every network exactly the gradient it would get alone. Adam and SGD act elementwise,
so one optimizer over the stacked tensors *is* per-network Adam/SGD. Masks are stacked the same way
and applied with the same fused multiplies as the single-network trainer.
"""

from __future__ import annotations

import copy
from typing import Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from lth.errors import LthError
from lth.settings import TrainSettings
from lth.steps import Step
from lth.train import ProgressFn, TrainResult, iterations_per_epoch, lr_factor, make_optimizer


class StackedNetworks:
    """N copies of one architecture as stacked parameter/buffer tensors, callable with vmap."""

    def __init__(self, template: nn.Module, states: Sequence[Mapping[str, Tensor]], device: torch.device):
        self.base = copy.deepcopy(template).to("meta")
        self.count = len(states)
        self.params = {name: torch.stack([s[name] for s in states]).to(device).requires_grad_()
                       for name, _ in template.named_parameters()}
        self.buffers = {name: torch.stack([s[name] for s in states]).to(device)
                        for name, _ in template.named_buffers()}
        call = lambda p, b, x: functional_call(self.base, (p, b), (x,))  # noqa: E731
        self._train_call = vmap(call, in_dims=(0, 0, 0))  # each network its own batch
        self._shared_call = vmap(call, in_dims=(0, 0, None))  # every network the same inputs

    def __call__(self, x: Tensor) -> Tensor:
        """x: (N, B, ...) -> logits (N, B, classes), in training mode."""
        self.base.train()
        return self._train_call(self.params, self.buffers, x)

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, batch_size: int = 2000) -> tuple[Tensor, Tensor]:
        """Per-network (mean cross-entropy, accuracy) on one shared dataset, as (N,) tensors."""
        self.base.eval()
        loss = torch.zeros(self.count, device=x.device)
        correct = torch.zeros(self.count, device=x.device)
        for start in range(0, len(x), batch_size):
            out = self._shared_call(self.params, self.buffers, x[start : start + batch_size])
            target = y[start : start + batch_size].expand(self.count, -1)
            loss += F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(self.count, -1).sum(1)
            correct += (out.argmax(dim=2) == target).sum(1)
        n = max(len(x), 1)
        return loss / n, correct / n

    def state(self, i: int) -> dict[str, Tensor]:
        """Network i's state_dict, on the CPU."""
        out = {k: v[i].detach().clone().cpu() for k, v in self.params.items()}
        out.update({k: v[i].detach().clone().cpu() for k, v in self.buffers.items()})
        return out


def train_batched(
    template: nn.Module,
    starts: Sequence[Mapping[str, Tensor]],
    masks: Sequence[Mapping[str, Tensor]],
    splits,
    settings: TrainSettings,
    seeds: Sequence[int],
    rewind_at: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
) -> list[TrainResult]:
    """Train len(starts) networks together; network i starts from starts[i] under masks[i], data order seeds[i].

    Returns one TrainResult per network, as `lth.train.train` would for that network alone.
    """
    from lth.datasets import augment_batch

    if not (len(starts) == len(masks) == len(seeds)) or not starts:
        raise LthError("train_batched needs one start state, one mask and one seed per network")
    device = splits.train_x.device
    n, batch = len(splits.train_x), settings.batch_size
    per_epoch = iterations_per_epoch(n, batch)
    total = Step.parse(settings.duration).to_iterations(per_epoch)
    eval_every = max(1, Step.parse(settings.eval_every).to_iterations(per_epoch))
    warmup = Step.parse(settings.warmup).to_iterations(per_epoch)
    milestones = [Step.parse(m).to_iterations(per_epoch) for m in settings.milestones]
    if rewind_at is not None and rewind_at > total:
        raise LthError(f"rewind step {rewind_at} iterations is beyond the training length of {total} iterations")

    nets = StackedNetworks(template, starts, device)
    count = nets.count
    names = list(masks[0])
    weights = [nets.params[name] for name in names]
    multipliers = [torch.stack([m[name] for m in masks]).to(device=device, dtype=w.dtype) for name, w in zip(names, weights)]
    with torch.no_grad():
        torch._foreach_mul_(weights, multipliers)

    optimizer = make_optimizer(list(nets.params.values()), settings)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, warmup, milestones, settings.gamma))
    order_gens = [torch.Generator().manual_seed(s) for s in seeds]
    augment_gens = [torch.Generator(device=device).manual_seed(s + 1) for s in seeds] if splits.augment else None

    results = [TrainResult(state={}) for _ in range(count)]
    running = torch.zeros(count, device=device)
    steps_since_eval = 0

    def record(iteration: int) -> None:
        nonlocal running, steps_since_eval
        val_loss, val_acc = nets.evaluate(splits.val_x, splits.val_y)
        test_loss, test_acc = nets.evaluate(splits.test_x, splits.test_y)
        train_loss = (running / steps_since_eval).tolist() if steps_since_eval else [float("nan")] * count
        columns = zip(train_loss, val_loss.tolist(), val_acc.tolist(), test_loss.tolist(), test_acc.tolist())
        for result, (tl, vl, va, sl, sa) in zip(results, columns):
            result.curve.append(dict(iteration=iteration, train_loss=tl, val_loss=vl, val_acc=va, test_loss=sl,
                                     test_acc=sa))
        running = torch.zeros(count, device=device)
        steps_since_eval = 0
        if progress:
            progress(iteration, total, results[0].curve[-1])

    record(0)
    report_every = max(1, total // 200)
    iteration = 0
    while iteration < total:
        perms = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(device)
        for b in range(per_epoch):
            if iteration == rewind_at:
                for i, result in enumerate(results):
                    result.rewind_state = nets.state(i)
            idx = perms[:, b * batch : (b + 1) * batch]
            x, y = splits.train_x[idx], splits.train_y[idx]
            if augment_gens is not None:
                x = torch.stack([augment_batch(x[i], g) for i, g in enumerate(augment_gens)])
            logits = nets(x)
            losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(count, batch).mean(1)
            optimizer.zero_grad(set_to_none=False)
            losses.sum().backward()
            with torch.no_grad():
                torch._foreach_mul_([w.grad for w in weights], multipliers)
                optimizer.step()
                torch._foreach_mul_(weights, multipliers)
            schedule.step()
            running += losses.detach()
            steps_since_eval += 1
            iteration += 1
            if iteration % eval_every == 0 or iteration == total:
                record(iteration)
            elif progress and iteration % report_every == 0:
                progress(iteration, total, None)
            if iteration == total:
                break
    for i, result in enumerate(results):
        if rewind_at is not None and rewind_at == total:
            result.rewind_state = nets.state(i)
        result.state = nets.state(i)
        result.iterations = total
    return results
