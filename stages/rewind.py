"""Stage `rewind@<round>`: each trial's starting weights: survivors back to the rewind point, the rest zero."""

from __future__ import annotations

from stages._common import model_files, round_argument, run


def main() -> None:
    from lth import artifacts, pipeline
    from lth.params import load_params, round_index
    from lth.rounds import rewind_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    _, load_weights, load_mask = model_files(settings)
    for t in range(settings.trials):
        file = lambda directory: pipeline.trial_file(directory, t)  # noqa: E731
        start = rewind_round(load_weights(file(pipeline.REWIND_POINT)), load_weights(file(pipeline.INIT)),
                             load_weights(file(pipeline.round_dir(prev, "final"))),
                             load_mask(file(pipeline.round_dir(key, "mask"))))
        artifacts.save_tensors(file(pipeline.round_dir(key, "start")), "weights", settings.model, start,
                               round=round_index(key))


if __name__ == "__main__":
    run(main)
