"""The trainer: masked networks, data already on the device as tensors, seeded data order.

One loop trains one network (a plain module call, the fastest path for a single network) or many
stacked networks (`lth.training.batched`, one vmapped step for all trials and control arms of a round).

Why it is fast: no DataLoader and no per-sample transforms (a batch is one index into a resident
tensor), masks applied with fused foreach multiplies, no host sync per step (running losses stay on
the device until an evaluation), and on CUDA the whole step (gather, forward, backward, optimizer,
masks) is captured once as a CUDA graph and replayed; one conv net trains in channels-last layout there, and
`train.precision: bf16` runs forward and backward under bfloat16 autocast (weights and optimizer stay fp32).
Why it is correct: gradients of pruned weights are zeroed before the optimizer step (so Adam's
moments never see them) and the weights are reset by the mask after it, so pruned weights stay
exactly at their frozen value (zero, or θ0 for the freezing mask-0 actions) after every step.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Protocol, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lth.core import interrupt
from lth.core.errors import LthError, unknown_choice
from lth.models import has_convolutions
from lth.core.seeds import derive_seed
from lth.engine.settings import TrainSettings
from lth.core.steps import Step

if TYPE_CHECKING:
    from lth.training.checkpoint import Checkpoint

Lr = Union[float, Tensor]

OPTIMIZERS: dict[str, Callable[[list[Tensor], TrainSettings, Lr, bool], torch.optim.Optimizer]] = {
    # fused kernels: one pass over all parameters per step (~20% faster than foreach for LeNet on 2 CPU cores);
    # `graph` asks for a CUDA-graph-safe optimizer: state and learning rate live on the device
    "adam": lambda p, s, lr, graph: torch.optim.Adam(p, lr=lr, weight_decay=s.weight_decay, fused=True,
                                                     capturable=graph),
    "sgd": lambda p, s, lr, graph: torch.optim.SGD(p, lr=lr, momentum=s.momentum, nesterov=s.nesterov,
                                                   weight_decay=s.weight_decay, fused=True),
    "radam": lambda p, s, lr, graph: torch.optim.RAdam(p, lr=lr, weight_decay=s.weight_decay, foreach=True,
                                                       capturable=graph),
}

# settings.train.precision -> the autocast dtype of forward and backward (None: plain fp32). Weights, gradients
# and optimizer state stay fp32 either way, so masks and the optimizer's arithmetic are unchanged.
AUTOCAST_DTYPES: dict[str, Optional[torch.dtype]] = {"fp32": None, "bf16": torch.bfloat16}

ProgressFn = Callable[[int, int, Optional[dict]], None]


@dataclass
class TrainResult:
    """What one network's round of training produced."""

    state: dict[str, Tensor]
    curve: list[dict] = field(default_factory=list)
    rewind_state: Optional[dict[str, Tensor]] = None
    iterations: int = 0

    @property
    def final(self) -> dict:
        return self.curve[-1]

    @property
    def early_stop(self) -> dict:
        """The evaluation with the lowest validation loss (the paper's early-stopping criterion)."""
        return min(self.curve, key=lambda p: (p["val_loss"], p["iteration"]))


class Networks(Protocol):
    """N networks of one architecture, as the training loop sees them."""

    count: int
    params: dict[str, Tensor]  # name -> the trainable tensor (stacked over networks when count > 1)

    def __call__(self, x: Tensor) -> Tensor: ...  # (N, B, ...) -> (N, B, classes), each its own batch

    def shared(self, x: Tensor) -> Tensor: ...  # (B, ...) -> (N, B, classes), every network the same batch

    def set_training(self, on: bool) -> None: ...

    def stack(self, tensors: Sequence[Tensor]) -> Tensor: ...  # one tensor per network -> the params' layout

    def tensors(self) -> list[Tensor]: ...  # every parameter and buffer

    def state(self, i: int) -> dict[str, Tensor]: ...  # network i's state_dict on the CPU


