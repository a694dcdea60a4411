"""Sparse training from scratch beside the tickets (`python -m lth sparse-train`): for each fraction of
weights remaining, layer-wise distribution and method (static, SET, RigL: lth.training.sparse), `trials`
networks start from θ0 under a random mask with exact per-layer counts (lth.pruning.distributions) and
train with the run's training settings. All of them train together as one batched job; every trial shares
its θ0 and starting mask across methods, so methods differ only in how the mask moves.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from lth.core.seeds import derive_seed


def starting_mask(shapes: dict[str, tuple[int, ...]], counts: dict[str, int], seed: int) -> dict[str, torch.Tensor]:
    """A random mask keeping exactly counts[name] weights of each layer (seeded)."""
    mask = {}
    for name, shape in shapes.items():
        n = int(torch.tensor(shape).prod())
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, name)))[:counts[name]]
        flat = torch.zeros(n, dtype=torch.bool)
        flat[keep] = True
        mask[name] = flat.view(shape)
    return mask


def sparse_train(settings, splits, methods: Sequence[str], distributions: Sequence[str],  # noqa: ANN001
                 remaining: Sequence[float], schedule, trials: int = 1, progress=None) -> list[dict]:  # noqa: ANN001
    """Train every (remaining, distribution, method, trial) network; one record entry each: its labels, the
    lth.engine.records metrics of a round's network, its mask update history and its final mask ('mask':
    tensors, which the caller saves or drops)."""
    from lth.core.masks import apply_mask
    from lth.engine.records import network_metrics
    from lth.models import build_model
    from lth.models.layers import prunable_layers
    from lth.pruning.distributions import layer_counts
    from lth.tasks import get_task
    from lth.training.sparse import DynamicSparsity
    from lth.training.trainer import Network, TrainJob, train_networks

    template = build_model(settings.model, splits.input_shape, splits.num_outputs, 0)
    names = list(prunable_layers(template))
    shapes = {name: tuple(template.state_dict()[name].shape) for name in names}
    networks, labels, methods_of = [], [], []
    for fraction in remaining:
        for distribution in distributions:
            counts = layer_counts(shapes, fraction, distribution)
            for t in range(trials):
                seed = derive_seed(settings.seed, "sparse-train", t)
                init = build_model(settings.model, splits.input_shape, splits.num_outputs, seed).state_dict()
                mask = starting_mask(shapes, counts, derive_seed(seed, "mask", distribution, fraction))
                start = apply_mask({k: v.detach().clone() for k, v in init.items()}, mask)
                for method in methods:
                    networks.append(Network(t, f"{method}/{distribution}/{fraction:g}", seed, start, mask))
                    labels.append({"method": method, "distribution": distribution, "target_remaining": fraction,
                                   "trial": t, "counts": counts})
                    methods_of.append(method)
    hooks: list[tuple[DynamicSparsity, list[int]]] = []

    def hooks_for(indices: Sequence[int]) -> list:
        indices = list(indices)
        hook = DynamicSparsity(schedule, shapes, [methods_of[i] for i in indices],
                               [derive_seed(networks[i].seed, "grow", methods_of[i]) for i in indices])
        hooks.append((hook, indices))
        return [hook]

    job = TrainJob(settings.model, settings.train, trainable_pruned=False)
    results = train_networks(job, splits, networks, progress=progress, hooks_for=hooks_for)
    task = get_task(splits.task)
    final = {i: (hook.final_masks[position], hook.history[position])
             for hook, indices in hooks for position, i in enumerate(indices)}
    entries = []
    for i, (net, result, label) in enumerate(zip(networks, results, labels)):
        mask, history = final[i]
        metrics = network_metrics(mask, result, task)
        entries.append({**label, **{k: v for k, v in metrics.items() if k != "curve"}, "updates": history,
                        "arm": net.arm, "mask": mask})
    return entries
