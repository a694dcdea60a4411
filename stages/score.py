"""Stage `score@<round>`: score every trial's previous-round weights with the mask criterion."""

from __future__ import annotations

from stages._common import round_argument, run_stage, workspace


def main() -> None:
    from lth.steps import score

    score.execute(workspace(), round_argument(__doc__))


if __name__ == "__main__":
    run_stage(main)