class SingleNetwork:
    """One network: a plain module call, no vmap overhead."""

    count = 1

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = dict(model.named_parameters())

    def __call__(self, x: Tensor) -> Tensor:
        return self.model(x[0]).unsqueeze(0)

    def shared(self, x: Tensor) -> Tensor:
        return self.model(x).unsqueeze(0)

    def set_training(self, on: bool) -> None:
        self.model.train(on)

    def stack(self, tensors: Sequence[Tensor]) -> Tensor:
        return tensors[0]

    def tensors(self) -> list[Tensor]:
        return [*self.model.parameters(), *self.model.buffers()]

    def state(self, i: int) -> dict[str, Tensor]:
        # saved in the standard layout whatever layout training used (channels_last on CUDA)
        return {k: v.detach().clone(memory_format=torch.contiguous_format).cpu()
                for k, v in self.model.state_dict().items()}


class DataParallel(Protocol):
    """The processes that train the same networks together (`lth.training.distributed`, under torchrun).

    Each process takes its share of every batch; `wrap` returns networks whose backward averages the
    gradients over the processes (DistributedDataParallel), so every replica takes the same step.
    """

    rank: int
    world: int

    def wrap(self, nets: Networks) -> Networks: ...

    def sum_(self, tensor: Tensor) -> None: ...  # in place: the sum over all processes


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; 'cuda' without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise unknown_choice("device", name, ("auto", "cpu", "cuda"))
    if name == "cuda" and not torch.cuda.is_available():
        raise LthError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def cuda_graphs_enabled(device: torch.device) -> bool:
    """Whole-step CUDA graphs on CUDA devices, unless LTH_CUDA_GRAPHS=0 (e.g. to debug a model eagerly)."""
    return device.type == "cuda" and os.environ.get("LTH_CUDA_GRAPHS", "1") != "0"


def channels_last_wanted(nets: "Networks", device: torch.device) -> bool:
    """NHWC layout for a convolutional network on CUDA, where cuDNN's fastest (tensor-core) kernels want it.

    Only on the single-network path: vmap's convolution rule folds the stacked networks into channel
    groups, which has no channels-last form. On the CPU the standard layout stays, so CPU results stay
    bit-identical to those of earlier versions.
    """
    return device.type == "cuda" and isinstance(nets, SingleNetwork) and has_convolutions(nets.model)


