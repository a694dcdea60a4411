"""A round on several processes: torchrun + torch.distributed (nccl on GPUs, gloo on CPUs).

The same command runs under `torchrun --nproc_per_node N`; the env vars torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK) switch this module on. Rank 0 *leads*: it runs the ordinary resumable
runner (reading and writing every file, pruning, rewinding, metrics), and for each round it sends
the other ranks the round's settings and every network's starting weights and mask (broadcast from
rank 0, so all ranks train exactly the leader's networks). The other ranks *follow*: they only train.

Two ways to share a round's training (`mode`):
- data: every network is trained data-parallel (DistributedDataParallel). Each rank takes its 1/N
  share of every global batch (the batches one process would draw), DDP averages the gradients,
  the masks zero the pruned gradients and are re-applied after every step on every rank, so the
  replicas stay identical; evaluation is split over the ranks and summed. Batched trials compose:
  the stacked networks of a round are one DDP module.
- trials: the round's networks (trials x arms) are dealt out to the ranks, each trains its own
  alone, exactly as one process would, and the leader gathers the results.

Nothing here runs in a single-process run: `session()` then hands back a local session that calls
`lth.training.trainer.train_networks` directly, and no process group is created.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar

import torch
from torch import Tensor, nn

from lth.core.errors import LthError, unknown_choice
from lth.training.settings import DISTRIBUTED_MODES as MODES

T = TypeVar("T")

BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


@dataclass(frozen=True)
class World:
    """This process's place among the processes torchrun started."""

    rank: int
    size: int
    local_rank: int


def world_from_env(environ: Mapping[str, str] = os.environ) -> Optional[World]:
    """The torchrun world from RANK / WORLD_SIZE / LOCAL_RANK, or None for a plain single-process run."""
    raw = {key: environ.get(key) for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if raw["WORLD_SIZE"] is None:
        return None
    try:
        size = int(raw["WORLD_SIZE"])
        rank = int(raw["RANK"] or 0)
        local = int(raw["LOCAL_RANK"] or rank)
    except ValueError:
        raise LthError(f"bad torchrun environment {raw}: RANK, WORLD_SIZE, LOCAL_RANK must be integers") from None
    if size <= 1:
        return None
    if not 0 <= rank < size:
        raise LthError(f"bad torchrun environment: RANK {rank} outside 0..{size - 1}")
    return World(rank, size, local)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise unknown_choice("distributed mode", mode, MODES)
    return mode


# --- data parallel: DistributedDataParallel over any lth.training.networks.Networks --------------------------------


class _Replica(nn.Module):
    """A Module view of lth.training.networks.Networks (one model, or stacked networks called through vmap), so
    DistributedDataParallel can hook its parameters and broadcast its buffers."""

    def __init__(self, nets: Any):
        super().__init__()
        self.nets = [nets]  # a list: not registered as a submodule (the Protocol is no Module)
        for i, (name, tensor) in enumerate(list(nets.params.items())):
            if not isinstance(tensor, nn.Parameter):  # stacked networks hold plain leaf tensors
                tensor = nn.Parameter(tensor.detach())
                nets.params[name] = tensor
            self.register_parameter(f"param{i}", tensor)
        params = {id(p) for p in nets.params.values()}
        for i, tensor in enumerate(t for t in nets.tensors() if id(t) not in params):
            self.register_buffer(f"buffer{i}", tensor)

    def forward(self, x: Tensor) -> Tensor:
        return self.nets[0](x)


class DistributedNetworks:
    """lth.training.networks.Networks whose training forward goes through DDP: backward averages the gradients."""

    def __init__(self, nets: Any, device: torch.device):
        from torch.nn.parallel import DistributedDataParallel

        self.inner = nets
        ids = [device.index] if device.type == "cuda" else None
        self.ddp = DistributedDataParallel(_Replica(nets), device_ids=ids)  # broadcasts rank 0's state
        self.count = nets.count
        self.params = nets.params

    def __call__(self, x: Tensor) -> Tensor:
        return self.ddp(x)

    def shared(self, x: Tensor) -> Tensor:  # evaluation: no gradients, no synchronisation
        return self.inner.shared(x)

    def set_training(self, on: bool) -> None:
        self.inner.set_training(on)

    def stack(self, name: str, tensors: Sequence[Tensor]) -> Tensor:
        return self.inner.stack(name, tensors)

    def tensors(self) -> list[Tensor]:
        return self.inner.tensors()

    def state(self, i: int) -> dict[str, Tensor]:
        return self.inner.state(i)


class Replicas:
    """lth.training.state.DataParallel for this process group."""

    def __init__(self, world: World, device: torch.device):
        self.rank, self.world, self.device = world.rank, world.size, device

    def wrap(self, nets: Any) -> DistributedNetworks:
        return DistributedNetworks(nets, self.device)

    def sum_(self, tensor: Tensor) -> None:
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)


