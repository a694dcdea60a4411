"""Per-epoch masks with perturbation ("selective dropout") in one training run, against plain training and
dropout.

After every epoch a mask is recomputed from the current weights with a mask criterion (weights scored
against θ0, e.g. `large_final` = magnitude), removing `fraction` of each hidden layer's weights. During
the next epoch every forward pass adds fresh noise to exactly those weights (they are not zeroed): noise
from a registered distribution with standard deviation `scale` x the layer's current weight std. As with
dropout, the perturbation lives in the forward pass only: gradients flow to the unperturbed weights
(d(w + n)/dw = 1), the optimizer updates them, and evaluation uses the clean network. The first epoch
is plain (no mask exists yet). The dropout arm drops `fraction` of the hidden units (outputs of every
Linear/Conv2d layer but the output layer); plain training is the same network, same θ0 and data order.
All three arms run through the core's training loop (`lth.training.loop`): the perturbed network is the
network it steps, and the per-epoch mask is a hook (`EveryEpoch`) that re-draws it from the weights.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from lth.core.seeds import derive_seed
from lth.experiments.settings import PerturbSettings
from lth.models.layers import output_layer, prunable_layers
from lth.training.networks import SingleNetwork


SAMPLERS: dict[str, Callable[[torch.Size, torch.Generator, torch.device], Tensor]] = {  # unit-variance, zero-mean
    "gaussian": lambda shape, g, d: torch.randn(shape, generator=g, device=d),  # one per name in NOISES
    "uniform": lambda shape, g, d: (torch.rand(shape, generator=g, device=d) * 2 - 1) * math.sqrt(3.0),
    "laplace": lambda shape, g, d: _laplace(shape, g, d),
}


def _laplace(shape: torch.Size, g: torch.Generator, device: torch.device) -> Tensor:
    u = torch.rand(shape, generator=g, device=device).clamp(1e-7, 1 - 1e-7) - 0.5
    return -torch.sign(u) * torch.log1p(-2 * u.abs()) / math.sqrt(2.0)  # Laplace(0, 1/sqrt(2)): variance 1


def _hidden_rates(fraction: float) -> dict[str, float]:
    return {"conv": fraction, "fc": fraction, "output": 0.0}


class PerturbedNetwork(SingleNetwork):
    """One network whose training forward passes perturb the weights the last epoch's mask removed;
    `remask(epoch)` (an `EveryEpoch` hook) draws that mask at the start of every epoch after the first."""

    graph_safe = False  # fresh noise every step: a replayed CUDA graph would repeat one draw

    def __init__(self, model: nn.Module, init: Mapping[str, Tensor], settings: PerturbSettings, seed: int):
        super().__init__(model)
        self.init, self.settings, self.seed = init, settings, seed
        self.kinds = prunable_layers(model)
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "perturb-noise"))
        self.perturbed: Optional[dict[str, Tensor]] = None  # name -> bool, True = perturbed this epoch
        self.stds: dict[str, float] = {}
        self.history: list[float] = []  # the fraction of the previous epoch's perturbed weights perturbed again

    @torch.no_grad()
    def remask(self, epoch: int) -> None:
        from lth.pruning.criteria import score_layers
        from lth.pruning.prune import next_mask

        names = list(self.kinds)
        current = {n: self.params[n].detach() for n in names}
        init = {n: self.init[n].to(current[n].device) for n in names}
        scores = score_layers(self.settings.criterion, init, current, names, derive_seed(self.seed, "score", epoch))
        ones = {n: torch.ones_like(current[n], dtype=torch.bool) for n in names}
        keep = next_mask(scores, ones, self.kinds, _hidden_rates(self.settings.fraction), "layerwise", 1,
                         derive_seed(self.seed, "perturb-mask", epoch))
        perturbed = {n: ~keep[n] for n in names if not bool(keep[n].all())}
        if self.perturbed is not None:
            before = sum(int(self.perturbed[n].sum()) for n in perturbed)
            again = sum(int((self.perturbed[n] & perturbed[n]).sum()) for n in perturbed)
            self.history.append(again / max(before, 1))
        self.perturbed = perturbed
        self.stds = {n: float(current[n].float().std()) for n in perturbed}

    def __call__(self, x: Tensor) -> Tensor:
        if self.perturbed is None or self.settings.scale == 0:
            return self.model(x[0]).unsqueeze(0)
        params = dict(self.params)
        noise = SAMPLERS[self.settings.noise]
        for n, where in self.perturbed.items():
            w = params[n]
            draw = noise(w.shape, self.generator, w.device) * (self.settings.scale * self.stds[n])
            params[n] = w + draw * where.to(w.dtype)
        return torch.func.functional_call(self.model, params, (x[0],)).unsqueeze(0)


class DropoutNetwork(SingleNetwork):
    """One network with dropout (probability p) on the outputs of every hidden Linear/Conv2d layer while training.

    Dropping a pre-activation equals dropping the ReLU unit after it (relu(0) = 0, the 1/(1-p) rescale is positive).
    The units dropped come from the network's own seeded generator (F.dropout would draw from the global one),
    so the same seed drops the same units in every run and every process.
    """

    graph_safe = False  # a fresh dropout draw every step

    def __init__(self, model: nn.Module, p: float, seed: int):
        super().__init__(model)
        device = next(model.parameters()).device
        self.generator = torch.Generator(device=device).manual_seed(derive_seed(seed, "dropout"))
        output = output_layer(model)
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)) and name != output:
                module.register_forward_hook(lambda m, _i, out: self._drop(out, p) if m.training else out)

    def _drop(self, out: Tensor, p: float) -> Tensor:
        keep = torch.rand(out.shape, generator=self.generator, device=out.device) >= p
        return out * keep.to(out.dtype) / (1 - p)


ARMS = ("plain", "dropout", "perturbed")


def perturb_experiment(model_name: str, init: Mapping[str, Tensor], splits, train_settings, settings: PerturbSettings,
                       seed: int) -> dict:
    """Train plain, dropout and perturbed copies of the network starting at `init`; arm name -> results."""
    from lth.runs.records import network_metrics
    from lth.experiments.common import result_keys
    from lth.models import build_model
    from lth.tasks import get_task
    from lth.training.hooks import EveryEpoch
    from lth.training.loop import run_training

    settings.validate()
    device = splits.train_x.device
    results = {}
    for arm in ARMS:
        model = build_model(model_name, splits.input_shape, splits.num_outputs, seed)
        model.load_state_dict(dict(init))
        model.to(device)
        mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()
                if n in prunable_layers(model)}
        nets = {"plain": lambda: SingleNetwork(model), "dropout": lambda: DropoutNetwork(model, settings.fraction, seed),
                "perturbed": lambda: PerturbedNetwork(model, init, settings, seed)}[arm]()
        # every arm eager (no CUDA graph), so the three are computed and timed alike
        hooks = [EveryEpoch(nets.remask)] if isinstance(nets, PerturbedNetwork) else []
        result = run_training(nets, [mask], splits, train_settings, [seed], hooks=hooks, cuda_graphs=False)[0]
        task = get_task(splits.task)
        metrics = network_metrics(mask, result, task)
        results[arm] = {k: metrics[k] for k in result_keys(task) if k != "weights_remaining"}  # every arm is dense
        if isinstance(nets, PerturbedNetwork) and nets.history:
            results[arm]["repeat_perturbed"] = round(sum(nets.history) / len(nets.history), 4)
    return results


def run_stage(run) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `exp_perturb`: the workspace's θ0 (trial 0) trained three ways on the prepared data."""
    from lth.experiments.common import experiment_params, with_training

    exp = experiment_params(run, "perturb", PerturbSettings).validate()
    settings = with_training(run.settings, duration=exp.duration, eval_every=exp.eval_every)
    init = run.weights(run.layout.theta0, 0)
    return perturb_experiment(settings.model, init, run.data(), settings.train, exp, settings.seed)
