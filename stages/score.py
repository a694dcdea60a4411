"""Stage `score@<round>`: score the previous round's trained weights with the mask criterion."""

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
    scores = score_round(settings, load_weights(pipeline.INIT), load_weights(pipeline.round_file(prev, "final")),
                         load_mask(pipeline.round_file(prev, "mask")), round_index(prev))
    artifacts.save_tensors(pipeline.round_file(key, "scores"), "scores", settings.model, scores,
                           criterion=settings.criterion)


if __name__ == "__main__":
    run(main)
