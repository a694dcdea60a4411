"""Step `rewind@rNN`: each trial's starting weights for the round: the mask-1 action on kept weights
(reset to θ0, rewind to θk, ...) and the mask-0 action on pruned ones (zero, freeze at θ0, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from lth.core.seeds import derive_seed
from lth.runs.params import round_index
from lth.runs.run import Run, Shape, State
from lth.runs.settings import RunSettings


def outputs(run: Run, key: str) -> list[Path]:
    return [run.layout.trial_file(run.layout.round_dir(key, "start"), t) for t in run.trials]


def rewound(settings: RunSettings, shape: Shape, r: int, rewind_point: State, init: State, final: State,
            mask: Mapping) -> State:
    """Round r's starting weights under `mask` (one trial's settings); everything that is not a prunable
    weight (biases, BatchNorm) goes back to the rewind point."""
    from lth.models import build_model
    from lth.pruning.actions import get_actions, rewind_state

    kept, pruned = get_actions(settings.mask1_action, settings.mask0_action)
    fresh = None
    if kept.needs_fresh or pruned.needs_fresh:
        model = build_model(settings.model, shape.input_shape, shape.num_outputs, derive_seed(settings.seed, "fresh", r))
        fresh = model.state_dict()
    return rewind_state(rewind_point, init, final, mask, settings.mask1_action, settings.mask0_action, fresh,
                        derive_seed(settings.seed, "actions", r))


def execute(run: Run, key: str) -> None:
    layout, prev, r = run.layout, run.previous(key), round_index(key)
    for t in run.trials:
        start = rewound(run.trial_settings(t), run.shape, r, run.weights(layout.rewind_point, t),
                        run.weights(layout.theta0, t), run.weights(layout.round_dir(prev, "final"), t),
                        run.mask(layout.round_dir(key, "mask"), t))
        run.save(layout.trial_file(layout.round_dir(key, "start"), t), "weights", start, round=r)
