"""Pruning at initialization, trained: a method's mask at θ0 (lth.pruning.at_init) trained beside its sanity
controls, with the run's own training settings, recorded as a round is (weights remaining overall and per
layer, accuracy at the end and at early stop, learning curve), so it sits next to IMP's tickets.

Arms are named as the round's: `ticket` (the method's mask on θ0), and the controls `shuffle`, `reinit`,
`invert`. A layer the method empties is a result, not a crash: it is listed under `collapsed_layers`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from lth.core.errors import LthError
from lth.core.seeds import derive_seed
from lth.runs.settings import RunSettings


def prune_and_train(settings: RunSettings, splits, method: str, remaining: float, controls: Sequence[str] = (),
                    synflow_rounds: int = 100, progress=None) -> dict:
    """Every trial's θ0 pruned by `method` to `remaining`, trained beside its controls; a round-like record."""
    from lth.core.masks import apply_mask, remaining_fraction
    from lth.runs.records import TICKET, round_record
    from lth.models import build_model
    from lth.models.layers import prunable_layers
    from lth.tasks import get_task
    from lth.pruning.at_init import ScoringInputs, check_choices, collapsed_layers, control_mask, prune_at_init
    from lth.training.trainer import Network, TrainJob, train_networks

    check_choices(method, list(controls))
    if len(set(controls)) != len(controls):
        raise LthError(f"bad controls {list(controls)}: each control may appear once")
    networks, collapsed = [], {}
    for trial in range(settings.trials):
        seed = settings.for_trial(trial).seed
        model = build_model(settings.model, splits.input_shape, splits.num_outputs, seed)
        theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
        kinds = prunable_layers(model)
        inputs = ScoringInputs(settings.model, theta0, kinds, splits, settings.train.batch_size,
                               derive_seed(seed, "at-init-data"))
        mask, scores = prune_at_init(method, inputs, remaining, synflow_rounds)
        networks.append(Network(trial, TICKET, seed, apply_mask(theta0, mask), mask))
        collapsed[f"{trial}/{TICKET}"] = collapsed_layers(mask)
        for control in controls:
            start = theta0
            if control == "reinit":
                fresh = build_model(settings.model, splits.input_shape, splits.num_outputs,
                                    derive_seed(seed, "at-init-reinit"))
                start = {k: v.detach().clone() for k, v in fresh.state_dict().items()}
            arm_mask = control_mask(control, mask, scores, seed)
            networks.append(Network(trial, control, seed, apply_mask(start, arm_mask), arm_mask))
            collapsed[f"{trial}/{control}"] = collapsed_layers(arm_mask)
    results = train_networks(TrainJob(settings.model, settings.train), splits, networks, progress=progress)
    from lth.pruning.effective import chain_of

    chain = chain_of(settings.model, splits.input_shape, splits.num_outputs)
    record = round_record(0, networks, results, get_task(splits.task), chain=chain)
    del record["round"]
    return {"method": method, "target_weights_remaining": round(remaining, 6),
            "weights_remaining": round(remaining_fraction(networks[0].mask), 6),
            "collapsed_layers": {k: v for k, v in collapsed.items() if v}, **record}


def target_label(fraction: float) -> str:
    """'10%': how a target is named in a headline (a key a person reads in `dvc metrics show`)."""
    return f"{100 * fraction:g}%"


def emptied_layers(result: dict) -> list[str]:
    """The layers the method emptied in any network of a result (its `collapsed_layers`, per trial and arm)."""
    return sorted({layer for layers in result["collapsed_layers"].values() for layer in layers})


def headline(results: Sequence[dict]) -> dict:
    """Per target ("10%"), the weights remaining and each arm's test headline metric at early stop (mean over
    trials; `ticket_early_stop_test_acc`): what `dvc metrics show/diff` can display (it does not look inside the
    `results` list)."""
    from statistics import fmean

    from lth.runs.records import headline as judged_by, task_of

    out = {}
    for result in results:
        key = judged_by(task_of(result))
        arms = dict.fromkeys(n["arm"] for n in result["networks"])
        out[target_label(result["target_weights_remaining"])] = {
            "weights_remaining": result["weights_remaining"],
            **{f"{arm}_{key}": round(fmean(n[key] for n in result["networks"] if n["arm"] == arm), 6) for arm in arms},
            "emptied_layers": len(emptied_layers(result))}
    return out


