"""Step `train@rNN`: every trial's ticket and, from r01, its control arms, trained together (one batched
step where that pays); writes the tickets' trained weights and the round's metrics (last: their presence
marks the round finished). An interrupted step resumes from its mid-round checkpoint. With early-bird
(lth.steps.early_bird) a ticket and its arms stop once its next mask has settled."""

from __future__ import annotations

import time
from pathlib import Path

from lth.core import files
from lth.runs.params import round_index
from lth.runs.records import TICKET, round_record
from lth.runs.run import Run
from lth.steps.early_bird import watch_round
from lth.steps.rewind import rewound


def outputs(run: Run, key: str) -> list[Path]:
    layout = run.layout
    return [*(layout.trial_file(layout.round_dir(key, "final"), t) for t in run.trials), layout.round_metrics(key)]


def round_networks(run: Run, key: str) -> list:
    """Every network of the round: each trial's ticket, then its controls (from round 1: at r00 every arm
    would be the dense network). Controls are rewound like the ticket, with their own masks."""
    from lth.pruning.controls import CONTROLS, ControlInputs
    from lth.training.trainer import Network

    layout, r = run.layout, round_index(key)
    networks = []
    for t in run.trials:
        settings = run.trial_settings(t)
        mask = run.mask(layout.round_dir(key, "mask"), t)
        networks.append(Network(t, TICKET, settings.seed, run.weights(layout.round_dir(key, "start"), t), mask))
        if r == 0 or not run.settings.controls:
            continue
        point, init = run.weights(layout.rewind_point, t), run.weights(layout.theta0, t)
        final = run.weights(layout.round_dir(run.previous(key), "final"), t)

        def rewind(other_mask, settings=settings, point=point, init=init, final=final):  # noqa: ANN001
            return rewound(settings, run.shape, r, point, init, final, other_mask)

        inputs = ControlInputs(settings.model, run.shape.input_shape, run.shape.num_outputs, settings.seed, r, mask,
                               rewind)
        for name in run.settings.controls:
            start, control_mask = CONTROLS[name].make(inputs)
            networks.append(Network(t, name, settings.seed, start, control_mask))
    return networks


def execute(run: Run, key: str) -> dict:
    """Trains the round; returns its record."""
    from lth.core.masks import remaining_fraction
    from lth.pruning.actions import PRUNED_ACTIONS
    from lth.tasks import get_task
    from lth.training.checkpoint import Checkpoint
    from lth.training.trainer import TrainJob, train_networks

    layout, r = run.layout, round_index(key)
    networks = round_networks(run, key)
    run.reporter.round_started(r, remaining_fraction(networks[0].mask), len(networks))
    current, *older = run.settings.fingerprints()
    checkpoint = Checkpoint(layout.checkpoint(key), run.checkpoint_every, {"settings": current, "round": r},
                            older_settings=tuple(older))
    job = TrainJob(run.settings.model, run.settings.train, not PRUNED_ACTIONS[run.settings.mask0_action].frozen)
    trainer = run.trainer or train_networks
    early_bird = watch_round(run, key, networks)
    hooks = {"hooks_for": early_bird.hooks_for} if early_bird else {}
    began = time.perf_counter()
    splits = run.data()
    results = trainer(job, splits, networks, progress=run.reporter.progress, checkpoint=checkpoint, **hooks)
    from lth.pruning.effective import chain_of

    chain = chain_of(run.settings.model, splits.input_shape, splits.num_outputs)
    record = round_record(r, networks, results, get_task(splits.task), seconds=time.perf_counter() - began,
                          chain=chain)
    if early_bird:
        for entry in record["networks"]:
            if entry["arm"] == TICKET:
                entry["early_bird"] = early_bird.record(entry["trial"])
    for net, result in zip(networks, results):
        if net.arm == TICKET:
            run.save(layout.trial_file(layout.round_dir(key, "final"), net.trial), "weights", result.state, round=r)
    files.write_json(layout.round_metrics(key), record)  # written last: marks the round finished
    checkpoint.clear()
    return record
