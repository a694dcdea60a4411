"""The training loop: masked networks, data already on the device as tensors, seeded data order.

One loop trains one network (a plain module call) or many stacked networks (`lth.training.batched`,
one step for all trials and control arms of a round). It only steps; evaluation, progress, checkpoints
and per-epoch work plug in as hooks (lth.training.hooks).

Why it is fast: no DataLoader and no per-sample transforms (a batch is one row gather from a resident
tensor), masks applied with fused foreach multiplies (and not at all to tensors with nothing pruned),
no host sync per step (running losses stay on the device until an evaluation), stacked MLPs step with
a hand-written backward pass into kept gradient tensors (no autograd graph, no allocation), and on
CUDA the whole step (gather, forward, backward, optimizer, masks) is captured once as a CUDA graph and
replayed (lth.training.graphs).
Why it is correct: gradients of pruned weights are zeroed before the optimizer step, so their moments
stay zero and Adam, RAdam and SGD leave them exactly where they are (a zero gradient with zero moments
is a zero update, and L2 weight decay of a zero weight is zero). Pruned weights held at non-zero
values (θ0, for the freezing mask-0 actions) are re-imposed after every step, since weight decay
would move them. tests/test_train.py checks the pruned weights right after every optimizer step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from lth.core import interrupt
from lth.core.errors import LthError
from lth.core.seeds import derive_seed
from lth.core.durations import Step
from lth.tasks import get_task
from lth.training.evaluation import Evaluation
from lth.training.graphs import capture_cuda_graph, channels_last_wanted, cuda_graphs_enabled, record_cuda_graph
from lth.training.hooks import Checkpointing, Hook, Progress, ProgressFn
from lth.training.networks import Networks, SingleNetwork
from lth.training.optimizers import lr_factor, make_optimizer
from lth.training.precision import PRECISIONS, autocast
from lth.training.settings import TrainSettings
from lth.training.state import DataParallel, TrainResult

if TYPE_CHECKING:
    from lth.training.checkpoint import Checkpoint


def rows(data: Tensor, index: Tensor) -> Tensor:
    """data[index] for an (N, B) index of examples: `index_select` copies whole rows, where advanced
    indexing computes an offset per element (5x slower on a CPU for a batch of 8 x 60 digits)."""
    return data.index_select(0, index.flatten()).view(*index.shape, *data.shape[1:])


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped, so every step has the same shape)."""
    if batch_size > num_train:
        raise LthError(f"bad batch_size {batch_size}: larger than the {num_train} training examples")
    return num_train // batch_size