def results_file(method: str, results: Sequence[dict], identity: Optional[dict] = None) -> dict:
    """The content of metrics/prune_at_init/METHOD.json, the same under both roots: the headline first, then
    every network's record; a CLI run also records its settings (`run`), so a rerun knows what it may keep."""
    ordered = sorted(results, key=lambda r: -r["target_weights_remaining"])
    return {"method": method, "headline": headline(ordered), "results": ordered,
            **({"run": identity} if identity is not None else {})}


def results_table(results: Sequence[dict]):
    """A rich table, a row per method and target: the test headline metric at early stop of the method's mask
    and of each control (mean over trials), and the layers the method emptied."""
    from statistics import fmean

    from rich.table import Table

    from lth.runs.records import TICKET, headline as judged_by, task_of

    metric = task_of(results[0]).headline
    key = judged_by(task_of(results[0]))
    arms = list(dict.fromkeys(n["arm"] for result in results for n in result["networks"] if n["arm"] != TICKET))
    table = Table(title=f"Pruning at init: test {metric.label}{f' {metric.unit}' if metric.unit else ''} at early stop")
    table.add_column("method")
    table.add_column("% weights", justify="right")
    for arm in ("mask", *arms):
        table.add_column(arm, justify="right")
    table.add_column("emptied layers", overflow="fold")
    for result in results:
        row = [result["method"], f"{100 * result['weights_remaining']:.2f}"]
        for arm in (TICKET, *arms):
            values = [n[key] for n in result["networks"] if n["arm"] == arm]
            row.append(metric.show(fmean(values)) if values else "")
        emptied = emptied_layers(result)
        table.add_row(*row, ", ".join(emptied) or "-")
    return table


def run_methods(settings: RunSettings, splits, methods: Sequence[str], remaining: Sequence[float],
                controls: Sequence[str], synflow_rounds: int, out: Path, reporter=None, force: bool = False
                ) -> list[dict]:
    """Each method at each target, into OUT/metrics/prune_at_init/<method>.json as each finishes.

    Idempotent like find-ticket: a rerun with the same settings keeps what is saved and trains only what is
    missing. A file made with other settings is never replaced silently: the run refuses before training,
    naming what differs, unless `force` (then it is replaced once a new result is ready)."""
    from lth.core import files
    from lth.core.config import differences, plain
    from lth.runs.layout import Layout
    from lth.runs.records import upgrade_at_init

    identity = {"settings": plain(settings.to_dict()), "controls": list(controls), "synflow_rounds": synflow_rounds}
    layout, everything = Layout(out), []
    saved = {m: files.read_json(layout.at_init_metrics(m)) if layout.at_init_metrics(m).is_file() else {}
             for m in methods}
    for method in methods:
        made_with = saved[method].get("run")
        if saved[method] and made_with != identity and not force:
            diffs = "; ".join(differences(made_with, identity)) if isinstance(made_with, dict) else "not recorded"
            raise LthError(f"{layout.at_init_metrics(method)} holds results made with other settings ({diffs}): "
                           "give another --out, or --force to replace them")
    for method in methods:
        path = layout.at_init_metrics(method)
        done = ({r["target_weights_remaining"]: r for r in map(upgrade_at_init, saved[method].get("results", []))}
                if saved[method].get("run") == identity else {})
        for fraction in remaining:
            target = round(fraction, 6)
            if target in done:
                continue
            if reporter is not None:
                reporter.begin(f"{method} {target_label(target)}")
            done[target] = prune_and_train(settings, splits, method, fraction, controls, synflow_rounds,
                                           progress=reporter.progress if reporter is not None else None)
            files.write_json(path, results_file(method, list(done.values()), identity))
        everything += [done[round(f, 6)] for f in remaining]
    return everything


def stage_result(run, method: str) -> dict:  # noqa: ANN001 - lth.runs.run.Run of the workspace
    """The DVC stage `prune_at_init@METHOD`: the workspace's settings and data, params.yaml `prune_at_init`."""
    from lth.experiments.common import method_group
    from lth.pruning.at_init import load_settings, parse_remaining

    exp = method_group(run, "prune_at_init", load_settings, method)
    result = prune_and_train(run.settings, run.data(), method, parse_remaining(exp.remaining), exp.controls,
                             exp.synflow_rounds)
    return results_file(method, [result])
