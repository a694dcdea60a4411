"""Do tickets transfer across domains and tasks? (the seed's research avenue 7)

Morcos et al. (2019) moved tickets between image datasets and optimizers. This experiment asks the next
question: does a ticket found on images (LeNet-300-100 on mnist-5k by default) also win on spoken digits
(`tts-digits`, log-mel spectrograms of the same 1x28x28 shape) and on a regression task (`mnist-5k-rotation`:
predict the angle a digit was rotated by)? For each target and each listed round, the round's ticket is
trained on the target beside a random re-initialisation of its mask, and the dense network once, `trials`
times each (lth.experiments.transfer.transfer_curve). Another task gets a fresh, dense output layer sized to
its targets. The result is a curve per target: the task's metric (accuracy, or RMSE and R²) vs weights
remaining, ticket vs reinit vs dense, with the source run's own curve for reference.
"""

from __future__ import annotations

from lth.experiments.settings import TransferDomainsSettings


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_transfer_domains`: every target of `experiments.transfer_domains`."""
    from lth.datasets import load_dataset
    from lth.experiments.common import experiment_params
    from lth.experiments.transfer import check_compatible, transfer_curve
    from lth.training.device import resolve_device

    exp = experiment_params(run, "transfer_domains", TransferDomainsSettings)
    first = run.ticket(exp.rounds[0], exp.trial)
    for target in exp.targets:  # every target checked before any trains
        check_compatible(first, target)
    results = {}
    for target in exp.targets:
        splits = (run.data() if target == run.settings.dataset else
                  load_dataset(target, run.params.dataset_dir).to(resolve_device(run.device)))
        results[target] = transfer_curve(run, target, splits, list(exp.rounds), exp.trial, exp.trials,
                                         duration=exp.duration, eval_every=exp.eval_every)
        print(f"transfer_domains: {target} done")
    return {"source": {"dataset": run.settings.dataset, "model": run.settings.model, "trial": exp.trial},
            "targets": results}