class TrainingLoop:
    """Network i of `nets` trained under masks[i] with data order seeds[i], for `settings.duration` steps.

    Masked-out weights are set to zero, or, with `hold_pruned`, frozen at the values they start with.
    With `parallel`, this process trains on its 1/world share of every batch (the same global batches
    as one process would draw) and gradients are averaged over the processes before the masks zero the
    pruned ones. Hooks and checkpoints see it as a `lth.training.state.LoopState`.
    """

    def __init__(self, nets: Networks, masks: Sequence[Mapping[str, Tensor]], splits, settings: TrainSettings,
                 seeds: Sequence[int], hold_pruned: bool = False, parallel: Optional[DataParallel] = None,
                 cuda_graphs: bool = True):
        self.count = nets.count
        if not (len(masks) == len(seeds) == self.count):
            raise LthError("training needs one mask and one seed per network")
        self.splits, self.settings, self.parallel = splits, settings, parallel
        self.device = device = splits.train_x.device
        self.n, self.batch = len(splits.train_x), settings.batch_size
        self.per_epoch = iterations_per_epoch(self.n, self.batch)
        self.rank, self.world = (parallel.rank, parallel.world) if parallel else (0, 1)
        if self.batch % self.world:
            raise LthError(f"bad batch_size {self.batch}: it must split evenly over the {self.world} processes")
        self.local = self.batch // self.world  # this process's share of every batch
        self.channels_last = channels_last_wanted(nets, device)
        if self.channels_last:
            nets.model.to(memory_format=torch.channels_last)  # type: ignore[attr-defined]
        self.nets = parallel.wrap(nets) if parallel else nets
        self.total = Step.parse(settings.duration).to_iterations(self.per_epoch)
        self.graph = cuda_graphs and nets.graph_safe and cuda_graphs_enabled(device) and parallel is None

        # Only tensors with a pruned weight are multiplied (x * 1 is x: a dense round skips it all), in the
        # weights' own layout (channels_last or not), so the fused multiplies run at full speed.
        stacked = {name: self.nets.stack(name, [m[name] for m in masks]) for name in masks[0]}
        names = [name for name, mask in stacked.items() if not bool(mask.all())]
        self.weights = [self.nets.params[name] for name in names]
        self.multipliers = [torch.empty_like(w, requires_grad=False).copy_(stacked[name])
                            for name, w in zip(names, self.weights)]
        # Masked-out weights are zero, or with hold_pruned held at their starting values (θ0 for the
        # mask-0 action "freeze_init", ...): after each step w <- w * mask (+ held).
        self.held = [w.detach() * (1 - m) for w, m in zip(self.weights, self.multipliers)] if hold_pruned else []
        self.hold = any(bool(h.any()) for h in self.held)
        with torch.no_grad():
            self.apply_masks()

        self.optimizer = make_optimizer(list(self.nets.params.values()), settings, self.graph)
        warmup = Step.parse(settings.warmup).to_iterations(self.per_epoch)
        milestones = [Step.parse(m).to_iterations(self.per_epoch) for m in settings.milestones]
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda it: lr_factor(it, warmup, milestones, settings.gamma))
        self.order_gens = [torch.Generator().manual_seed(s) for s in seeds]
        augment_seeds = [s + 1 if self.rank == 0 else derive_seed(s + 1, "rank", self.rank) for s in seeds]
        self.augment_gens = ([torch.Generator(device=device).manual_seed(s) for s in augment_seeds]
                             if splits.augment else None)

        # The step reads its batch from static buffers, so the same code runs eagerly or as a replayed CUDA graph.
        self.batch_index = torch.zeros((self.count, self.local), dtype=torch.long, device=device)
        self.augmented = (torch.empty((self.count, self.local, *splits.input_shape), dtype=splits.train_x.dtype,
                                      device=device) if self.augment_gens else None)
        self.running = torch.zeros(self.count, device=device)  # summed training loss since the last evaluation
        self.cast = autocast(device, settings.precision)
        self.task = get_task(splits.task)  # the loss (and, for evaluation, the metrics)
        # networks with their own backward pass (a stacked MLP: lth.training.batched) use it where the task
        # spells its loss's gradient, except under autocast or DDP (whose gradient averaging hooks into autograd)
        self.hand_written = (hasattr(self.nets, "losses_and_grads") and parallel is None
                             and self.task.losses_and_output_grad is not None
                             and PRECISIONS[settings.precision].autocast_dtype is None)
        self.nets.set_training(True)
        self.run_step = (capture_cuda_graph(self.step, self.nets, self.optimizer, self.running, record_cuda_graph)
                         if self.graph else self.step)

        self.results = [TrainResult() for _ in range(self.count)]
        self.iteration = 0
        self.steps_since_eval = 0
        self.orders: Optional[Tensor] = None  # the current epoch's data order; None at an epoch boundary
        self.resumed = False  # a checkpoint was restored (lth.training.hooks.Checkpointing)
        # Networks a hook has stopped (early-bird tickets): index -> (iteration, state then). They keep stepping
        # with the others (a stacked step cannot leave one out) but their results are frozen at the stop.
        self.stopped: dict[int, tuple[int, dict[str, Tensor]]] = {}
        self.extras: dict = {}  # hooks' own state, saved and restored with mid-round checkpoints

    def stop_network(self, i: int) -> None:
        """Network i's training ends here: its result is its state and curve at this iteration; the loop ends
        once every network has stopped."""
        if i not in self.stopped:
            self.stopped[i] = (self.iteration, {k: v.detach().clone() for k, v in self.nets.state(i).items()})

    @property
    def finished(self) -> bool:
        return self.iteration >= self.total or len(self.stopped) == self.count

    def apply_masks(self) -> None:
        if not self.weights:  # nothing pruned here (e.g. a supermask's scores)
            return
        torch._foreach_mul_(self.weights, self.multipliers)
        if self.hold:
            torch._foreach_add_(self.weights, self.held)

    def step(self) -> None:
        """One optimizer step of every network on its current batch."""
        splits, count = self.splits, self.count
        x = self.augmented if self.augmented is not None else rows(splits.train_x, self.batch_index)
        if self.channels_last:  # (1, B, C, H, W): the one network sees x[0], made a channels-last batch
            x = x[0].contiguous(memory_format=torch.channels_last).unsqueeze(0)
        y = rows(splits.train_y, self.batch_index)
        if self.hand_written:
            losses = self.nets.losses_and_grads(x, y, self.task)  # type: ignore[attr-defined]
        else:
            with self.cast():
                outputs = self.nets(x)
            outputs = outputs.to(torch.promote_types(outputs.dtype, torch.float32))  # bf16 -> fp32; fp64 stays
            losses = self.task.loss(outputs.flatten(0, 1), y.flatten(0, 1)).view(count, self.local).mean(1)
            self.optimizer.zero_grad(set_to_none=not self.graph)  # a replayed graph needs its gradient tensors kept
            losses.sum().backward()
        with torch.no_grad():
            if self.weights:
                torch._foreach_mul_([w.grad for w in self.weights], self.multipliers)
            self.optimizer.step()
            if self.hold:  # zero pruned weights stay zero by themselves (see the module docstring)
                self.apply_masks()
            self.running.add_(losses.detach())

    def load_batch(self, b: int) -> None:
        """Batch b of the current epoch's order, this process's share, into the step's static buffers."""
        from lth.datasets import augment_batch

        start = b * self.batch + self.rank * self.local
        self.batch_index.copy_(self.orders[:, start : start + self.local])
        if self.augment_gens is not None:
            train_x = self.splits.train_x
            self.augmented.copy_(torch.stack([augment_batch(train_x[self.batch_index[i]], g)
                                              for i, g in enumerate(self.augment_gens)]))

    def run(self, hooks: Sequence[Hook] = ()) -> list[TrainResult]:
        """Train to the end (or from where a hook restored a checkpoint); returns one result per network."""
        for hook in hooks:
            hook.resume(self)
        for hook in hooks:
            hook.start(self)
        while not self.finished:
            if self.orders is None:  # a new epoch (a resumed one continues the order it saved)
                for hook in hooks:
                    hook.epoch_start(self, self.iteration // self.per_epoch)
                self.orders = torch.stack([torch.randperm(self.n, generator=g) for g in self.order_gens]).to(self.device)
            for b in range(self.iteration % self.per_epoch, self.per_epoch):
                self.load_batch(b)
                self.run_step()
                self.schedule.step()
                self.steps_since_eval += 1
                self.iteration += 1
                for hook in hooks:
                    hook.after_step(self)
                if self.finished:
                    break
                if interrupt.STOP.signal is not None:  # a Checkpointing hook saved the state and raised already
                    raise interrupt.Interrupted(f"interrupted by {interrupt.STOP.name()} at iteration "
                                                f"{self.iteration} of {self.total}; no mid-round state saved",
                                                interrupt.STOP.signal)
            self.orders = None
        for hook in hooks:
            hook.end(self)
        for i, result in enumerate(self.results):
            if i in self.stopped:
                result.iterations, result.state = self.stopped[i]
            else:
                result.iterations, result.state = self.total, self.nets.state(i)
        return self.results


def run_training(
    nets: Networks,
    masks: Sequence[Mapping[str, Tensor]],
    splits,
    settings: TrainSettings,
    seeds: Sequence[int],
    progress: Optional[ProgressFn] = None,
    hold_pruned: bool = False,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional["Checkpoint"] = None,
    hooks: Sequence[Hook] = (),
    cuda_graphs: bool = True,
) -> list[TrainResult]:
    """Train with the standard hooks: the learning curve, `progress`, `hooks`, then resuming from and saving
    to `checkpoint` (not when processes train together). A resumed round is bit-identical on the CPU to an
    uninterrupted one."""
    loop = TrainingLoop(nets, masks, splits, settings, seeds, hold_pruned, parallel, cuda_graphs)
    chain: list[Hook] = [Evaluation()]
    if progress is not None:
        chain.append(Progress(progress))
    chain += hooks
    if checkpoint is not None and parallel is None:
        chain.append(Checkpointing(checkpoint))
    return loop.run(chain)


def train(
    model: nn.Module,
    mask: Mapping[str, Tensor],
    splits,
    settings: TrainSettings,
    seed: int,
    progress: Optional[ProgressFn] = None,
    hold_pruned: bool = False,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional["Checkpoint"] = None,
    hooks: Sequence[Hook] = (),
) -> TrainResult:
    """Train `model` (already on its device, holding the round's starting weights) under `mask`.

    `splits` is an `lth.datasets.Splits` on the same device. The data order depends on `seed` only.
    Pruned weights are zero, or with `hold_pruned` frozen at their starting values.
    """
    return run_training(SingleNetwork(model), [mask], splits, settings, [seed], progress, hold_pruned, parallel,
                        checkpoint, hooks)[0]