def autocast(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A context factory for the forward pass at `precision` ('fp32': no autocast at all).

    The weight-cast cache is off: inside a CUDA graph a cached cast would be recorded once and go stale.
    """
    if precision not in AUTOCAST_DTYPES:
        raise unknown_choice("precision", precision, AUTOCAST_DTYPES)
    dtype = AUTOCAST_DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype, cache_enabled=False)


def iterations_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped, so every step has the same shape)."""
    if batch_size > num_train:
        raise LthError(f"bad batch_size {batch_size}: larger than the {num_train} training examples")
    return num_train // batch_size


def make_optimizer(params: list[Tensor], settings: TrainSettings, graph: bool = False) -> torch.optim.Optimizer:
    if settings.optimizer not in OPTIMIZERS:
        raise unknown_choice("optimizer", settings.optimizer, OPTIMIZERS)
    lr: Lr = torch.tensor(settings.lr, device=params[0].device) if graph else settings.lr
    return OPTIMIZERS[settings.optimizer](params, settings, lr, graph)


def lr_factor(iteration: int, warmup: int, milestones: list[int], gamma: float) -> float:
    """Linear warmup over `warmup` steps, then x gamma at each milestone passed."""
    factor = min(1.0, (iteration + 1) / warmup) if warmup > 0 else 1.0
    return factor * gamma ** sum(iteration >= m for m in milestones)


@torch.no_grad()
def evaluate(nets: Networks, x: Tensor, y: Tensor, batch_size: int = 2000,
             precision: str = "fp32") -> tuple[Tensor, Tensor]:
    """Per-network (mean cross-entropy, accuracy) over a resident dataset, in large batches: (N,) tensors.

    At the precision the networks train at, so the curve measures the network as trained.
    """
    nets.set_training(False)
    cast = autocast(x.device, precision)
    loss = torch.zeros(nets.count, device=x.device, dtype=torch.float64)
    correct = torch.zeros(nets.count, device=x.device, dtype=torch.long)
    for start in range(0, len(x), batch_size):
        with cast():
            out = nets.shared(x[start : start + batch_size]).float()
        target = y[start : start + batch_size].expand(nets.count, -1)
        loss += F.cross_entropy(out.flatten(0, 1), target.flatten(), reduction="none").view(nets.count, -1).sum(1)
        correct += (out.argmax(dim=2) == target).sum(1)
    nets.set_training(True)
    n = max(len(x), 1)
    return loss / n, correct.double() / n  # float64: accuracies like 0.96 print as 0.96


def train(
    model: nn.Module,
    mask: Mapping[str, Tensor],
    splits,
    settings: TrainSettings,
    seed: int,
    rewind_at: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    hold_pruned: bool = False,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional["Checkpoint"] = None,
) -> TrainResult:
    """Train `model` (already on its device, holding the round's starting weights) under `mask`.

    `splits` is an `lth.datasets.Splits` on the same device. The data order depends on `seed` only.
    If `rewind_at` is given, the state after that many steps is returned as `rewind_state` (θk).
    Pruned weights are zero, or with `hold_pruned` frozen at their starting values.
    """
    return run_training(SingleNetwork(model), [mask], splits, settings, [seed], rewind_at, progress, hold_pruned,
                        parallel, checkpoint)[0]


def run_training(
    nets: Networks,
    masks: Sequence[Mapping[str, Tensor]],
    splits,
    settings: TrainSettings,
    seeds: Sequence[int],
    rewind_at: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    hold_pruned: bool = False,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional["Checkpoint"] = None,
) -> list[TrainResult]:
    """The training loop shared by one network and many: network i under masks[i], data order seeds[i].

    With `checkpoint` (lth.training.checkpoint) the loop resumes from a saved state, saves its state every
    `checkpoint.every` steps, and on a stop request (lth.core.interrupt: Ctrl-C, SIGTERM) saves it at the
    next step boundary and raises Interrupted; a resumed round is bit-identical on the CPU. The only
    per-step cost is a counter check. Processes training together (`parallel`) stop without saving.

    Masked-out weights are set to zero, or, with `hold_pruned`, frozen at the values they start with.
    With `parallel`, this process trains on its 1/world share of every batch (the same global batches
    as one process would draw) and gradients are averaged over the processes before the masks zero the
    pruned ones; evaluation is split over the processes too.
    """
    from lth.datasets import augment_batch

    count = nets.count
    if not (len(masks) == len(seeds) == count):
        raise LthError("training needs one mask and one seed per network")
    device = splits.train_x.device
    n, batch = len(splits.train_x), settings.batch_size
    per_epoch = iterations_per_epoch(n, batch)
    rank, world = (parallel.rank, parallel.world) if parallel else (0, 1)
    if batch % world:
        raise LthError(f"bad batch_size {batch}: it must split evenly over the {world} processes")
    local = batch // world  # this process's share of every batch
    channels_last = channels_last_wanted(nets, device)
    if channels_last:
        nets.model.to(memory_format=torch.channels_last)
    cast = autocast(device, settings.precision)
    if parallel:
        nets = parallel.wrap(nets)
    total = Step.parse(settings.duration).to_iterations(per_epoch)
    eval_every = max(1, Step.parse(settings.eval_every).to_iterations(per_epoch))
    warmup = Step.parse(settings.warmup).to_iterations(per_epoch)
    milestones = [Step.parse(m).to_iterations(per_epoch) for m in settings.milestones]
    if rewind_at is not None and rewind_at > total:
        raise LthError(f"rewind step {rewind_at} iterations is beyond the training length of {total} iterations")

    names = list(masks[0])
    weights = [nets.params[name] for name in names]
    # in the weights' own layout (channels_last or not), so the fused multiplies run at full speed
    multipliers = [torch.empty_like(w, requires_grad=False).copy_(nets.stack([m[name] for m in masks]))
                   for name, w in zip(names, weights)]
    # Masked-out weights are zero, or with hold_pruned held at their starting values (θ0 for the
    # mask-0 action "freeze_init", ...): after each step w <- w * mask (+ held).
    held = [w.detach() * (1 - m) for w, m in zip(weights, multipliers)] if hold_pruned else []
    hold = any(bool(h.any()) for h in held)

    def apply_masks() -> None:
        torch._foreach_mul_(weights, multipliers)
        if hold:
            torch._foreach_add_(weights, held)

    with torch.no_grad():
        apply_masks()

    graph = cuda_graphs_enabled(device) and parallel is None
    optimizer = make_optimizer(list(nets.params.values()), settings, graph)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, warmup, milestones, settings.gamma))
    order_gens = [torch.Generator().manual_seed(s) for s in seeds]
    augment_seeds = [s + 1 if rank == 0 else derive_seed(s + 1, "rank", rank) for s in seeds]
    augment_gens = [torch.Generator(device=device).manual_seed(s) for s in augment_seeds] if splits.augment else None

    # The step reads its batch from static buffers, so the same code runs eagerly or as a replayed CUDA graph.
    batch_index = torch.zeros((count, local), dtype=torch.long, device=device)
    augmented = (torch.empty((count, local, *splits.input_shape), dtype=splits.train_x.dtype, device=device)
                 if augment_gens else None)
    running = torch.zeros(count, device=device)

    def step() -> None:
        x = augmented if augmented is not None else splits.train_x[batch_index]
        if channels_last:  # (1, B, C, H, W): the one network sees x[0], made a channels-last batch
            x = x[0].contiguous(memory_format=torch.channels_last).unsqueeze(0)
        with cast():
            logits = nets(x)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 -> fp32; fp64 stays
        losses = F.cross_entropy(logits.flatten(0, 1), splits.train_y[batch_index].flatten(),
                                 reduction="none").view(count, local).mean(1)
        optimizer.zero_grad(set_to_none=not graph)  # a replayed graph needs its gradient tensors kept
        losses.sum().backward()
        with torch.no_grad():
            torch._foreach_mul_([w.grad for w in weights], multipliers)
            optimizer.step()
            apply_masks()
            running.add_(losses.detach())

    nets.set_training(True)
    run_step = capture_cuda_graph(step, nets, optimizer, running) if graph else step

    results = [TrainResult(state={}) for _ in range(count)]
    steps_since_eval = 0

    def record(iteration: int) -> None:
        nonlocal steps_since_eval
        val_loss, val_acc = measure(splits.val_x, splits.val_y)
        test_loss, test_acc = measure(splits.test_x, splits.test_y)
        if parallel:  # every process's running loss is over its share of the batches
            parallel.sum_(running)
            running.div_(world)
        train_loss = (running / steps_since_eval).tolist() if steps_since_eval else [float("nan")] * count
        columns = zip(train_loss, val_loss.tolist(), val_acc.tolist(), test_loss.tolist(), test_acc.tolist())
        for result, (tl, vl, va, sl, sa) in zip(results, columns):
            result.curve.append(dict(iteration=iteration, train_loss=tl, val_loss=vl, val_acc=va, test_loss=sl,
                                     test_acc=sa))
        running.zero_()
        steps_since_eval = 0
        if progress:
            progress(iteration, total, results[0].curve[-1])

    def measure(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if parallel is None:
            return evaluate(nets, x, y, precision=settings.precision)
        share = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
        loss, acc = evaluate(nets, x[share], y[share], precision=settings.precision)
        size = len(x[share])
        totals = torch.stack([loss * size, (acc * size).round()])  # summed loss, correct predictions
        parallel.sum_(totals)
        return totals[0] / max(len(x), 1), totals[1] / max(len(x), 1)

    from lth.training import checkpoint as saved_state

    loop = dict(nets=nets, optimizer=optimizer, schedule=schedule, order_gens=order_gens, augment_gens=augment_gens,
                orders=None, iteration=0, running=running, steps_since_eval=0, results=results)
    if parallel is not None:
        checkpoint = None
    state = checkpoint.load() if checkpoint is not None else None
    if state is None:
        record(0)
    else:
        saved_state.restore(state, loop, checkpoint.path, in_place=graph)
        steps_since_eval = loop["steps_since_eval"]
    iteration, orders = loop["iteration"], loop["orders"]
    save_every = checkpoint.every_iterations(per_epoch) if checkpoint is not None else 0
    stop = interrupt.STOP
    report_every = max(1, total // 200)
    while iteration < total:
        if orders is None:  # a new epoch (a resumed one continues the order it saved)
            orders = torch.stack([torch.randperm(n, generator=g) for g in order_gens]).to(device)
        for b in range(iteration % per_epoch, per_epoch):
            if iteration == rewind_at:
                for i, result in enumerate(results):
                    result.rewind_state = nets.state(i)
            batch_index.copy_(orders[:, b * batch + rank * local : b * batch + (rank + 1) * local])
            if augment_gens is not None:
                augmented.copy_(torch.stack([augment_batch(splits.train_x[batch_index[i]], g)
                                             for i, g in enumerate(augment_gens)]))
            run_step()
            schedule.step()
            steps_since_eval += 1
            iteration += 1
            if iteration % eval_every == 0 or iteration == total:
                record(iteration)
            elif progress and iteration % report_every == 0:
                progress(iteration, total, None)
            if iteration == total:
                break
            if stop.signal is not None or (save_every and iteration % save_every == 0):
                if checkpoint is not None:
                    loop.update(iteration=iteration, steps_since_eval=steps_since_eval,
                                orders=orders if iteration % per_epoch else None)
                    checkpoint.save(saved_state.capture(loop))
                if stop.signal is not None:
                    saved = f"training state saved to {checkpoint.path}" if checkpoint else "no mid-round state saved"
                    raise interrupt.Interrupted(f"interrupted by {stop.name()} at iteration {iteration} of {total}; "
                                                f"{saved}", stop.signal)
        orders = None
    if checkpoint is not None and checkpoint.at_end and (state is None or loop["iteration"] < total):
        loop.update(iteration=iteration, steps_since_eval=steps_since_eval, orders=None)
        checkpoint.save(saved_state.capture(loop))
    for i, result in enumerate(results):
        if rewind_at is not None and rewind_at == total:
            result.rewind_state = nets.state(i)
        result.state = nets.state(i)
        result.iterations = total
    return results


def capture_cuda_graph(step: Callable[[], None], nets: Networks, optimizer: torch.optim.Optimizer,
                       running: Tensor) -> Callable[[], None]:
    """Capture one whole training step as a CUDA graph; returns its replay.

    Capturing needs a few real warm-up steps first (they allocate gradients and optimizer state).
    Those steps change the weights, so everything they touch is put back afterwards: the first
    replay starts from exactly the state the eager loop would start from.
    """
    saved = [t.detach().clone() for t in nets.tensors()]
    replay = record_cuda_graph(step)
    with torch.no_grad():
        for tensor, value in zip(nets.tensors(), saved):
            tensor.copy_(value)
        for state in optimizer.state.values():  # step counts and moments back to their initial zeros
            for value in state.values():
                if isinstance(value, Tensor):
                    value.zero_()
        running.zero_()
    return replay


def record_cuda_graph(step: Callable[[], None], warm_up: int = 3) -> Callable[[], None]:
    """Run `warm_up` eager steps on a side stream, then record one step into a CUDA graph (CUDA only).

    Kept apart from `capture_cuda_graph` so the rest of the graph path (capturable optimizer, learning
    rate as a device tensor updated in place, the reset after warm-up, in-place checkpoint restore) can
    be checked on any device with a stand-in that runs the warm-up steps and returns `step` itself.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warm_up):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay
