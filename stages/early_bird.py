"""Stage `early_bird`: data/early_bird.json, what a round's training reads beyond `train` (lth.steps.early_bird):
the train stages depend on it, so they rerun when early-bird's settings change, and a new criterion or
pruning rate leaves the dense round cached while early-bird is off."""

from __future__ import annotations

from stages._common import run_stage


def main() -> None:
    from pathlib import Path

    from lth.core import files
    from lth.runs.params import load_params
    from lth.steps.early_bird import what_training_reads

    files.write_json(Path("data") / "early_bird.json", what_training_reads(load_params("params.yaml").settings))


if __name__ == "__main__":
    run_stage(main)
