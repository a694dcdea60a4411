"""Mask criteria (Zhou et al. 2019): pure functions of a layer's initial and final weights -> scores.

Higher score = more worth keeping. Ranking, survivors-only selection and tie-breaking live in
`lth.pruning.prune`; a criterion only says how much each weight is worth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class ScoreInputs:
    """What a criterion may look at for one layer."""

    w_init: Tensor
    w_final: Tensor
    generator: torch.Generator
    w_start: Optional[Tensor] = None  # the round's starting weights (gradient criteria only)
    grad: Optional[Tensor] = None  # the evidence the criterion asked for: loss gradient or LRP relevance


def _loss_gradients(*args, **kwargs) -> dict[str, Tensor]:
    from lth.pruning.gradients import mean_gradients  # lazy: only data-dependent criteria need it

    return mean_gradients(*args, **kwargs)


def _lrp_relevance(*args, **kwargs) -> dict[str, Tensor]:
    from lth.pruning.relevance import weight_relevance

    return weight_relevance(*args, **kwargs)


@dataclass(frozen=True)
class Criterion:
    name: str
    description: str
    score: Callable[[ScoreInputs], Tensor]
    gradient_at: Optional[str] = None  # 'start' or 'final': which weights the data-dependent evidence is taken at
    # (model, state, mask, splits, batch_size, seed) -> per-layer tensors, passed to `score` as ScoreInputs.grad
    evidence: Callable[..., dict[str, Tensor]] = _loss_gradients


def _rescale(x: ScoreInputs) -> float:
    """a in min(a|w_f|, |w_i|): maps final magnitudes onto the scale of initial ones (ratio of layer stds).

    Zhou et al. rescale so the two magnitudes are comparable; we use std(w_i) / std(w_f) of the layer.
    """
    std_final = float(x.w_final.float().std())
    return float(x.w_init.float().std()) / std_final if std_final > 0 else 1.0


def _same_sign(x: ScoreInputs) -> Tensor:
    return torch.sign(x.w_init) == torch.sign(x.w_final)


def _only_where(keep: Tensor, score: Tensor) -> Tensor:
    """Scores of weights failing a sign condition drop below every weight that meets it."""
    floor = score.min() - (score.max() - score.min()) - 1.0
    return torch.where(keep, score, floor)


def _random(x: ScoreInputs) -> Tensor:
    return torch.rand(x.w_final.shape, generator=x.generator, device="cpu").to(x.w_final.device)


_CRITERIA = [
    Criterion("large_final", "keep large |w_final| (Frankle & Carbin's IMP)", lambda x: x.w_final.abs()),
    Criterion("small_final", "keep small |w_final|", lambda x: -x.w_final.abs()),
    Criterion("large_init", "keep large |w_init|", lambda x: x.w_init.abs()),
    Criterion("small_init", "keep small |w_init|", lambda x: -x.w_init.abs()),
    Criterion(
        "large_init_large_final",
        "keep weights large both at init and at the end: min(a|w_final|, |w_init|)",
        lambda x: torch.minimum(_rescale(x) * x.w_final.abs(), x.w_init.abs()),
    ),
    Criterion(
        "small_init_small_final",
        "keep weights small both at init and at the end: -max(a|w_final|, |w_init|)",
        lambda x: -torch.maximum(_rescale(x) * x.w_final.abs(), x.w_init.abs()),
    ),
    Criterion("magnitude_increase", "keep weights whose magnitude grew most: |w_final| - |w_init|",
              lambda x: x.w_final.abs() - x.w_init.abs()),
    Criterion("movement", "keep weights that moved most: |w_final - w_init|", lambda x: (x.w_final - x.w_init).abs()),
    Criterion("random", "keep a uniformly random subset (control)", _random),
    Criterion("large_final_same_sign", "large |w_final| among weights whose sign did not change",
              lambda x: _only_where(_same_sign(x), x.w_final.abs())),
    Criterion("large_final_diff_sign", "large |w_final| among weights whose sign flipped",
              lambda x: _only_where(~_same_sign(x), x.w_final.abs())),
    Criterion("magnitude_increase_same_sign", "magnitude increase among weights whose sign did not change",
              lambda x: _only_where(_same_sign(x), x.w_final.abs() - x.w_init.abs())),
    Criterion("magnitude_increase_diff_sign", "magnitude increase among weights whose sign flipped",
              lambda x: _only_where(~_same_sign(x), x.w_final.abs() - x.w_init.abs())),
]

_CRITERIA += [
    Criterion("snip", "keep large |g * w| at the round's starting weights (SNIP, Lee et al. 2019)",
              lambda x: (x.grad * x.w_start).abs(), gradient_at="start"),
    Criterion("grad", "keep large |g|, the loss gradient at the end of training", lambda x: x.grad.abs(),
              gradient_at="final"),
    Criterion("relevance", "keep large epsilon-LRP relevance of the trained weights, 10 samples per class "
              "(Yeom et al. 2021; lth/relevance.py)", lambda x: x.grad, gradient_at="final", evidence=_lrp_relevance),
]

CRITERIA: dict[str, Criterion] = {c.name: c for c in _CRITERIA}


def get_criterion(name: str) -> Criterion:
    from lth.core.errors import unknown_choice

    if name not in CRITERIA:
        raise unknown_choice("criterion", name, CRITERIA)
    return CRITERIA[name]


def score_layers(
    criterion: str,
    init: dict[str, Tensor],
    final: dict[str, Tensor],
    names: list[str],
    seed: int,
    start: Optional[dict[str, Tensor]] = None,
    grads: Optional[dict[str, Tensor]] = None,
) -> dict[str, Tensor]:
    """Score every prunable layer with one criterion; randomness (if any) comes from `seed` alone."""
    crit = get_criterion(criterion)
    if crit.gradient_at and grads is None:
        raise ValueError(f"criterion {criterion} needs loss gradients at the {crit.gradient_at} weights")
    generator = torch.Generator().manual_seed(seed)
    return {
        name: crit.score(ScoreInputs(init[name], final[name], generator, None if start is None else start[name],
                                     None if grads is None else grads[name])).float()
        for name in names
    }
