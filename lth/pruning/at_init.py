"""Pruning at initialization: score θ0 once (SynFlow: iteratively) and keep the best-scored weights, globally.

The methods, as their papers define them (higher score = more worth keeping; every prunable layer
competes, the output layer included):
- snip (Lee et al. 2019): connection sensitivity |g ⊙ θ| = |∂L/∂m| at m = 1, from a few training
  batches, normalised to sum to one over all weights.
- grasp (Wang et al. 2020): GraSP removes the weights with the largest S(-θ) = -θ ⊙ Hg (H the Hessian, g
  the gradient of the loss, logits divided by a temperature of 200 as in its code: a regression loss has
  no softmax to soften and takes the outputs as they are); we keep the lowest S, i.e. score θ ⊙ Hg.
- synflow (Tanaka et al. 2020): data-free. The network with |θ| and an all-ones input; R = sum of the
  outputs; score |θ ⊙ ∂R/∂θ|. 100 rounds of scoring and pruning on an exponential schedule towards the
  target (density d^(k/100)), so no layer is emptied.
- magnitude: |θ0|, globally.
- random: uniformly random, the same number of weights.

Controls (Frankle et al. 2021, "Missing the Mark"), trained beside the method's mask: shuffle (the mask
permuted at random within each layer: same per-layer sparsity), reinit (the mask on freshly initialised
weights) and invert (the lowest-scored weights at the same per-layer counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

from lth.core.config import setting
from lth.core.errors import LthError, unknown_choice
from lth.core.seeds import derive_seed

if TYPE_CHECKING:
    from torch import Tensor

    from lth.core.masks import Mask

SNIP_BATCHES = 10  # batches of the run's batch size (SNIP: one batch; more steadies the estimate)
GRASP_TEMPERATURE = 200.0  # GraSP's code divides the logits by T = 200 before the loss
SYNFLOW_ROUNDS = 100


@dataclass(frozen=True)
class ScoringInputs:
    """What a method may look at: the model at θ0 (on the data's device), its prunable layers, the data."""

    model_name: str
    state: Mapping[str, "Tensor"]  # θ0
    kinds: Mapping[str, str]
    splits: object
    batch_size: int
    seed: int
    cache: dict = field(default_factory=dict, compare=False, repr=False)  # SynFlow's |θ0| network, built once


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    score: Callable[[ScoringInputs, "Mask"], dict]  # (inputs, current mask) -> scores of every prunable layer
    iterative: bool = False  # SynFlow: rescored after every pruning step towards the target
    uses_data: bool = True


def _model(inputs: ScoringInputs, mask: "Mask", dtype=None):
    """The model at θ0 with the mask applied, on the data's device (in `dtype` when given)."""
    import torch

    from lth.models import build_model

    splits = inputs.splits
    model = build_model(inputs.model_name, splits.input_shape, splits.num_outputs, 0)
    model.load_state_dict(dict(inputs.state))
    model.to(device=splits.train_x.device, dtype=dtype or splits.train_x.dtype)
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, m in mask.items():
            params[name].mul_(m.to(device=params[name].device, dtype=params[name].dtype))
    return model


def _batches(inputs: ScoringInputs, count: int):
    import torch

    splits = inputs.splits
    order = torch.randperm(len(splits.train_x), generator=torch.Generator().manual_seed(inputs.seed))
    size = min(inputs.batch_size, len(order))
    for b in range(count):
        idx = order[(b * size) % len(order):][:size].to(splits.train_x.device)
        yield splits.train_x[idx], splits.train_y[idx]


def _snip(inputs: ScoringInputs, mask: "Mask") -> dict:
    from lth.tasks import get_task

    model = _model(inputs, mask)
    model.train()
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    task = get_task(inputs.splits.task)
    for x, y in _batches(inputs, SNIP_BATCHES):
        task.mean_loss(model(x), y).div(SNIP_BATCHES).backward()
    scores = {n: (params[n].grad * params[n]).detach().abs() for n in inputs.kinds}
    total = sum(float(s.sum()) for s in scores.values()) or 1.0
    return {n: (s / total).cpu() for n, s in scores.items()}


def _grasp(inputs: ScoringInputs, mask: "Mask") -> dict:
    import torch

    from lth.tasks import get_task

    task = get_task(inputs.splits.task)
    model = _model(inputs, mask)
    model.train()
    weights = [p for n, p in model.named_parameters() if n in inputs.kinds]
    names = [n for n, _ in model.named_parameters() if n in inputs.kinds]
    batches = list(_batches(inputs, SNIP_BATCHES))
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in batches:  # g: the gradient, a constant of the second pass
        loss = task.mean_loss(model(x), y, GRASP_TEMPERATURE) / len(batches)
        for total, g in zip(grads, torch.autograd.grad(loss, weights)):
            total += g
    hg = [torch.zeros_like(w) for w in weights]
    for x, y in batches:  # Hg = d(g · dL/dθ)/dθ
        loss = task.mean_loss(model(x), y, GRASP_TEMPERATURE) / len(batches)
        first = torch.autograd.grad(loss, weights, create_graph=True)
        product = sum((g.detach() * f).sum() for g, f in zip(grads, first))
        for total, h in zip(hg, torch.autograd.grad(product, weights)):
            total += h
    return {n: (w.detach() * h).cpu() for n, w, h in zip(names, weights, hg)}  # keep the lowest -θ ⊙ Hg


def _synflow(inputs: ScoringInputs, mask: "Mask") -> dict:
    import torch

    if "synflow" not in inputs.cache:  # |θ0| in float64 (products over every layer stay finite), built once
        model = _model(inputs, {}, dtype=torch.float64)
        model.eval()  # BatchNorm as an affine map (SynFlow's code does the same)
        with torch.no_grad():
            for p in model.parameters():
                p.abs_()
        inputs.cache["synflow"] = (model, {n: p.detach().clone() for n, p in model.named_parameters()})
    model, magnitudes = inputs.cache["synflow"]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, m in mask.items():
            params[name].copy_(magnitudes[name] * m.to(magnitudes[name].device))
    ones = torch.ones(1, *inputs.splits.input_shape, dtype=torch.float64, device=inputs.splits.train_x.device)
    model.zero_grad(set_to_none=True)
    model(ones).sum().backward()
    scores = {n: (params[n].grad * params[n]).detach().abs() for n in inputs.kinds}
    largest = max(float(s.max()) for s in scores.values()) or 1.0  # same ranking, within float32 for deep nets
    return {n: (s / largest).cpu() for n, s in scores.items()}


def _magnitude(inputs: ScoringInputs, mask: "Mask") -> dict:
    return {n: inputs.state[n].detach().abs().cpu() for n in inputs.kinds}


def _random(inputs: ScoringInputs, mask: "Mask") -> dict:
    import torch

    generator = torch.Generator().manual_seed(derive_seed(inputs.seed, "random-at-init"))
    return {n: torch.rand(inputs.state[n].shape, generator=generator) for n in inputs.kinds}


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("snip", "connection sensitivity |g * w| at θ0 (Lee et al. 2019)", _snip),
        Method("grasp", "keep what preserves gradient flow: lowest -w * Hg (Wang et al. 2020)", _grasp),
        Method("synflow", "iterative synaptic flow, data-free, 100 rounds (Tanaka et al. 2020)", _synflow,
               iterative=True, uses_data=False),
        Method("magnitude", "largest |w| at θ0, globally", _magnitude, uses_data=False),
        Method("random", "uniformly random weights, globally", _random, uses_data=False),
    ]
}
CONTROLS = {
    "shuffle": "the method's mask permuted at random within each layer (same per-layer sparsity)",
    "reinit": "the method's mask on freshly initialised weights",
    "invert": "the lowest-scored weights instead, at the same per-layer counts",
}


