"""Stage `rewind_point`: θk, the dense network after k = `rewind` steps (θ0 itself when k = 0).

The dense run is deterministic, so training k steps here yields the same θk that find-ticket captures
inside its round 0; keeping it a stage of its own means changing `rewind` never retrains round 0.
"""

from __future__ import annotations

from stages._common import model_files, run


def main() -> None:
    import dataclasses

    from lth import artifacts, pipeline
    from lth.datasets import Splits
    from lth.params import DENSE_ROUND, load_params
    from lth.rounds import rewind_iteration, train_round
    from lth.train import resolve_device

    params = load_params()
    settings = params.settings
    _, load_weights, load_mask = model_files(settings)
    init = load_weights(pipeline.INIT)
    splits = Splits.from_state(artifacts.load_torch(pipeline.PREPARED, "prepared dataset"))
    k = rewind_iteration(settings, len(splits.train_x))
    if k == 0:
        point = init
    else:
        short = dataclasses.replace(settings, train=dataclasses.replace(settings.train, duration=f"{k}it",
                                                                        eval_every=f"{k}it"))
        mask = load_mask(pipeline.round_file(DENSE_ROUND, "mask"))
        result, _ = train_round(short, splits.to(resolve_device(params.device)), init, mask, 0)
        point = result.state
    artifacts.save_tensors(pipeline.REWIND_POINT, "weights", settings.model, point, iteration=k)
    print(f"rewind point: iteration {k}")


if __name__ == "__main__":
    run(main)