# --- the session: who leads, who follows ---------------------------------------------------------------


class Session:
    """This process's part in a run. A local session (world None) just trains; in a distributed one
    rank 0 leads and calls `train_networks` for each round, the other ranks call `follow`."""

    def __init__(self, world: Optional[World], device: torch.device, mode: str = "data"):
        self.world, self.device, self.mode = world, device, check_mode(mode)
        self.ready = False  # every rank has its data: the followers are (or will be) listening

    @property
    def leader(self) -> bool:
        return self.world is None or self.world.rank == 0

    @property
    def size(self) -> int:
        return 1 if self.world is None else self.world.size

    def prepare(self, load: Callable[[], T]) -> T:
        """Load something every rank needs (the dataset): the leader first (it may download), then the
        others; one rank's LthError stops every rank with the same message. Checks the ranks agree."""
        if self.world is None:
            return load()
        first = self._agree(load if self.leader else None)  # the leader first: it may download
        later = self._agree(None if self.leader else load)
        result = first if self.leader else later
        shape = self._gather(_describe(result))
        if any(s != shape[0] for s in shape):
            raise LthError(f"the processes loaded different data: {shape[0]} on rank 0, "
                           f"{next(s for s in shape if s != shape[0])} elsewhere")
        self.ready = True
        return result

    def check(self, train: Any) -> None:
        """Refuse training settings these processes cannot train, before anything is written (same on every rank)."""
        if self.world is not None and self.mode == "data" and train.batch_size % self.size:
            raise LthError(f"bad batch_size {train.batch_size}: it must split evenly over the "
                           f"{self.size} processes (or use --distributed-mode trials)")

    def train_networks(self, job: Any, splits: Any, networks: list, progress: Optional[Callable] = None,
                       checkpoint: Any = None, hooks_for: Optional[Callable] = None) -> list:
        """lth.training.trainer.train_networks, shared with the followers (leader only). Mid-round checkpoints
        (lth.training.checkpoint) are kept by a single process only. Hooks that change the training run under
        torchrun only when they say they can (`distributable`: a picklable factory every process builds its own
        hooks from, with a `fingerprint()` of what they did, which must agree across the processes: the mask
        updates of sparse training), and then in data mode; early-bird stops run in a single process only."""
        from lth.training.trainer import train_networks

        if self.world is None:
            return train_networks(job, splits, networks, progress, checkpoint=checkpoint, hooks_for=hooks_for)
        if hooks_for is not None and not getattr(hooks_for, "distributable", False):
            raise LthError("early-bird stops are not supported under torchrun yet: run without torchrun")
        if hooks_for is not None and self.mode != "data":
            raise LthError("sparse training under torchrun shares each network's batches (--distributed-mode data), "
                           "not the networks (trials)")
        self.check(job.train)
        header = {"op": "train", "job": job, "hooks_for": hooks_for,
                  "networks": [(n.trial, n.arm, n.seed, _spec(n.start), _spec(n.mask)) for n in networks]}
        self._broadcast_object(header)
        for net in networks:
            _broadcast_tensors(net.start, self.device)
            _broadcast_tensors(net.mask, self.device)
        return self._train(job, splits, networks, progress, hooks_for)

    def follow(self, splits: Any) -> None:
        """Train whatever the leader sends until it says stop (followers only)."""
        from lth.training.trainer import Network

        while True:
            header = self._broadcast_object(None)
            if header["op"] == "stop":
                return
            networks = []
            for trial, arm, seed, start_spec, mask_spec in header["networks"]:
                start = _broadcast_tensors(_empty(start_spec), self.device)
                mask = _broadcast_tensors(_empty(mask_spec), self.device)
                networks.append(Network(trial, arm, seed, start, mask))
            self._train(header["job"], splits, networks, None, header.get("hooks_for"))

    def stop(self) -> None:
        if self.world is not None and self.leader and self.ready:
            self._broadcast_object({"op": "stop"})
            self.ready = False

    def _train(self, job: Any, splits: Any, networks: list, progress: Optional[Callable],
               hooks_for: Optional[Callable] = None) -> list:
        from lth.training.trainer import train_networks

        assert self.world is not None
        if self.mode == "data":
            results = train_networks(job, splits, networks, progress, parallel=Replicas(self.world, self.device),
                                     hooks_for=hooks_for)
            if hooks_for is not None:  # every process moved its masks itself: they must have moved alike
                prints = self._gather(hooks_for.fingerprint())
                if any(p != prints[0] for p in prints):
                    raise LthError(f"the processes' hooks disagree ({', '.join(prints)}): their mask updates "
                                   "differ; run without torchrun and report this")
            return results
        mine = list(range(self.world.rank, len(networks), self.size))
        results = train_networks(job, splits, [networks[i] for i in mine], progress) if mine else []
        gathered = self._gather(list(zip(mine, results)))
        if not self.leader:
            return []
        ordered = dict(pair for part in gathered for pair in part)
        return [ordered[i] for i in range(len(networks))]

    def _broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def _gather(self, obj: Any) -> list:
        out: list = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def _agree(self, load: Optional[Callable[[], T]]) -> Optional[T]:
        """Run `load` where given; if it failed on any rank, raise its message on every rank."""
        result, error = None, None
        if load is not None:
            try:
                result = load()
            except LthError as exc:
                error = str(exc)
        errors = [e for e in self._gather(error) if e]
        if errors:
            raise LthError(errors[0])
        return result