def parse_remaining(text: str | float) -> float:
    """'5%' or 0.05 -> 0.05: the fraction of prunable weights kept, in (0, 1] (lth.core.fractions)."""
    from lth.core.fractions import parse_fraction

    return parse_fraction(text, "remaining")


def _global_top(scores: Mapping[str, "Tensor"], alive: Mapping[str, "Tensor"], keep: int, seed: int) -> "Mask":
    """The `keep` best-scored alive weights over all layers, exactly that many: everything above the keep-th
    score, then the ties at it in a seeded random order. A selection, not a sort: SynFlow calls it 100 times
    over every weight of the network."""
    import torch

    names = list(scores)
    flat = torch.cat([scores[n].flatten().double().cpu() for n in names])
    flat = torch.where(torch.cat([alive[n].flatten().cpu() for n in names]), flat, float("-inf"))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if keep > 0:
        threshold = torch.kthvalue(flat, flat.numel() - keep + 1).values
        chosen = flat > threshold
        tied = torch.nonzero(flat == threshold).flatten()
        wanted = keep - int(chosen.sum())
        chosen[tied[torch.randperm(tied.numel(), generator=torch.Generator().manual_seed(seed))[:wanted]]] = True
    out, offset = {}, 0
    for n in names:
        size = scores[n].numel()
        out[n] = chosen[offset: offset + size].view(scores[n].shape)
        offset += size
    return out


