"""Step `init`: θ0 of every trial (seeded by the trial's seed) and the dense all-ones masks: round r00's start."""

from __future__ import annotations

from pathlib import Path

from lth.runs.params import DENSE_ROUND
from lth.runs.run import Run


def outputs(run: Run) -> list[Path]:
    layout = run.layout
    dirs = (layout.theta0, layout.round_dir(DENSE_ROUND, "start"), layout.round_dir(DENSE_ROUND, "mask"))
    return [layout.trial_file(d, t) for d in dirs for t in run.trials]


def execute(run: Run) -> None:
    from lth.core.masks import ones_mask
    from lth.models import build_model
    from lth.models.layers import prunable_layers

    layout = run.layout
    for t in run.trials:
        model = build_model(run.settings.model, run.shape.input_shape, run.shape.num_outputs,
                            run.trial_settings(t).seed)
        theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
        run.save(layout.trial_file(layout.theta0, t), "weights", theta0)
        run.save(layout.trial_file(layout.round_dir(DENSE_ROUND, "start"), t), "weights", theta0, round=0)
        run.save(layout.trial_file(layout.round_dir(DENSE_ROUND, "mask"), t), "mask",
                 ones_mask(model, prunable_layers(model)), round=0)
