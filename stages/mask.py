"""Stage `mask@<round>`: keep the best-scored survivors of each trial's previous mask at the configured rates."""

from __future__ import annotations

from stages._common import model_files, round_argument, run


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.core.masks import remaining_percent
    from lth.engine.params import load_params, round_index
    from lth.engine.rounds import mask_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    kinds, _, load_mask = model_files(settings)
    for t in range(settings.trials):
        scores = artifacts.load_tensors(pipeline.trial_file(pipeline.round_dir(key, "scores"), t), "scores",
                                        settings.model)
        previous = load_mask(pipeline.trial_file(pipeline.round_dir(prev, "mask"), t))
        mask = mask_round(settings.for_trial(t), scores, previous, kinds, round_index(key))
        artifacts.save_tensors(pipeline.trial_file(pipeline.round_dir(key, "mask"), t), "mask", settings.model, mask,
                               round=round_index(key))
    print(f"{key}: {remaining_percent(mask):.2f}% of weights kept")


if __name__ == "__main__":
    run(main)
