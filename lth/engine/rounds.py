"""One round of the lottery-ticket procedure, and the resumable runner that chains rounds.

A round r: start from (weights, mask) -> train -> score with the criterion -> next mask ->
rewind the survivors -> the next round's (weights, mask). Each step is one function here; the
CLI's `find-ticket` chains them in one process and the DVC stages call the same functions one
per process, so the two faces cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Protocol

import torch
from torch import Tensor

from lth.core import files as artifacts

from lth.core import interrupt
from lth.pruning.actions import PRUNED_ACTIONS, get_actions, rewind_state
from lth.core.files import RunLayout
from lth.training.batched import train_batched
from lth.training.checkpoint import Checkpoint
from lth.pruning.controls import CONTROLS, ControlInputs
from lth.pruning.criteria import get_criterion, score_layers
from lth.core.errors import LthError
from lth.core.lock import RunLock
from lth.core.masks import Mask, kept_counts, ones_mask, remaining_percent, tensor_remaining_percent
from lth.models import build_model, has_convolutions
from lth.core.seeds import derive_seed
from lth.engine.settings import RunSettings, check_data
from lth.core.steps import Step
from lth.pruning.structured import GRANULARITIES
from lth.engine.summary import TICKET, write_summary
from lth.training.loop import DataParallel, ProgressFn, TrainResult, iterations_per_epoch, train

State = dict[str, Tensor]


@dataclass(frozen=True)
class Shape:
    """What the model is built for: input (C, H, W) and number of classes."""

    input_shape: tuple[int, int, int]
    num_classes: int


def describe_model(settings: RunSettings, shape: Shape) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """(prunable layer -> kind, every state entry -> shape) of the model these settings build."""
    model = build_model(settings.model, shape.input_shape, shape.num_classes, settings.seed)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return model.prunable_layers(), shapes


def initial_state(settings: RunSettings, shape: Shape) -> tuple[State, Mask]:
    """θ0 (seeded by settings.seed) and the dense all-ones mask."""
    model = build_model(settings.model, shape.input_shape, shape.num_classes, settings.seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, ones_mask(model, model.prunable_layers())


def rewind_iteration(settings: RunSettings, num_train: int) -> int:
    """The rewind step k in iterations (0 = reset to θ0)."""
    return Step.parse(settings.rewind).to_iterations(iterations_per_epoch(num_train, settings.train.batch_size))


@dataclass
class Network:
    """One network to train in a round: a trial's ticket or one of its control arms."""

    trial: int
    arm: str  # 'ticket' or a control name
    seed: int  # the trial's seed: data order (controls share their ticket's)
    start: Mapping[str, Tensor]
    mask: Mapping[str, Tensor]


def round_networks(
    settings: RunSettings,
    shape: Shape,
    round_index: int,
    tickets: list[tuple[Mapping[str, Tensor], Mapping[str, Tensor]]],
    inits: list[Mapping[str, Tensor]],
    rewind_points: list[Mapping[str, Tensor]],
    previous_finals: list[Optional[Mapping[str, Tensor]]],
) -> list[Network]:
    """Every network of round `round_index`: each trial's ticket (start, mask), then its controls.

    Controls start from round 1: at round 0 every arm would be the dense network.
    """
    networks = []
    for trial, (start, mask) in enumerate(tickets):
        seed = settings.for_trial(trial).seed
        networks.append(Network(trial, TICKET, seed, start, mask))
        if round_index == 0:
            continue

        def rewind(other_mask: Mapping[str, Tensor], trial: int = trial) -> State:
            return rewind_round(settings.for_trial(trial), shape, round_index, rewind_points[trial], inits[trial],
                                previous_finals[trial], other_mask)

        inputs = ControlInputs(settings.model, shape.input_shape, shape.num_classes, seed, round_index, mask, rewind)
        for name in settings.controls:
            control_start, control_mask = CONTROLS[name].make(inputs)
            networks.append(Network(trial, name, seed, control_start, control_mask))
    return networks


