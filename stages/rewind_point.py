"""Stage `rewind_point`: θk of every trial, the dense network after k = `rewind` steps (θ0 when k = 0).

The dense run is deterministic, so training k steps here yields the θk that find-ticket captures
inside its round 0; keeping it a stage of its own means changing `rewind` never retrains round 0.
"""

from __future__ import annotations

from stages._common import model_files, run, shape_of, training_processes


def main() -> None:
    import dataclasses

    from lth.core import files as artifacts

    from lth.engine import layout as pipeline
    from lth.engine.params import DENSE_ROUND, load_params
    from lth.engine.rounds import rewind_iteration, round_networks
    from lth.core.steps import Step

    params = load_params()
    settings = params.settings
    processes = training_processes(params, "stages.rewind_point", [], settings,
                                   needed=Step.parse(settings.rewind) != Step())
    if processes is None:  # ran under torchrun, or this rank trained what rank 0 sent
        return
    session, splits = processes
    _, load_weights, load_mask = model_files(settings)
    trials = range(settings.trials)
    inits = [load_weights(pipeline.trial_file(pipeline.INIT, t)) for t in trials]
    k = rewind_iteration(settings, len(splits.train_x))
    points = inits
    if k > 0:
        short = dataclasses.replace(settings, train=dataclasses.replace(settings.train, duration=f"{k}it",
                                                                        eval_every=f"{k}it"))
        masks = [load_mask(pipeline.trial_file(pipeline.round_dir(DENSE_ROUND, "mask"), t)) for t in trials]
        networks = round_networks(short, shape_of(settings), 0, list(zip(inits, masks)), inits, inits,
                                  [None] * len(inits))
        results, _ = session.train_networks(short, splits, networks, 0)
        points = [r.state for r in results]
    for t, point in zip(trials, points):
        artifacts.save_tensors(pipeline.trial_file(pipeline.REWIND_POINT, t), "weights", settings.model, point,
                               iteration=k)
    print(f"rewind point: iteration {k}")


if __name__ == "__main__":
    run(main)
