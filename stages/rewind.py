"""Stage `rewind@<round>`: each trial's starting weights: the mask-1 action on kept weights (reset to θ0,
rewind to θk, ...) and the mask-0 action on pruned ones (zero, freeze at θ0, ...)."""

from __future__ import annotations

from stages._common import model_files, round_argument, run, shape_of


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.engine.params import load_params, round_index
    from lth.engine.rounds import rewind_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    _, load_weights, load_mask = model_files(settings)
    for t in range(settings.trials):
        file = lambda directory: pipeline.trial_file(directory, t)  # noqa: E731
        start = rewind_round(settings.for_trial(t), shape_of(settings), round_index(key),
                             load_weights(file(pipeline.REWIND_POINT)), load_weights(file(pipeline.INIT)),
                             load_weights(file(pipeline.round_dir(prev, "final"))),
                             load_mask(file(pipeline.round_dir(key, "mask"))))
        artifacts.save_tensors(file(pipeline.round_dir(key, "start")), "weights", settings.model, start,
                               round=round_index(key))


if __name__ == "__main__":
    run(main)
