"""Sparse training from scratch beside the tickets (`python -m lth sparse-train`, DVC stages `sparse_train@METHOD`):
for each fraction of weights remaining, layer-wise distribution and method (static, SET, RigL:
lth.training.sparse), `trials` networks start from θ0 under a random mask with exact per-layer counts
(lth.pruning.distributions; or N of every M consecutive input weights, lth.pruning.nm) and train with the
run's training settings. All of them train together as one batched job; every trial shares its θ0 and
starting mask across methods, so methods differ only in how the mask moves, and the same across the DVC
stages of one params.yaml (one per method).

Results: one entry per network with the metrics of a round's network (lth.runs.records: accuracy fields,
weights remaining measured in the final mask, effective sparsity), its mask update history and its final
mask; `results_files` splits them into what `dvc metrics diff` should see (scalars and a per-setting summary
with mean and spread over trials) and the details (update histories, learning curves, masks).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch

from lth.core.seeds import derive_seed

if TYPE_CHECKING:
    from lth.runs.settings import RunSettings
    from lth.training.checkpoint import Checkpoint
    from lth.training.distributed import Session
    from lth.training.sparse import SparseSchedule
    from lth.runs.sparse_train import SparseTrainSettings


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


def starting_nm_mask(shapes: dict[str, tuple[int, ...]], nm: tuple[int, int], seed: int) -> dict[str, torch.Tensor]:
    """A random N:M mask of every layer (seeded)."""
    from lth.pruning.nm import nm_random

    return {name: nm_random(shape, nm[0], nm[1], torch.Generator().manual_seed(derive_seed(seed, name)))
            for name, shape in shapes.items()}


def sparse_train(settings: "RunSettings", splits, methods: Sequence[str], distributions: Sequence[str],  # noqa: ANN001
                 remaining: Sequence[float], schedule: "SparseSchedule", trials: int = 1, progress=None,  # noqa: ANN001
                 nm: Optional[tuple[int, int]] = None, checkpoint: Optional["Checkpoint"] = None,
                 session: Optional["Session"] = None) -> list[dict]:
    """Train every (remaining, distribution, method, trial) network; one record entry each: its labels, the
    lth.runs.records metrics of a round's network, its mask update history and its final mask ('mask':
    tensors, which the caller saves or drops). With `nm` every layer is N:M instead (`remaining` and
    `distributions` do not apply). With `checkpoint` an interrupted training resumes where it stopped. With a
    torchrun `session` (lth.training.distributed, its leader) the processes train the networks together."""
    from lth.core.masks import apply_mask
    from lth.runs.records import network_metrics
    from lth.models import build_model
    from lth.models.layers import prunable_layers
    from lth.pruning.distributions import layer_counts
    from lth.pruning.effective import chain_of
    from lth.tasks import get_task
    from lth.training.sparse import SparseHooks
    from lth.training.trainer import Network, TrainJob, train_networks

    template = build_model(settings.model, splits.input_shape, splits.num_outputs, 0)
    names = list(prunable_layers(template))
    shapes = {name: tuple(template.state_dict()[name].shape) for name in names}
    if nm:
        from lth.pruning.nm import check_nm_shapes

        check_nm_shapes(shapes, nm[1])
        remaining, distributions = [nm[0] / nm[1]], [f"{nm[0]}:{nm[1]}"]  # the pattern names the allocation
    networks, labels, methods_of = [], [], []
    for fraction in remaining:
        for distribution in distributions:
            counts = None if nm else layer_counts(shapes, fraction, distribution)
            for t in range(trials):
                seed = derive_seed(settings.seed, "sparse-train", t)
                init = build_model(settings.model, splits.input_shape, splits.num_outputs, seed).state_dict()
                mask_seed = derive_seed(seed, "mask", distribution, fraction)
                mask = starting_nm_mask(shapes, nm, mask_seed) if nm else starting_mask(shapes, counts, mask_seed)
                start = apply_mask({k: v.detach().clone() for k, v in init.items()}, mask)
                for method in methods:
                    networks.append(Network(t, f"{method}/{distribution}/{fraction:g}", seed, start, mask))
                    labels.append({"method": method, "distribution": distribution, "target_remaining": fraction,
                                   "trial": t, "counts": {n: int(m.sum()) for n, m in mask.items()}})
                    methods_of.append(method)
    hooks = SparseHooks(schedule, shapes, methods_of,
                        [derive_seed(net.seed, "grow", method) for net, method in zip(networks, methods_of)], nm)
    job = TrainJob(settings.model, settings.train, trainable_pruned=False)
    trainer = session.train_networks if session is not None else train_networks
    results = trainer(job, splits, networks, progress=progress, hooks_for=hooks, checkpoint=checkpoint)
    task = get_task(splits.task)
    chain = chain_of(settings.model, splits.input_shape, splits.num_outputs)
    final = hooks.results()
    entries = []
    for i, (net, result, label) in enumerate(zip(networks, results, labels)):
        mask, history = final[i]
        metrics = network_metrics(mask, result, task, chain)
        entries.append({**label, **{k: v for k, v in metrics.items() if k != "curve"}, "updates": history,
                        "arm": net.arm, "curve": result.curve, "mask": mask})
    return entries


def summary_rows(entries: Sequence[dict], task) -> list[dict]:  # noqa: ANN001 - lth.tasks.base.Task
    """Per (target remaining, distribution, method): weights remaining (measured), effective remaining and each
    test metric at early stop as mean, sample std and per-trial values (lth.core.noise's reading of trials)."""
    from statistics import fmean, stdev

    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault((e["target_remaining"], e["distribution"], e["method"]), []).append(e)
    rows = []
    for (fraction, distribution, method), group in groups.items():
        row: dict[str, Any] = {"target_remaining": fraction, "distribution": distribution, "method": method,
                               "trials": len(group),
                               "weights_remaining": round(fmean(g["weights_remaining"] for g in group), 6)}
        effective = [g.get("effective_remaining") for g in group]
        row["effective_remaining"] = round(fmean(effective), 6) if None not in effective else None
        for metric in task.metrics:
            key = f"early_stop_test_{metric.name}"
            values = [g[key] for g in group]
            row[key] = fmean(values)
            row[f"{key}_std"] = stdev(values) if len(values) > 1 else 0.0
            row[f"{key}_values"] = values
        rows.append(row)
    return rows


def headline(summary: Sequence[dict], task) -> dict:  # noqa: ANN001 - lth.tasks.base.Task
    """Per method, distribution and target ("rigl erk 10%"), what `dvc metrics show/diff` displays (it does not look
    inside lists): weights and effective weights remaining, the test headline metric at early stop (mean, std)."""
    from lth.runs.records import headline as judged_by

    key = judged_by(task)
    return {f"{row['method']} {row['distribution']} {100 * row['target_remaining']:g}%": {
        "weights_remaining": row["weights_remaining"], "effective_remaining": row["effective_remaining"],
        key: round(row[key], 6), f"{key}_std": round(row[f"{key}_std"], 6)} for row in summary}


def results_files(entries: Sequence[dict], task, made_with: dict) -> tuple[dict, dict, dict]:  # noqa: ANN001
    """(metrics, details, masks) of a set of sparse-training networks: the metrics file holds scalars and the
    summary (what `dvc metrics diff` compares), the details every update history and learning curve, the masks
    'i.layer' -> bool tensor of network i (in the metrics file's order)."""
    light = [{k: v for k, v in e.items() if k not in ("updates", "curve", "mask")} | {"updates": len(e["updates"])}
             for e in entries]
    summary = summary_rows(entries, task)
    metrics = {"task": task.name, "headline": headline(summary, task), "summary": summary, "networks": light,
               "made_with": made_with}
    details = {"networks": [{"method": e["method"], "distribution": e["distribution"], "target_remaining":
                             e["target_remaining"], "trial": e["trial"], "updates": e["updates"], "curve": e["curve"]}
                            for e in entries]}
    masks = {f"{i}.{name}": m for i, e in enumerate(entries) for name, m in e["mask"].items()}
    return metrics, details, masks


def made_with(settings: "RunSettings", exp: "SparseTrainSettings", methods: Sequence[str]) -> dict:
    """What a result depends on: refusing or resuming a result compares this."""
    from lth.core.config import plain

    return {"settings": plain(settings.to_dict()), "methods": list(methods), "distributions": list(exp.distributions),
            "remaining": exp.fractions(), "nm": exp.nm, "trials": exp.trials,
            "schedule": [exp.update_every, exp.drop_fraction, exp.stop_fraction]}


def run_settings(settings: "RunSettings", exp: "SparseTrainSettings") -> "RunSettings":
    """The run's settings with `sparse_train.duration` (when given) as the training length."""
    from lth.runs.settings import replace

    return replace(settings, train__duration=exp.duration) if exp.duration else settings


def train_and_save(settings: "RunSettings", splits, exp: "SparseTrainSettings", methods: Sequence[str],  # noqa: ANN001
                   metrics_path, details_path, masks_path, checkpoint_path, checkpoint_every: str = "0it",  # noqa: ANN001
                   progress=None, session: Optional["Session"] = None) -> dict:  # noqa: ANN001
    """Train `methods` with `exp`'s networks and write their metrics, details and masks (each atomically); an
    interrupted training resumes from `checkpoint_path` (removed once the results are written)."""
    import hashlib
    import json

    from lth.core import files
    from lth.tasks import get_task
    from lth.training.checkpoint import Checkpoint

    settings = run_settings(settings, exp)
    identity = made_with(settings, exp, methods)
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    checkpoint = Checkpoint(checkpoint_path, checkpoint_every, {"settings": fingerprint, "round": 0})
    entries = sparse_train(settings, splits, methods, exp.distributions, exp.fractions(), exp.schedule, exp.trials,
                           progress=progress, nm=exp.pattern(), checkpoint=checkpoint, session=session)
    metrics, details, masks = results_files(entries, get_task(splits.task), identity)
    files.save_torch(masks_path, masks)
    files.write_json(details_path, details)
    files.write_json(metrics_path, metrics)
    checkpoint.clear()
    return metrics


def stage_result(run, method: str) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `sparse_train@METHOD`: the workspace's settings and data, params.yaml `sparse_train`."""
    from lth.experiments.common import method_group
    from lth.runs.sparse_train import load_settings

    exp = method_group(run, "sparse_train", load_settings, method)
    layout = run.layout
    return train_and_save(run.settings, run.data(), exp, [method], layout.sparse_train_metrics(method),
                          layout.sparse_train_details(method), layout.sparse_train_masks(method),
                          layout.sparse_train_checkpoint(method), run.checkpoint_every)
