"""Mid-round checkpoints: everything the training loop needs to continue exactly where it stopped.

A checkpoint holds the networks' tensors, the optimizer and schedule state, the data-order and
augmentation generators (and the current epoch's order), the iteration, the running loss and the
learning curve so far (early stopping is chosen from it). Restoring all of it makes a resumed round
bit-identical on the CPU to an uninterrupted one. The file is written atomically with a SHA-256 of
its bytes in front, so a truncated, bit-flipped or foreign checkpoint is an error naming it, and a
crash while saving leaves the previous checkpoint in place. `identity` says whose state it is
(settings fingerprint, round, the networks' starting weights and masks): a checkpoint of an earlier
round is stale and ignored, one of another run is refused.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from lth.core import files
from lth.core.errors import LthError
from lth.core.durations import Step

if TYPE_CHECKING:
    from lth.training.state import LoopState

FORMAT = b"lth-checkpoint/1\n"
_DIGEST = 64  # hex characters of a SHA-256


@dataclass
class Checkpoint:
    """Where the training loop saves its state, how often (a step string; '0it' = only when interrupted),
    and the identity a saved state must match to be resumed."""

    path: Path
    every: str = "0it"
    identity: dict = field(default_factory=dict)
    at_end: bool = False  # also save the finished state (networks trained one after another resume per network)
    older_settings: tuple[str, ...] = ()  # fingerprints the same settings had under an earlier formula

    def every_iterations(self, per_epoch: int) -> int:
        return Step.parse(self.every).to_iterations(per_epoch)

    def for_networks(self, starts: Sequence[Mapping[str, Any]], masks: Sequence[Mapping[str, Any]],
                     index: Optional[int] = None) -> "Checkpoint":
        """The checkpoint of these networks (all of a batched round, or network `index` of a sequential one):
        its identity also records their starting weights and masks, so it is never applied to other inputs."""
        digest = hashlib.sha256()
        for start, mask in zip(starts, masks):
            digest.update(files.tensor_checksum({**{f"start.{k}": v for k, v in start.items()},
                                                     **{f"mask.{k}": v for k, v in mask.items()}}).encode())
        identity = {**self.identity, "inputs": digest.hexdigest()[:32]}
        if index is None:
            return replace(self, identity=identity)
        path = Path(self.path)
        return replace(self, path=path.with_name(f"{path.stem}-{index}{path.suffix}"),
                       identity={**identity, "network": index}, at_end=True)

    def save(self, state: dict) -> None:
        import torch

        buffer = io.BytesIO()
        torch.save({"identity": self.identity, "state": state}, buffer)
        blob = buffer.getvalue()
        files.atomic_write_bytes(self.path, FORMAT + hashlib.sha256(blob).hexdigest().encode() + b"\n" + blob)

    def load(self) -> Optional[dict]:
        """The saved state if there is one for this identity; None when absent or left by an earlier round."""
        path = Path(self.path)
        if not path.is_file():
            return None
        payload = self.read()
        saved = dict(payload.get("identity", {})) if isinstance(payload, dict) else {}
        if saved.get("settings") in self.older_settings:  # saved by an earlier lth: the same settings
            saved["settings"] = self.identity.get("settings")
        if saved.get("round") != self.identity.get("round"):
            return None  # left by an earlier round that finished before the file was removed
        if saved != self.identity:
            differ = sorted(k for k in set(saved) | set(self.identity) if saved.get(k) != self.identity.get(k))
            raise LthError(f"checkpoint {path} belongs to another run (differs in {', '.join(differ)}); "
                           "delete it or use another output directory")
        return payload["state"]

    def read(self) -> dict:
        """The file's identity and state, verified against its checksum (not yet against our identity)."""
        import torch

        path = Path(self.path)
        data = path.read_bytes()
        head = len(FORMAT)
        if not data.startswith(FORMAT) or len(data) < head + _DIGEST + 1:
            raise LthError(f"{path} is not an lth checkpoint (or is truncated); delete it and rerun")
        digest, blob = data[head : head + _DIGEST].decode(errors="replace"), data[head + _DIGEST + 1 :]
        if hashlib.sha256(blob).hexdigest() != digest:
            raise LthError(f"corrupted or truncated checkpoint {path}: its bytes do not match the checksum saved "
                           "with it; delete it to restart this round from its beginning")
        try:
            payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable archive is the same user-facing problem
            raise LthError(f"unreadable checkpoint {path} ({type(exc).__name__}); delete it and rerun") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("state"), dict):
            raise LthError(f"{path} is not an lth checkpoint; delete it and rerun")
        return payload

    def clear(self) -> None:
        """Remove this checkpoint and the per-network ones derived from it (the round is finished)."""
        path = Path(self.path)
        for file in [path, *path.parent.glob(f"{path.stem}-*{path.suffix}")]:
            file.unlink(missing_ok=True)


