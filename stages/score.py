"""Stage `score@<round>`: score every trial's previous-round weights with the mask criterion."""

from __future__ import annotations

from stages._common import model_files, round_argument, run


def main() -> None:
    from lth import artifacts, pipeline
    from lth.params import load_params, round_index
    from lth.rounds import score_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    _, load_weights, load_mask = model_files(settings)
    for t in range(settings.trials):
        file = lambda directory: pipeline.trial_file(directory, t)  # noqa: E731
        scores = score_round(settings.for_trial(t), load_weights(file(pipeline.INIT)),
                             load_weights(file(pipeline.round_dir(prev, "final"))),
                             load_mask(file(pipeline.round_dir(prev, "mask"))), round_index(prev))
        artifacts.save_tensors(file(pipeline.round_dir(key, "scores")), "scores", settings.model, scores,
                               criterion=settings.criterion)


if __name__ == "__main__":
    run(main)