def prune_at_init(method: str, inputs: ScoringInputs, remaining: float,
                  synflow_rounds: int = SYNFLOW_ROUNDS) -> tuple["Mask", dict]:
    """The method's mask keeping exactly round(N x remaining) of the N prunable weights, and its final scores."""
    import torch

    if method not in METHODS:
        raise unknown_choice("pruning-at-init method", method, METHODS)
    spec = METHODS[method]
    total = sum(inputs.state[n].numel() for n in inputs.kinds)
    keep = int(round(total * remaining))
    mask = {n: torch.ones(inputs.state[n].shape, dtype=torch.bool) for n in inputs.kinds}
    steps = synflow_rounds if spec.iterative else 1
    scores: dict = {}
    for k in range(1, steps + 1):
        scores = spec.score(inputs, mask)
        target = keep if k == steps else int(round(total * remaining ** (k / steps)))
        everything = {n: torch.ones_like(m) for n, m in mask.items()}  # SynFlow re-ranks all; pruned score 0
        mask = _global_top(scores, everything if spec.iterative else mask, target,
                           derive_seed(inputs.seed, "at-init", method, k))
    return mask, scores


def control_mask(control: str, mask: "Mask", scores: Mapping[str, "Tensor"], seed: int) -> "Mask":
    """A control's mask (shuffle, invert) from the method's mask and scores; reinit keeps the mask itself."""
    import torch

    from lth.pruning.prune import random_mask_like
    from lth.pruning.ranking import top_k

    if control not in CONTROLS:
        raise unknown_choice("pruning-at-init control", control, CONTROLS)
    if control == "shuffle":
        return random_mask_like(mask, derive_seed(seed, "shuffle"))
    if control == "invert":
        generator = torch.Generator().manual_seed(derive_seed(seed, "invert"))
        return {n: top_k(-scores[n].double(), torch.ones_like(m), int(m.sum()), generator) for n, m in mask.items()}
    return {n: m.clone() for n, m in mask.items()}


def collapsed_layers(mask: "Mask") -> list[str]:
    """Layers left without a single weight (layer collapse: the network computes a constant)."""
    return [n for n, m in mask.items() if not bool(m.any())]


def check_choices(method: str, controls: Optional[list[str]] = None) -> None:
    if method not in METHODS:
        raise unknown_choice("pruning-at-init method", method, METHODS)
    for control in controls or []:
        if control not in CONTROLS:
            raise unknown_choice("pruning-at-init control", control, CONTROLS)


@dataclass(frozen=True)
class PruneAtInitSettings:
    """params.yaml `prune_at_init`: which methods (one DVC stage each), how many weights they keep, which controls."""

    methods: tuple[str, ...] = setting(("snip", "grasp", "synflow", "magnitude", "random"),
                                       "Pruning-at-init methods, one DVC stage each.", choices=lambda: METHODS,
                                       label="pruning-at-init method", inline=True)
    remaining: str = setting("10%", "Weights kept, global over the prunable layers: a fraction such as 0.1, or a "
                                    "percentage such as 10%.")
    controls: tuple[str, ...] = setting(("shuffle", "reinit"), "Sanity controls trained beside each method "
                                                               "(Frankle et al. 2021).",
                                        choices=lambda: CONTROLS, label="pruning-at-init control", inline=True)
    synflow_rounds: int = setting(SYNFLOW_ROUNDS, "SynFlow's prune-and-rescore rounds towards the target.")

    def validate(self, where: str = "prune_at_init") -> "PruneAtInitSettings":
        if not self.methods:
            raise LthError(f"{where}.methods: name at least one of {', '.join(METHODS)}")
        for method in self.methods:
            check_choices(method, list(self.controls))
        for values, what in ((self.methods, "methods"), (self.controls, "controls")):
            if len(set(values)) != len(values):
                raise LthError(f"{where}.{what}: {list(values)} names one twice")
        try:
            parse_remaining(self.remaining)
        except LthError as exc:
            raise LthError(f"{where}.remaining: {exc}") from None
        if self.synflow_rounds < 1:
            raise LthError(f"{where}.synflow_rounds: {self.synflow_rounds} must be >= 1")
        return self


def load_settings(group: Any, where: str) -> PruneAtInitSettings:
    """params.yaml's `prune_at_init` group, validated (errors name `where`.key)."""
    from lth.core.config import build

    return build(PruneAtInitSettings, group if group is not None else {}, where).validate(where)
