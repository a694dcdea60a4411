"""Stage `train@<round>`: train the round's starting weights under its mask; write weights and metrics."""

from __future__ import annotations

from stages._common import model_files, round_argument, run


def main() -> None:
    from lth import artifacts, pipeline
    from lth.datasets import Splits
    from lth.params import load_params, round_index
    from lth.rounds import train_round
    from lth.train import resolve_device

    key = round_argument(__doc__)
    params = load_params()
    settings = params.settings
    index = round_index(key)
    _, load_weights, load_mask = model_files(settings)
    start = load_weights(pipeline.round_file(key, "start"))
    mask = load_mask(pipeline.round_file(key, "mask"))
    splits = Splits.from_state(artifacts.load_torch(pipeline.PREPARED, "prepared dataset"))
    splits = splits.to(resolve_device(params.device))
    result, metrics = train_round(settings, splits, start, mask, index)
    artifacts.save_tensors(pipeline.round_file(key, "final"), "weights", settings.model, result.state, round=index)
    artifacts.write_json(pipeline.round_curve(key), result.curve)
    artifacts.write_json(pipeline.round_metrics(key), metrics)
    print(f"{key}: {metrics['weights_remaining']:.1f}% weights, test acc {100 * metrics['test_acc']:.2f}% "
          f"(early stop {100 * metrics['early_stop_test_acc']:.2f}% at it {metrics['early_stop_iteration']})")


if __name__ == "__main__":
    run(main)
