"""Step `score@rNN`: every prunable weight of the previous round's trained network, scored by the mask
criterion (lth.pruning.criteria); ranking and survivors-only selection are the mask step's."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from lth.core.errors import LthError
from lth.core.seeds import derive_seed
from lth.runs.params import round_index
from lth.runs.run import Run, State
from lth.runs.settings import RunSettings


def outputs(run: Run, key: str) -> list[Path]:
    return [run.layout.trial_file(run.layout.round_dir(key, "scores"), t) for t in run.trials]


def score_weights(settings: RunSettings, init: State, final: State, mask: Mapping, trained_round: int,
                  start: Optional[State] = None, splits=None) -> State:
    """Criterion scores of every prunable weight after round `trained_round` (one trial's settings).

    Data-dependent criteria (snip, grad, relevance) also need the training data (and snip the round's start).
    """
    from lth.pruning.criteria import get_criterion, score_layers

    criterion = get_criterion(settings.criterion)
    evidence = None
    if criterion.gradient_at:
        if splits is None or (criterion.gradient_at == "start" and start is None):
            raise LthError(f"criterion '{settings.criterion}' needs the training data and the round's start weights")
        at = start if criterion.gradient_at == "start" else final
        evidence = criterion.evidence(settings.model, at, mask, splits, settings.train.batch_size,
                                      derive_seed(settings.seed, "gradients", trained_round))
    return score_layers(settings.criterion, init, final, list(mask), derive_seed(settings.seed, "score", trained_round),
                        start=start, grads=evidence)


def execute(run: Run, key: str) -> None:
    from lth.pruning.criteria import get_criterion

    layout, prev = run.layout, run.previous(key)
    needs = get_criterion(run.settings.criterion).gradient_at
    splits = run.data() if needs else None  # only data-dependent criteria read the data
    for t in run.trials:
        start = run.weights(layout.round_dir(prev, "start"), t) if needs == "start" else None
        scores = score_weights(run.trial_settings(t), run.weights(layout.theta0, t),
                               run.weights(layout.round_dir(prev, "final"), t),
                               run.mask(layout.round_dir(prev, "mask"), t), round_index(prev), start, splits)
        run.save(layout.trial_file(layout.round_dir(key, "scores"), t), "scores", scores,
                 criterion=run.settings.criterion)
