"""What plugs into the training loop: a hook is told when training starts, when an epoch starts, after
every step and when training ends, and may read (or, for a resumed checkpoint, restore) the loop's state.

The loop (lth.training.loop) only steps; evaluation (lth.training.evaluation), progress reports,
mid-round checkpoints and per-epoch work (the perturbation experiment's mask) are hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from lth.core import interrupt

if TYPE_CHECKING:
    from lth.training.checkpoint import Checkpoint
    from lth.training.state import LoopState

ProgressFn = Callable[[int, int, Optional[dict]], None]  # (iteration, total, evaluation point or None)


class Hook:
    """Does nothing; subclasses override what they need."""

    def resume(self, loop: "LoopState") -> None:
        """Before anything else: restore a saved state into the loop, if there is one to restore."""

    def start(self, loop: "LoopState") -> None:
        """Before the first step (after a checkpoint, if any, was restored)."""

    def epoch_start(self, loop: "LoopState", epoch: int) -> None:
        """Before the first step of each epoch (not of an epoch resumed in its middle)."""

    def after_step(self, loop: "LoopState") -> None:
        """After every optimizer step; `loop.iteration` counts the steps taken."""

    def end(self, loop: "LoopState") -> None:
        """After the last step."""


def last_point(loop: "LoopState") -> Optional[dict]:
    """The evaluation made at the loop's current iteration, if there was one (lth.training.evaluation)."""
    curve = loop.results[0].curve
    return curve[-1] if curve and curve[-1]["iteration"] == loop.iteration else None


class Progress(Hook):
    """Reports each evaluation point, and about 200 ticks per round in between, to `report`."""

    def __init__(self, report: ProgressFn):
        self.report = report

    def start(self, loop: "LoopState") -> None:
        self.every = max(1, loop.total // 200)
        self._tell(loop)

    def after_step(self, loop: "LoopState") -> None:
        self._tell(loop)

    def _tell(self, loop: "LoopState") -> None:
        point = last_point(loop)
        if point is not None:
            self.report(loop.iteration, loop.total, point)
        elif loop.iteration % self.every == 0 and loop.iteration:
            self.report(loop.iteration, loop.total, None)


class Checkpointing(Hook):
    """Resumes from a saved state, saves the state every `checkpoint.every` steps, and on a stop request
    (lth.core.interrupt: Ctrl-C, SIGTERM) saves it at the step boundary before the loop stops. Put it
    after the hooks whose step it should see (a stop requested while they ran is honoured this step)."""

    def __init__(self, checkpoint: "Checkpoint"):
        self.checkpoint = checkpoint
        self.finished_before = False

    def resume(self, loop: "LoopState") -> None:
        from lth.training import checkpoint as saved_state

        state = self.checkpoint.load()
        self.every = self.checkpoint.every_iterations(loop.per_epoch)
        if state is not None:
            saved_state.restore(state, loop, self.checkpoint.path)
            loop.resumed = True
            self.finished_before = loop.finished

    def after_step(self, loop: "LoopState") -> None:
        if loop.finished:
            return
        stop = interrupt.STOP.signal
        if stop is not None or (self.every and loop.iteration % self.every == 0):
            self.save(loop)
        if stop is not None:
            raise interrupt.Interrupted(f"interrupted by {interrupt.STOP.name()} at iteration {loop.iteration} of "
                                        f"{loop.total}; training state saved to {self.checkpoint.path}", stop)

    def end(self, loop: "LoopState") -> None:
        if self.checkpoint.at_end and not self.finished_before:
            self.save(loop)

    def save(self, loop: "LoopState") -> None:
        from lth.training import checkpoint as saved_state

        self.checkpoint.save(saved_state.capture(loop))


class EveryEpoch(Hook):
    """Calls `fn(epoch)` at the start of every epoch after the first (e.g. to re-draw a mask from the weights)."""

    def __init__(self, fn: Callable[[int], None]):
        self.fn = fn

    def epoch_start(self, loop: "LoopState", epoch: int) -> None:
        if epoch > 0:
            self.fn(epoch)