def train_networks(
    settings: RunSettings,
    splits,
    networks: list[Network],
    round_index: int,
    progress: Optional[ProgressFn] = None,
    parallel: Optional[DataParallel] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> tuple[list[TrainResult], dict]:
    """Train every network of a round (as one batched step where that pays); returns the results
    and the round's record (metrics and learning curve of every network). Pruned weights are held at
    their starting values, which the mask-0 action chose (0, θ0, ...). With `parallel` (lth.training.distributed)
    every network's batches are split over the processes.

    Round 0 also captures the rewind point θk of each network when settings.rewind > 0. With
    `checkpoint` the training saves its state as it goes and resumes from it (lth.training.checkpoint). Running
    out of GPU memory is an LthError that suggests a smaller batch or the CPU.
    """
    try:
        results = _train_networks(settings, splits, networks, round_index, progress, parallel, checkpoint)
    except torch.OutOfMemoryError:
        raise LthError(
            f"out of {splits.train_x.device.type.upper()} memory training {len(networks)} network(s) of "
            f"{settings.model} with batch size {settings.train.batch_size}: use a smaller --batch-size "
            "(train.batch_size), fewer --trials / --control arms, or --device cpu"
        ) from None
    return results, round_record(round_index, networks, results)


def _train_networks(
    settings: RunSettings,
    splits,
    networks: list[Network],
    round_index: int,
    progress: Optional[ProgressFn],
    parallel: Optional[DataParallel],
    checkpoint: Optional[Checkpoint],
) -> list[TrainResult]:
    shape = Shape(splits.input_shape, splits.num_classes)
    device = splits.train_x.device
    template = build_model(settings.model, shape.input_shape, shape.num_classes, settings.seed)
    k = rewind_iteration(settings, len(splits.train_x))
    rewind_at = k if (round_index == 0 and k > 0) else None
    masks = [training_mask(settings, n.mask) for n in networks]
    if len(networks) > 1 and batching_pays(template, device):
        own = checkpoint.for_networks([n.start for n in networks], masks) if checkpoint else None
        return train_batched(template, [n.start for n in networks], masks, splits, settings.train,
                             [n.seed for n in networks], rewind_at=rewind_at, progress=progress, hold_pruned=True,
                             parallel=parallel, checkpoint=own)
    results = []
    for i, (net, net_mask) in enumerate(zip(networks, masks)):
        template.load_state_dict(dict(net.start))
        template.to(device)
        mask = {name: m.to(device) for name, m in net_mask.items()}
        own = checkpoint.for_networks([net.start], [net_mask], i if len(networks) > 1 else None) if checkpoint else None
        results.append(train(template, mask, splits, settings.train, net.seed, rewind_at=rewind_at,
                             progress=progress, hold_pruned=True, parallel=parallel, checkpoint=own))
    return results


def batching_pays(model: torch.nn.Module, device: torch.device) -> bool:
    """Whether training a round's networks as one vmapped batch beats training them one after another.

    On a GPU it always does. On a CPU, fully connected models batch about as fast as sequential runs or
    faster (4-32 LeNets: 0.97-1.09x on an AMD EPYC; 1.6-1.8x on an Intel CPU with AMX, measured less
    fairly; see README, Speed), and one pass over the data serves all arms. Batched convolutions run
    slower per network than single ones, so conv nets train one network at a time there.
    """
    return device.type == "cuda" or not has_convolutions(model)


def network_metrics(mask: Mapping[str, Tensor], result: TrainResult) -> dict:
    """The scalar results of one network, plus per-layer sparsity measured in the trained tensors."""
    final, early = result.final, result.early_stop
    in_tensors = tensor_remaining_percent(result.state, list(mask))
    layers = {
        name: {"kept": kept, "total": total, "remaining": round(100.0 * kept / total, 4),
               "nonzero_remaining": round(in_tensors[name], 4)}
        for name, (kept, total) in kept_counts(mask).items()
    }
    return {
        "weights_remaining": round(remaining_percent(mask), 4),
        "nonzero_remaining": round(in_tensors["all"], 4),
        "supermask_test_acc": result.curve[0]["test_acc"],  # the masked starting weights, before any training
        "test_acc": final["test_acc"],
        "test_loss": final["test_loss"],
        "val_acc": final["val_acc"],
        "val_loss": final["val_loss"],
        "early_stop_iteration": early["iteration"],
        "early_stop_test_acc": early["test_acc"],
        "early_stop_val_acc": early["val_acc"],
        "early_stop_val_loss": early["val_loss"],
        "iterations": result.iterations,
        "layers": layers,
    }


def round_record(round_index: int, networks: list[Network], results: list[TrainResult]) -> dict:
    """Everything measured in a round: one entry per network (trial, arm, metrics, learning curve)."""
    entries = [{"trial": n.trial, "arm": n.arm, **network_metrics(n.mask, r), "curve": r.curve}
               for n, r in zip(networks, results)]
    ticket = next((e for e in entries if e["arm"] == TICKET), entries[0])  # experiments may name no arm 'ticket'
    return {"round": round_index, "weights_remaining": ticket["weights_remaining"], "networks": entries}


def score_round(
    settings: RunSettings,
    init: State,
    final: State,
    mask: Mapping[str, Tensor],
    round_index: int,
    start: Optional[State] = None,
    splits=None,
) -> State:
    """Criterion scores of every prunable weight after round `round_index` (survivor ranking is in prune).

    Data-dependent criteria (snip, grad, relevance) also need the training data (and snip the round's start).
    """
    criterion = get_criterion(settings.criterion)
    grads = None
    if criterion.gradient_at:
        if splits is None or (criterion.gradient_at == "start" and start is None):
            raise LthError(f"criterion '{settings.criterion}' needs the training data and the round's start weights")
        at = start if criterion.gradient_at == "start" else final
        grads = criterion.evidence(settings.model, at, mask, splits, settings.train.batch_size,
                                   derive_seed(settings.seed, "gradients", round_index))
    return score_layers(settings.criterion, init, final, list(mask), derive_seed(settings.seed, "score", round_index),
                        start=start, grads=grads)


def mask_round(
    settings: RunSettings, scores: Mapping[str, Tensor], mask: Mapping[str, Tensor], kinds: Mapping[str, str],
    next_round: int,
) -> Mask:
    """The mask for `next_round`: the lowest-scored survivors of `mask` removed at the configured rates.

    With a trainable mask-0 action (reinit_trainable) nothing is ever removed for good: every round
    selects the top (1 - rate) of all weights afresh, so the network keeps changing instead of shrinking.
    """
    prune = GRANULARITIES[settings.pruning].next_mask  # single weights, or whole units (lth.pruning.structured)
    if not PRUNED_ACTIONS[settings.mask0_action].frozen:
        everything = {name: torch.ones_like(m) for name, m in mask.items()}
        return prune(scores, everything, kinds, settings.prune.rates, settings.prune.method, 1,
                     derive_seed(settings.seed, "reselect", next_round), settings.model)
    return prune(scores, mask, kinds, settings.prune.rates, settings.prune.method, next_round, settings.seed,
                 settings.model)


def rewind_round(
    settings: RunSettings, shape: Shape, round_index: int, rewind_point: State, init: State, final: State,
    mask: Mapping[str, Tensor],
) -> State:
    """Round `round_index`'s starting weights: the mask-1 action on kept weights, the mask-0 action on pruned ones."""
    kept, pruned = get_actions(settings.mask1_action, settings.mask0_action)
    fresh = None
    if kept.needs_fresh or pruned.needs_fresh:
        model = build_model(settings.model, shape.input_shape, shape.num_classes,
                            derive_seed(settings.seed, "fresh", round_index))
        fresh = model.state_dict()
    return rewind_state(rewind_point, init, final, mask, settings.mask1_action, settings.mask0_action, fresh,
                        derive_seed(settings.seed, "actions", round_index))


def training_mask(settings: RunSettings, mask: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    """What the optimizer may not change: the pruned weights, unless the mask-0 action leaves them trainable."""
    if PRUNED_ACTIONS[settings.mask0_action].frozen:
        return mask
    return {name: torch.ones_like(m) for name, m in mask.items()}


# --- the resumable runner -------------------------------------------------------------------------------

Trainer = Callable[..., tuple[list[TrainResult], dict]]  # train_networks' signature


class Reporter(Protocol):
    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None: ...

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None: ...

    def round_finished(self, record: dict, skipped: bool) -> None: ...


class SilentReporter:
    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None:
        pass

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None:
        pass

    def round_finished(self, record: dict, skipped: bool) -> None:
        pass


def check_settings_file(layout: RunLayout, settings: RunSettings) -> None:
    """Refuse to continue a run directory made with other settings; record ours in a new one."""
    wanted = {"fingerprint": settings.fingerprint(), "settings": settings.to_dict()}
    if layout.settings.exists():
        existing = artifacts.read_json(layout.settings)
        if existing.get("fingerprint") != wanted["fingerprint"]:
            diffs = _differences(existing.get("settings", {}), wanted["settings"])
            raise LthError(
                f"{layout.root} holds a run made with other settings ({'; '.join(diffs) or 'unreadable settings'}); "
                "use another --out or delete that directory"
            )
        return
    artifacts.write_json(layout.settings, wanted)


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} there, {b!r} now")
    return diffs


def find_ticket(
    settings: RunSettings,
    rounds: int,
    out: str | Path,
    splits,
    reporter: Optional[Reporter] = None,
    trainer: Trainer = train_networks,
    checkpoint_every: str = "0it",
) -> list[dict]:
    """Run rounds 0..rounds-1 of IMP for every trial into `out`, skipping every round already finished there.

    `splits` is the dataset already on the training device. Every input of a round is read back
    from disk, so a resumed run computes exactly what an uninterrupted one does. Returns the round records.
    `trainer` trains a round's networks (lth.training.distributed passes one that shares the work with other processes).

    Within a round the training state is saved every `checkpoint_every` steps ('0it': only when
    interrupted, lth.core.interrupt) to out/checkpoint.pt, so a resumed round continues where it stopped.
    The directory is locked (lth.core.lock) for the run: a second run into it is refused.
    """
    settings.validate()
    check_data(settings, splits.input_shape, splits.num_classes, len(splits.train_x))
    Step.parse(checkpoint_every)
    layout = RunLayout(out)
    with RunLock(layout.root):
        check_settings_file(layout, settings)
        return _run_rounds(settings, rounds, layout, splits, reporter or SilentReporter(), trainer, checkpoint_every)


def _run_rounds(settings: RunSettings, rounds: int, layout: RunLayout, splits, reporter: Reporter, trainer: Trainer,
                checkpoint_every: str) -> list[dict]:
    fingerprint = settings.fingerprint()
    shape = Shape(splits.input_shape, splits.num_classes)
    kinds, shapes = describe_model(settings, shape)
    mask_shapes = {name: shapes[name] for name in kinds}
    load_state = lambda p: artifacts.load_tensors(p, "weights", settings.model, shapes, fingerprint)  # noqa: E731
    load_mask = lambda p: artifacts.load_tensors(p, "mask", settings.model, mask_shapes, fingerprint)  # noqa: E731
    save = lambda p, kind, tensors, **meta: artifacts.save_tensors(  # noqa: E731
        p, kind, settings.model, tensors, settings=fingerprint, **meta)
    trials = range(settings.trials)

    for t in trials:
        if not layout.init(t).exists():
            init, _ = initial_state(settings.for_trial(t), shape)
            save(layout.init(t), "weights", init)
    inits = [load_state(layout.init(t)) for t in trials]
    k = rewind_iteration(settings, len(splits.train_x))

    records: list[dict] = []
    for r in range(rounds):
        if layout.round_metrics(r).exists():
            record = artifacts.read_json(layout.round_metrics(r))
            records.append(record)
            reporter.round_finished(record, skipped=True)
            continue
        interrupt.check(f"before round {r}: rounds 0-{r - 1} are finished and saved" if r else "before round 0")
        rewind_points = [load_state(layout.rewind(t)) if (k > 0 and r > 0) else inits[t] for t in trials]
        previous_finals: list[Optional[State]] = []
        for t in trials:
            trial_settings = settings.for_trial(t)
            if r == 0:
                mask = {name: torch.ones(s, dtype=torch.bool) for name, s in mask_shapes.items()}
                start, previous_final = inits[t], None
            else:
                previous_mask = load_mask(layout.mask(t, r - 1))
                previous_final = load_state(layout.final(t, r - 1))
                needs_start = get_criterion(settings.criterion).gradient_at == "start"
                scores = score_round(trial_settings, inits[t], previous_final, previous_mask, r - 1,
                                     start=load_state(layout.start(t, r - 1)) if needs_start else None, splits=splits)
                mask = mask_round(trial_settings, scores, previous_mask, kinds, r)
                start = rewind_round(trial_settings, shape, r, rewind_points[t], inits[t], previous_final, mask)
            save(layout.mask(t, r), "mask", mask, round=r)
            save(layout.start(t, r), "weights", start, round=r)
            previous_finals.append(previous_final)
        tickets = [(load_state(layout.start(t, r)), load_mask(layout.mask(t, r))) for t in trials]
        networks = round_networks(settings, shape, r, tickets, inits, rewind_points, previous_finals)
        reporter.round_started(r, remaining_percent(tickets[0][1]), len(networks))
        checkpoint = Checkpoint(layout.checkpoint, checkpoint_every, {"settings": fingerprint, "round": r})
        results, record = trainer(settings, splits, networks, r, progress=reporter.progress, checkpoint=checkpoint)
        for net, result in zip(networks, results):
            if net.arm != TICKET:
                continue
            if result.rewind_state is not None:
                save(layout.rewind(net.trial), "weights", result.rewind_state, iteration=k)
            save(layout.final(net.trial, r), "weights", result.state, round=r)
        for t in trials:  # each trial's round directory also gets its own networks' metrics
            own = [n for n in record["networks"] if n["trial"] == t]
            artifacts.write_json(layout.trial_metrics(t, r), {"round": r, "trial": t, "networks": own})
        artifacts.write_json(layout.round_metrics(r), record)  # written last: marks the round finished
        checkpoint.clear()
        records.append(record)
        reporter.round_finished(record, skipped=False)
    write_summary(layout, records)
    return records
