"""Stage `init`: θ0 (seeded) and the dense mask: round r00's starting point."""

from __future__ import annotations

from stages._common import run, shape_of


def main() -> None:
    from lth import artifacts, pipeline
    from lth.params import DENSE_ROUND, load_params
    from lth.rounds import initial_state

    settings = load_params().settings
    state, mask = initial_state(settings, shape_of(settings))
    artifacts.save_tensors(pipeline.INIT, "weights", settings.model, state)
    artifacts.save_tensors(pipeline.round_file(DENSE_ROUND, "start"), "weights", settings.model, state, round=0)
    artifacts.save_tensors(pipeline.round_file(DENSE_ROUND, "mask"), "mask", settings.model, mask, round=0)


if __name__ == "__main__":
    run(main)
