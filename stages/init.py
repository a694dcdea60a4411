"""Stage `init`: θ0 of every trial (seeded) and the dense masks: round r00's starting point."""

from __future__ import annotations

from stages._common import run, shape_of


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.engine.params import DENSE_ROUND, load_params
    from lth.engine.rounds import initial_state

    settings = load_params().settings
    for t in range(settings.trials):
        state, mask = initial_state(settings.for_trial(t), shape_of(settings))
        for directory in (pipeline.INIT, pipeline.round_dir(DENSE_ROUND, "start")):
            artifacts.save_tensors(pipeline.trial_file(directory, t), "weights", settings.model, state, round=0)
        artifacts.save_tensors(pipeline.trial_file(pipeline.round_dir(DENSE_ROUND, "mask"), t), "mask",
                               settings.model, mask, round=0)


if __name__ == "__main__":
    run(main)
