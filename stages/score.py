"""Stage `score@<round>`: score every trial's previous-round weights with the mask criterion."""

from __future__ import annotations

from stages._common import load_splits, model_files, round_argument, run


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.pruning.criteria import get_criterion
    from lth.engine.params import load_params, round_index
    from lth.engine.rounds import score_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    _, load_weights, load_mask = model_files(settings)
    needs_data = get_criterion(settings.criterion).gradient_at is not None
    splits = load_splits(params.device) if needs_data else None  # only gradient criteria read the data
    for t in range(settings.trials):
        file = lambda directory: pipeline.trial_file(directory, t)  # noqa: E731
        start = load_weights(file(pipeline.round_dir(prev, "start"))) if needs_data else None
        scores = score_round(settings.for_trial(t), load_weights(file(pipeline.INIT)),
                             load_weights(file(pipeline.round_dir(prev, "final"))),
                             load_mask(file(pipeline.round_dir(prev, "mask"))), round_index(prev),
                             start=start, splits=splits)
        artifacts.save_tensors(file(pipeline.round_dir(key, "scores")), "scores", settings.model, scores,
                               criterion=settings.criterion)


if __name__ == "__main__":
    run(main)