@contextmanager
def session(device: str = "auto", mode: str = "data") -> Iterator[Session]:
    """Join the torchrun process group if this process is one of torchrun's (nccl on CUDA, gloo on CPU),
    else a local session. On the way out the leader tells the followers to stop, even after an error."""
    from lth.training.device import resolve_device

    check_mode(mode)
    world = world_from_env()
    torch_device = resolve_device(device)
    if world is None:
        yield Session(None, torch_device, mode)
        return
    dist = torch.distributed
    if torch_device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise LthError(f"LOCAL_RANK {world.local_rank} but only {torch.cuda.device_count()} CUDA devices here: "
                           "use --nproc_per_node <= the GPU count, or --device cpu")
        torch.cuda.set_device(world.local_rank)
        torch_device = torch.device("cuda", world.local_rank)
    dist.init_process_group(backend=BACKENDS[torch_device.type])
    current = Session(world, torch_device, mode)
    try:
        yield current
    finally:
        try:
            current.stop()
        finally:
            dist.destroy_process_group()


# --- tensors over the wire --------------------------------------------------------------------------------

Spec = list[tuple[str, tuple[int, ...], str]]


def _spec(tensors: Mapping[str, Tensor]) -> Spec:
    return [(name, tuple(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in tensors.items()]


def _empty(spec: Spec) -> dict[str, Tensor]:
    return {name: torch.empty(shape, dtype=getattr(torch, dtype)) for name, shape, dtype in spec}


def _broadcast_tensors(tensors: Mapping[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    """Rank 0's tensors on every rank (in place of the given ones, which fix names, shapes and dtypes)."""
    out = {}
    for name, tensor in tensors.items():
        wire = tensor.to(device=device, dtype=torch.uint8 if tensor.dtype == torch.bool else tensor.dtype)
        torch.distributed.broadcast(wire, src=0)
        out[name] = wire.to(device="cpu", dtype=tensor.dtype)
    return out


def _describe(splits: Any) -> Any:
    """What must agree across ranks about the loaded data (sizes, shapes, a label checksum)."""
    if not hasattr(splits, "train_x"):
        return None
    return (splits.name, tuple(splits.train_x.shape), tuple(splits.val_x.shape), tuple(splits.test_x.shape),
            float(splits.train_y.double().sum()), float(splits.train_x[:64].double().sum()))
