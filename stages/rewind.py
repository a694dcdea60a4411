"""Stage `rewind@<round>`: each trial's starting weights: the mask-1 action on kept weights (reset to θ0,
rewind to θk, ...) and the mask-0 action on pruned ones (zero, freeze at θ0, ...)."""

from __future__ import annotations

from stages._common import round_argument, run_stage, workspace


def main() -> None:
    from lth.steps import rewind

    rewind.execute(workspace(), round_argument(__doc__))


if __name__ == "__main__":
    run_stage(main)
