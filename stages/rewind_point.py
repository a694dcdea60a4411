"""Stage `rewind_point`: θk of every trial, the dense network after k = `rewind` steps (θ0 when k = 0)."""

from __future__ import annotations

from stages._common import run_stage
from stages._training import training_workspace


def main() -> None:
    from lth.steps import rewind_point

    ws = training_workspace("stages.rewind_point", [], rewind_point.needs_training)
    if ws is not None:  # None: ran under torchrun, or this rank trained what rank 0 sent
        print(f"rewind point: iteration {rewind_point.execute(ws)}")


if __name__ == "__main__":
    run_stage(main)
