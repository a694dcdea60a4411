"""Stage `train@<round>`: train every trial's ticket (and, from r01, its control arms) in one batched step;
write the tickets' trained weights and the round's metrics."""

from __future__ import annotations

from stages._common import model_files, round_argument, run, shape_of, training_processes


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.training.checkpoint import Checkpoint
    from lth.engine.params import load_params, round_index
    from lth.engine.rounds import round_networks
    from lth.engine.summary import TICKET, arm_stats

    key = round_argument(__doc__)
    params = load_params()
    settings = params.settings
    processes = training_processes(params, "stages.train", ["--round", key], settings)
    if processes is None:  # ran under torchrun, or this rank trained what rank 0 sent
        return
    session, splits = processes
    index = round_index(key)
    _, load_weights, load_mask = model_files(settings)
    trials = range(settings.trials)
    per_trial = lambda directory: [load_weights(pipeline.trial_file(directory, t)) for t in trials]  # noqa: E731
    tickets = [(load_weights(pipeline.trial_file(pipeline.round_dir(key, "start"), t)),
                load_mask(pipeline.trial_file(pipeline.round_dir(key, "mask"), t))) for t in trials]
    if index > 0 and settings.controls:  # controls are rewound like the ticket, with their own masks
        previous = params.previous(key)
        inits, points = per_trial(pipeline.INIT), per_trial(pipeline.REWIND_POINT)
        finals = per_trial(pipeline.round_dir(previous, "final"))
    else:
        inits = points = [None] * len(tickets)
        finals = [None] * len(tickets)
    networks = round_networks(settings, shape_of(settings), index, tickets, inits, points, finals)
    checkpoint = Checkpoint(pipeline.checkpoint(key), params.checkpoint_every,
                            {"settings": settings.fingerprint(), "round": index})
    results, record = session.train_networks(settings, splits, networks, index, checkpoint=checkpoint)
    for net, result in zip(networks, results):
        if net.arm == TICKET:
            artifacts.save_tensors(pipeline.trial_file(pipeline.round_dir(key, "final"), net.trial), "weights",
                                   settings.model, result.state, round=index)
    artifacts.write_json(pipeline.round_metrics(key), record)
    checkpoint.clear()
    ticket = arm_stats(record, TICKET)
    print(f"{key}: {record['weights_remaining']:.1f}% weights, {len(networks)} networks, ticket test acc "
          f"{100 * ticket['test_acc']:.2f}% (early stop {100 * ticket['early_stop_test_acc']:.2f}%)")


if __name__ == "__main__":
    run(main)
