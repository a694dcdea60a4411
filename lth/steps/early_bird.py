"""Early-bird tickets (You et al. 2020): stop a round's training once the mask it would give has settled.

Every `train.eval_every` steps each trial's ticket is scored and masked exactly as the next round's score
and mask steps would do it from the weights of that moment; the normalised Hamming distance between
this mask and the previous check's (over the weights the round can still prune) is recorded. Once it has
stayed below `prune.early_bird_distance` for EARLY_BIRD_CHECKS consecutive checks, the ticket stops
training there, and so do its control arms: the round's final weights are those of that step, so the next
round's mask is exactly the last one drawn. Trials stop independently (each keeps its own result).
The hook's state lives in the loop's `extras`, so a round resumed from a mid-round checkpoint continues
its checks as if never interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Sequence

from lth.core.masks import mask_distance
from lth.core.durations import Step
from lth.training.hooks import Hook

if TYPE_CHECKING:
    from torch import Tensor

    from lth.training.state import LoopState

EARLY_BIRD_CHECKS = 5  # consecutive checks below the threshold (You et al.'s FIFO of mask distances)
STATE_KEY = "early_bird"


@dataclass
class Watch:
    """One trial's ticket under watch: its index among the round's networks, the indices of every network
    of the trial (its arms, which stop with it), the round's mask and how to draw the next one."""

    trial: int
    ticket: int
    arms: Sequence[int]
    mask: Mapping[str, "Tensor"]
    draw: Callable[[Mapping[str, "Tensor"]], Mapping[str, "Tensor"]]


def settled(distances: Sequence[float], threshold: float, checks: int = EARLY_BIRD_CHECKS) -> bool:
    """The early-bird rule: the last `checks` distances are all below `threshold`."""
    return len(distances) >= checks and all(d < threshold for d in distances[-checks:])


class EarlyBird:
    """The round's early-bird watch over every trial; `hooks_for` gives the hook of one training loop."""

    def __init__(self, watches: Sequence[Watch], threshold: float, checks: int = EARLY_BIRD_CHECKS):
        self.watches, self.threshold, self.checks = list(watches), threshold, checks
        self.state: dict = {"previous": {}, "distances": {}, "stopped": {}}  # per trial, keyed by str(trial)

    def hooks_for(self, indices: Sequence[int]) -> list[Hook]:
        return [_LoopHook(self, list(indices))]

    def record(self, trial: int) -> dict:
        """What the round metrics keep for a trial's ticket: the stop (None: trained to the end) and the curve."""
        key = str(trial)
        return {"stopped_at": self.state["stopped"].get(key), "threshold": self.threshold, "checks": self.checks,
                "distances": [[int(i), round(float(d), 6)] for i, d in self.state["distances"].get(key, [])]}


class _LoopHook(Hook):
    """The watch as seen by one training loop, which trains the networks `indices` (loop-local order)."""

    def __init__(self, watch: EarlyBird, indices: list[int]):
        self.watch, self.indices = watch, indices

    def start(self, loop: "LoopState") -> None:
        self.every = max(1, Step.parse(loop.settings.eval_every).to_iterations(loop.per_epoch))
        saved = loop.extras.get(STATE_KEY)
        if saved is not None:  # a resumed round: the checks made before the interruption
            for part in ("previous", "distances", "stopped"):
                self.watch.state[part].update(saved[part])
        loop.extras[STATE_KEY] = self.watch.state

    def after_step(self, loop: "LoopState") -> None:
        state = self.watch.state
        for w in self.watch.watches:
            key = str(w.trial)
            if key in state["stopped"]:  # an arm trained after its ticket, one network at a time
                if loop.iteration == state["stopped"][key]:
                    self._stop(loop, w)
                continue
            if w.ticket not in self.indices or loop.iteration % self.every:
                continue
            local = self.indices.index(w.ticket)
            if local in loop.stopped:
                continue
            mask = w.draw({k: v.detach().cpu() for k, v in loop.nets.state(local).items()})
            previous = state["previous"].get(key)
            if previous is not None:
                state["distances"].setdefault(key, []).append([loop.iteration, mask_distance(previous, mask, w.mask)])
            state["previous"][key] = mask
            if settled([d for _, d in state["distances"].get(key, [])], self.watch.threshold, self.watch.checks):
                state["stopped"][key] = loop.iteration
                self._stop(loop, w)

    def _stop(self, loop: "LoopState", w: Watch) -> None:
        for i in w.arms:
            if i in self.indices:
                loop.stop_network(self.indices.index(i))


def watch_round(run, key: str, networks: Sequence) -> Optional[EarlyBird]:  # noqa: ANN001 - lth.runs.run.Run
    """The early-bird watch of round `key`'s tickets, or None when the run does not ask for it (or the round
    has no next mask to wait for: the one-shot schedule's pruned round)."""
    from lth.runs.params import round_index
    from lth.runs.records import TICKET
    from lth.steps.mask import next_mask
    from lth.steps.score import score_weights

    prune, r = run.settings.prune, round_index(key)
    if not prune.early_bird or (prune.schedule == "oneshot" and r >= 1):
        return None
    layout, watches = run.layout, []
    for t in run.trials:
        index = next(i for i, n in enumerate(networks) if n.trial == t and n.arm == TICKET)
        settings, mask = run.trial_settings(t), networks[index].mask
        init, start = run.weights(layout.theta0, t), networks[index].start

        def draw(state, settings=settings, init=init, start=start, mask=mask):  # noqa: ANN001
            scores = score_weights(settings, init, state, mask, r, start, run.data())
            return next_mask(settings, scores, mask, run.kinds, r + 1, run.units)

        arms = [i for i, n in enumerate(networks) if n.trial == t]
        watches.append(Watch(t, index, arms, mask, draw))
    return EarlyBird(watches, prune.early_bird_distance)


def what_training_reads(settings) -> dict:  # noqa: ANN001 - lth.runs.settings.RunSettings
    """The settings beyond `train` that a round's training reads: with early-bird on, everything that draws a
    mask (criterion, pruning, prune); with it off, none. The DVC stage `early_bird` writes this to
    data/early_bird.json for the train stages to depend on, so a new criterion reruns the dense round only
    when early-bird checks would draw masks with it."""
    from lth.core.config import plain

    if not settings.prune.early_bird:
        return {"early_bird": False}
    return {"early_bird": True, "criterion": settings.criterion, "pruning": settings.pruning,
            "prune": plain(settings.prune)}
