"""Stage `mask@<round>`: keep the best-scored survivors of the previous mask at the configured rates."""

from __future__ import annotations

from stages._common import model_files, round_argument, run


def main() -> None:
    from lth import artifacts, pipeline
    from lth.masks import remaining_percent
    from lth.params import load_params, round_index
    from lth.rounds import mask_round

    key = round_argument(__doc__)
    params = load_params()
    settings, prev = params.settings, params.previous(key)
    kinds, _, load_mask = model_files(settings)
    scores = artifacts.load_tensors(pipeline.round_file(key, "scores"), "scores", settings.model)
    mask = mask_round(settings, scores, load_mask(pipeline.round_file(prev, "mask")), kinds, round_index(key))
    artifacts.save_tensors(pipeline.round_file(key, "mask"), "mask", settings.model, mask, round=round_index(key))
    print(f"{key}: {remaining_percent(mask):.2f}% of weights kept")


if __name__ == "__main__":
    run(main)
