"""Stage `mask@<round>`: keep the best-scored survivors of each trial's previous mask at the configured rates."""

from __future__ import annotations

from stages._common import round_argument, run_stage, workspace


def main() -> None:
    from lth.steps import mask

    key = round_argument(__doc__)
    print(f"{key}: {mask.execute(workspace(), key):.2f}% of weights kept")


if __name__ == "__main__":
    run_stage(main)