# --- the training loop's state ----------------------------------------------------------------------------


def capture(loop: "LoopState") -> dict:
    """The training loop's state as plain tensors and numbers (what `Checkpoint.save` writes)."""
    at_boundary = loop.iteration % loop.per_epoch == 0  # the epoch's order is used up: a resumed loop draws the next
    return {
        "iteration": loop.iteration,
        "tensors": [t.detach().cpu().clone() for t in loop.nets.tensors()],
        "optimizer": loop.optimizer.state_dict(),
        "schedule": loop.schedule.state_dict(),
        "order_gens": [g.get_state() for g in loop.order_gens],
        "augment_gens": [g.get_state() for g in loop.augment_gens] if loop.augment_gens else None,
        "orders": loop.orders.cpu() if loop.orders is not None and not at_boundary else None,
        "running": loop.running.detach().cpu().clone(),
        "steps_since_eval": loop.steps_since_eval,
        "curves": [r.curve for r in loop.results],
        "stopped": [[i, iteration, state] for i, (iteration, state) in sorted(loop.stopped.items())],
        "extras": loop.extras,
    }


def restore(state: dict, loop: "LoopState", path: Path) -> None:
    """Put a captured state back into the loop's live objects.

    On the CUDA-graph path (`loop.graph`) the optimizer's tensors are copied into in place, since the
    captured graph replays their addresses; the eager path loads the optimizer state the ordinary way.
    """
    import torch

    tensors = loop.nets.tensors()
    saved = state["tensors"]
    if len(saved) != len(tensors) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(saved, tensors)):
        raise LthError(f"checkpoint {path} does not match the networks being trained (other shapes); delete it")
    device = tensors[0].device
    optimizer, schedule = loop.optimizer, loop.schedule
    with torch.no_grad():
        for target, value in zip(tensors, saved):
            target.copy_(value)
        if loop.graph:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            for index, values in state["optimizer"]["state"].items():
                for key, value in values.items():
                    current = optimizer.state[params[index]].get(key)
                    if isinstance(current, torch.Tensor):
                        current.copy_(value)
        else:
            optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        for group, lr in zip(optimizer.param_groups, schedule.get_last_lr()):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(float(lr))
            else:
                group["lr"] = float(lr)
        loop.running.copy_(state["running"])
    for g, s in zip(loop.order_gens, state["order_gens"]):
        g.set_state(s)
    for g, s in zip(loop.augment_gens or [], state["augment_gens"] or []):
        g.set_state(s)
    for result, curve in zip(loop.results, state["curves"]):
        result.curve = list(curve)
    loop.stopped = {int(i): (int(iteration), saved_state) for i, iteration, saved_state in state.get("stopped", [])}
    loop.extras = dict(state.get("extras", {}))
    loop.iteration = int(state["iteration"])
    loop.steps_since_eval = int(state["steps_since_eval"])
    loop.orders = state["orders"].to(device) if state["orders"] is not None else None
