"""`python -m lth experiment ...`: the research experiments as commands (parsing and printing only).

Each command reads a finished round of a find-ticket run directory or a DVC workspace (or builds θ0
from a seed), calls its experiment module, prints a table and writes the results as JSON (atomically)
to --out. Shared console and option helpers come from lth.ui; this module never imports lth.cli.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from lth.ui import console, run_name, setting_help, training_length

app = typer.Typer(
    help="Research experiments on found tickets: transfer, combine, removal, optimizers, perturb, stability.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ROUND_HELP = "Round of the run whose ticket is used (must be finished)."
RUN_HELP = "A find-ticket run directory or a DVC workspace (the source of the ticket)."
DEVICE_HELP = setting_help("device")


def _splits(dataset: str, dataset_dir: Path, device: str, task: str = "auto"):
    from lth.datasets import load_dataset
    from lth.training.device import resolve_device

    return load_dataset(dataset, dataset_dir, task).to(resolve_device(device))


def _ticket(run_dir: Path, round_index: int, trial: int = 0):
    from lth.runs.params import round_key
    from lth.runs.run import open_results

    return open_results(run_dir).ticket(round_key(round_index), trial)


def _default_out(run_dir: Path, name: str) -> Path:
    from lth.runs.layout import Layout

    return Layout(run_dir).experiment_metrics(name)


def _claim(out: Path, made_with: dict, force: bool) -> Path:
    """`out`, once it is known not to hold a result made with other settings (checked before any training)."""
    from lth.core import files

    files.check_result(out, made_with, force)
    return out


def _save(out: Path, payload: dict, made_with: dict) -> None:
    from lth.core import files

    files.write_result(out, payload, made_with)
    console.print(f"results: {out}")


FORCE_HELP = "Replace a result at the output path made with other settings."


def _print(table) -> None:
    console.print(table)


@app.command("transfer")
def transfer(
    run_dir: Path = typer.Argument(..., help=RUN_HELP),
    dataset: str = typer.Argument(..., help="Target dataset, same input shape as the source's: another image set "
                                            "(fashion-mnist), another domain (tts-digits, speech-digits) or task "
                                            "(mnist-5k-rotation), or yours."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding (or receiving) the target dataset."),
    round: int = typer.Option(5, "--round", min=1, help=ROUND_HELP),
    rounds: Optional[str] = typer.Option(
        None, help="Several rounds at once, e.g. 2,5,9,12: the transfer curve (ticket vs re-init vs dense against "
                   "weights remaining, --trials each); replaces --round."),
    trial: int = typer.Option(0, min=0, help="Trial of the run whose ticket moves."),
    trials: int = typer.Option(2, min=1, help="With --rounds: seeds per arm on the target."),
    optimizer: Optional[str] = typer.Option(None, help=setting_help("train.optimizer", "the run's")),
    lr: Optional[float] = typer.Option(None, help="Target learning rate \\[default: the run's]."),
    momentum: Optional[float] = typer.Option(None, help="SGD momentum \\[default: the run's]."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string \\[default: the run's]."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluation cadence, a step string \\[default: the run's]."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(
        None, help="Results JSON \\[default: transfer-rNN-DATASET.json (with --rounds: transfer-curve-DATASET.json) "
                    "in RUN_DIR's metrics/experiments/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Train a ticket on another dataset, domain, task and/or optimizer; report ticket vs random re-init vs dense.
    Another task (classification -> regression) gets a fresh, dense output layer sized to its targets."""
    from lth.experiments.common import arms_table, results_only
    from lth.experiments.transfer import check_compatible, transfer as run

    length = training_length(duration, epochs, iterations)
    if rounds is not None:
        _transfer_curve(run_dir, dataset, dataset_dir, _round_list(rounds), trial, trials, optimizer, lr, momentum,
                        length, eval_every, device, out, force)
        return
    made_with = {"source": str(run_dir), "round": round, "trial": trial, "dataset": dataset, "optimizer": optimizer,
                 "lr": lr, "momentum": momentum, "duration": length, "eval_every": eval_every}
    out = _claim(out or _default_out(run_dir, run_name(f"transfer-r{round:02d}", dataset)), made_with, force)
    ticket = _ticket(run_dir, round, trial)
    check_compatible(ticket, dataset)
    results = results_only(run(ticket, dataset, _splits(dataset, dataset_dir, device), optimizer, lr, momentum,
                               length, eval_every))
    source = f"{ticket.settings.dataset}/{ticket.settings.train.optimizer}"
    _print(arms_table(f"Transfer: round {round} ticket of {source} -> {dataset}/{optimizer or ticket.settings.train.optimizer}",
                      results))
    _save(out, {"source": str(run_dir), "round": round, "trial": trial, "dataset": dataset, "optimizer": optimizer,
                "lr": lr, "results": results}, made_with)


def _round_list(text: str) -> list[int]:
    """'2,5,9,12' -> [2, 5, 9, 12]; anything else is a clear error."""
    from lth.core.errors import LthError

    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise LthError(f"bad --rounds '{text}': give round numbers separated by commas, e.g. 2,5,9,12") from None
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise LthError(f"bad --rounds '{text}': give distinct pruned rounds (1 or more), e.g. 2,5,9,12")
    return values


def _transfer_curve(run_dir: Path, dataset: str, dataset_dir: Path, rounds: list[int], trial: int, trials: int,
                    optimizer: Optional[str], lr: Optional[float], momentum: Optional[float], length: Optional[str],
                    eval_every: Optional[str], device: str, out: Optional[Path], force: bool) -> None:
    from lth.runs.params import round_key
    from lth.runs.run import open_results
    from lth.experiments.transfer import check_compatible, transfer_curve

    made_with = {"source": str(run_dir), "rounds": rounds, "trial": trial, "trials": trials, "dataset": dataset,
                 "optimizer": optimizer, "lr": lr, "momentum": momentum, "duration": length, "eval_every": eval_every}
    out = _claim(out or _default_out(run_dir, run_name("transfer-curve", dataset)), made_with, force)
    source = open_results(run_dir)
    keys = [round_key(r) for r in rounds]
    check_compatible(source.ticket(keys[0], trial), dataset)
    for key in keys[1:]:  # every round finished before anything trains
        source.ticket(key, trial)
    result = transfer_curve(source, dataset, _splits(dataset, dataset_dir, device), keys, trial, trials, optimizer,
                            lr, momentum, length, eval_every)
    _print(curve_table(result))
    _save(out, {**result, "source": {**result["source"], "run": str(run_dir)}}, made_with)


def curve_table(result: dict):
    """A rich table of a transfer curve: a row per round (and the dense network), each arm's test headline
    metric at early stop as mean ± standard deviation over the trials."""
    from rich.table import Table

    from lth.tasks import metric_named

    metric = metric_named(result["metric"])
    unit = result.get("unit")
    scale = unit["per_target"] if unit and not metric.percent and metric.name == "rmse" else 1
    key = f"early_stop_test_{metric.name}"
    label = f"test {metric.label}" + (f" ({unit['name']})" if scale != 1 else (f" {metric.unit}" if metric.unit else ""))

    def cell(arm: dict) -> str:
        mean, std = arm[key] * scale, arm[f"{key}_std"] * scale
        return f"{metric.show(mean)} ± {metric.show(std)}" if not metric.percent else \
            f"{100 * mean:.2f} ± {100 * std:.2f}"

    table = Table(title=f"Transfer curve: {result['source']['dataset']} tickets -> {result['target']} "
                        f"({result['task']}, {result['trials']} trials; {label} at early stop, mean ± std)")
    for column in ("round", "% weights", "ticket", "reinit"):
        table.add_column(column, justify="right")
    table.add_row("dense", "100.00", cell(result["dense"]), "")
    for key_round, row in result["rounds"].items():
        table.add_row(key_round, f"{100 * row['weights_remaining']:.2f}", cell(row["ticket"]), cell(row["reinit"]))
    return table


@app.command("combine")
def combine(
    run_a: Path = typer.Argument(..., help="First run directory or DVC workspace (its θ0 starts the combinations)."),
    run_b: Path = typer.Argument(..., help="Second run: same model and dataset, other seed or criterion."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding the runs' dataset."),
    round: int = typer.Option(5, "--round", min=1, help=ROUND_HELP),
    round_b: Optional[int] = typer.Option(None, min=1, help="Round of the second run \\[default: --round]."),
    how: Optional[List[str]] = typer.Option(None, help="union | intersection; repeat \\[default: both]."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string \\[default: run A's]."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluation cadence \\[default: run A's]."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, help="Results JSON \\[default: combine-rNN.json in "
                                                  "RUN_A's metrics/experiments/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Combine two tickets' masks (union, intersection), train from θ0; compare with both parents."""
    from lth.experiments.combine import combine as run
    from lth.experiments.common import arms_table, results_only

    length, hows = training_length(duration, epochs, iterations), list(how or ("union", "intersection"))
    made_with = {"run_a": str(run_a), "run_b": str(run_b), "round": round, "round_b": round_b or round, "how": hows,
                 "duration": length, "eval_every": eval_every}
    out = _claim(out or _default_out(run_a, f"combine-r{round:02d}"), made_with, force)
    parent_a, parent_b = _ticket(run_a, round), _ticket(run_b, round_b or round)
    splits = _splits(parent_a.settings.dataset, dataset_dir, device, parent_a.settings.task)
    results = results_only(run(parent_a, parent_b, splits, tuple(hows), length, eval_every))
    _print(arms_table(f"Combined tickets (round {round}; mask overlap {results['parent-a']['overlap']:.3f})", results))
    _save(out, {"run_a": str(run_a), "run_b": str(run_b), "round": round, "round_b": round_b or round,
                "results": results}, made_with)


@app.command("removal")
def removal(
    run_dir: Path = typer.Argument(..., help=RUN_HELP),
    dataset_dir: Path = typer.Argument(..., help="Directory holding the run's dataset."),
    round: int = typer.Option(5, "--round", min=1, help=ROUND_HELP + " Also the rounds of every later search."),
    trial: int = typer.Option(0, min=0, help="Trial of the run."),
    max_tickets: int = typer.Option(3, min=1, help="Stop after this many tickets."),
    margin: float = typer.Option(0.02, help="Accuracy drop below the dense network (fraction) that ends removal."),
    removed: str = typer.Option("zero", help="Removed ticket weights: zero | reinit (frozen at a fresh draw)."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string \\[default: the run's]."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluation cadence \\[default: the run's]."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, help="Results JSON \\[default: removal-rNN.json in "
                                                  "RUN_DIR's metrics/experiments/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Remove the ticket, search the remaining weights for another, repeat; count how many still match."""
    from rich.table import Table

    from lth.experiments.removal import metrics, remove_tickets
    from lth.tasks import get_task

    length = training_length(duration, epochs, iterations)
    made_with = {"source": str(run_dir), "round": round, "trial": trial, "max_tickets": max_tickets, "margin": margin,
                 "removed": removed, "duration": length, "eval_every": eval_every}
    out = _claim(out or _default_out(run_dir, f"removal-r{round:02d}"), made_with, force)
    ticket = _ticket(run_dir, round, trial)
    splits = _splits(ticket.settings.dataset, dataset_dir, device, ticket.settings.task)
    result = remove_tickets(ticket, splits, max_tickets, margin, removed, length, eval_every, log=lambda line: console.print(f"  {line}", highlight=False))
    metric = get_task(splits.task).headline
    judged = f"early_stop_test_{metric.name}"
    table = Table(title=f"Ticket removal (dense {metric.label} {metric.show(result['dense'][judged])}, margin "
                        f"{metric.show(margin)}): {result['removable']} ticket(s) removable")
    for column in ("ticket", "complement % weights", f"complement {metric.label}", "ticket % weights",
                   f"ticket {metric.label}", "matching"):
        table.add_column(column, justify="right")
    for entry in result["tickets"]:
        c, f = entry.get("complement"), entry["found"]
        table.add_row(str(entry["ticket"]), f"{100 * c['weights_remaining']:.2f}" if c else "-",
                      metric.show(c[judged]) if c else "-", f"{100 * f['weights_remaining']:.2f}",
                      metric.show(f[judged]), "yes" if entry["matching"] else "no")
    _print(table)
    _save(out, {"source": str(run_dir), "round": round, "removed": removed, "margin": margin, **metrics(result)},
          made_with)


@app.command("perturb")
def perturb(
    model: str = typer.Argument(..., help="Model name, e.g. lenet-300-100."),
    dataset: str = typer.Argument(..., help="Dataset name, e.g. mnist-5k."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding (or receiving) the dataset."),
    fraction: float = typer.Option(0.2, help="Fraction of each hidden layer's weights perturbed (and dropout p)."),
    noise: str = typer.Option("gaussian", help="gaussian | uniform | laplace."),
    scale: float = typer.Option(1.0, help="Noise std as a multiple of the layer's current weight std."),
    criterion: str = typer.Option("large_final", help="Weight-only mask criterion recomputed every epoch."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string \\[default: the model's]."),
    eval_every: str = typer.Option("1ep", help="Evaluation cadence."),
    seed: int = typer.Option(0, min=0, help="Seed of θ0, data order and noise."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, help="Results JSON \\[default: perturb-MODEL-DATASET-seedS.json "
                                                  "under runs/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Selective dropout: per-epoch masks whose removed weights get noise; vs plain training and dropout."""
    from lth.experiments.common import with_training
    from lth.experiments.perturb import PerturbSettings, perturb_experiment
    from lth.runs.settings import defaults_for, replace
    from lth.models import build_model

    settings = with_training(replace(defaults_for(model, dataset), seed=seed),
                             duration=training_length(duration, epochs, iterations), eval_every=eval_every)
    exp = PerturbSettings(fraction, noise, scale, criterion, settings.train.duration, eval_every).validate()
    made_with = {"model": model, "dataset": dataset, "seed": seed, "perturb": dict(exp.__dict__)}
    out = _claim(out or Path("runs") / f"{run_name('perturb', model, dataset, f'seed{seed}')}.json", made_with, force)
    splits = _splits(dataset, dataset_dir, device)
    init = build_model(model, splits.input_shape, splits.num_outputs, seed).state_dict()
    results = perturb_experiment(model, init, splits, settings.train, exp, seed)
    from rich.table import Table

    from lth.tasks import get_task

    metric = get_task(splits.task).headline
    table = Table(title=f"Per-epoch masks with {noise} perturbation ({fraction:g} of hidden weights, scale {scale:g})")
    for column in ("arm", f"test {metric.label} (end)", f"test {metric.label} (early stop)", "early-stop it",
                   "re-perturbed %"):
        table.add_column(column, justify="right")
    for arm, r in results.items():
        repeat = r.get("repeat_perturbed")
        table.add_row(arm, metric.show(r[f"end_test_{metric.name}"]), metric.show(r[f"early_stop_test_{metric.name}"]),
                      f"{r['early_stop_iteration']}", "-" if repeat is None else f"{100 * repeat:.1f}")
    _print(table)
    _save(out, {"model": model, "dataset": dataset, "settings": exp.__dict__, "results": results}, made_with)


@app.command("optimizers")
def optimizers(
    model: str = typer.Argument(..., help="Model name, e.g. lenet-300-100 or conv-6."),
    dataset: str = typer.Argument(..., help="Dataset name."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding (or receiving) the dataset."),
    rounds: int = typer.Option(3, min=1, help="Pruning rounds per variant after the dense round r00."),
    variant: Optional[List[str]] = typer.Option(
        None, help="radam-no-warmup | adam-no-warmup | adam-warmup | sgd-warmup | adam-rewind; repeat \\[default: all]."),
    criterion: str = typer.Option("large_final", help="Mask criterion."),
    epochs: Optional[int] = typer.Option(None, help="Training length per round in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length per round in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length per round \\[default: the model's]."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluation cadence."),
    seed: int = typer.Option(0, min=0, help="Seed (the same θ0 for every variant)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, help="Sweep directory \\[default: optimizers-MODEL-DATASET-seedS "
                                                  "under runs/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """The optimizer / warmup / rewinding sweep: one resumable find-ticket run per variant, one table."""
    from rich.table import Table

    from lth.runs.records import task_of
    from lth.experiments.common import with_training
    from lth.experiments.optimizers import pick_variants, sweep, tabulate
    from lth.runs.settings import defaults_for, replace

    base = with_training(replace(defaults_for(model, dataset), seed=seed, criterion=criterion),
                         duration=training_length(duration, epochs, iterations), eval_every=eval_every)
    chosen = pick_variants(variant)
    out = out or Path("runs") / run_name("optimizers", model, dataset, f"seed{seed}")
    made_with = {"settings": base.to_dict(), "rounds": rounds, "variants": {k: v.__dict__ for k, v in chosen.items()}}
    _claim(out / "sweep.json", made_with, force)
    records = sweep(base, chosen, rounds, out, _splits(dataset, dataset_dir, device))
    table_data = tabulate(records)
    first = next(iter(records.values()))
    metric = task_of(first[0]).headline
    table = Table(title=f"Ticket test {metric.label} at early stop per round (% weights); reset to θ0 unless "
                        "rewinding")
    table.add_column("variant")
    for record in first:
        table.add_column(f"r{record['round']:02d} ({100 * record['weights_remaining']:.1f}%)", justify="right")
    keys = [f"r{record['round']:02d}" for record in first]
    for name, row in table_data.items():
        table.add_row(name, *(metric.show(row[key][f"early_stop_test_{metric.name}"]) for key in keys))
    _print(table)
    _save(out / "sweep.json", {"variants": {k: v.__dict__ for k, v in chosen.items()}, "table": table_data}, made_with)


@app.command("stability")
def stability(
    run_dir: Path = typer.Argument(..., help=RUN_HELP),
    dataset_dir: Path = typer.Argument(..., help="Directory holding the run's dataset."),
    round: int = typer.Option(..., "--round", min=0, help=ROUND_HELP),
    trial: int = typer.Option(0, min=0, help="Trial of the run."),
    rewind: Optional[List[str]] = typer.Option(
        None, help="Rewind point k, a step string (0it, 100it, 2ep); repeat \\[default: the run's own]."),
    pair: str = typer.Option("data-order", help="data-order (SGD noise, the paper's test) | init (the contrast)."),
    points: int = typer.Option(30, help="Points on the line between the copies, both ends included (>= 3)."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string \\[default: the run's]."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluation cadence \\[default: the run's]."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    out: Optional[Path] = typer.Option(None, help="Results JSON \\[default: stability-rNN.json in RUN_DIR's "
                                                  "metrics/experiments/]."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Instability analysis: two copies of the ticket from the same rewound weights, trained with different
    data orders; the error barrier on the line between them (< 2 points: linearly connected)."""
    from rich.table import Table

    from lth.core.durations import Step
    from lth.experiments.settings import OWN, check_line
    from lth.experiments.stability import instability, stability_record
    from lth.tasks import get_task

    check_line(pair, points)
    for point in rewind or []:
        Step.parse(point)  # a bad step string is a clear error before any training
    length = training_length(duration, epochs, iterations)
    made_with = {"source": str(run_dir), "round": round, "trial": trial, "rewinds": list(rewind or [OWN]),
                 "pair": pair, "points": points, "duration": length, "eval_every": eval_every}
    out = _claim(out or _default_out(run_dir, f"stability-r{round:02d}"), made_with, force)
    ticket = _ticket(run_dir, round, trial)
    splits = _splits(ticket.settings.dataset, dataset_dir, device, ticket.settings.task)
    rewinds = instability(ticket, splits, rewind or [OWN], pair, points, length, eval_every)
    record = {"source": str(run_dir), **stability_record(ticket, round, trial, pair, rewinds, splits.task)}
    error, threshold = get_task(splits.task).error, record["threshold"]
    judged = f" (< {error.show(threshold)}: stable)" if threshold is not None else ""
    table = Table(title=f"Instability, round {round} ({100 * record['weights_remaining']:.2f}% weights), pair {pair}: "
                        f"test {error.label} barrier{f' in {error.unit}' if error.unit else ''}{judged}")
    for column in ("rewind", "barrier", f"{error.label} at ends", f"max {error.label}", "stable"):
        table.add_column(column, justify="right")
    for r in rewinds:
        line = r[f"test_{error.name}"]
        stable = "-" if threshold is None else "yes" if r["barrier"] < threshold else "no"
        table.add_row(r["rewind"], error.show(r["barrier"]), f"{error.show(line[0])} / {error.show(line[-1])}",
                      error.show(max(line)), stable)
    _print(table)
    _save(out, record, made_with)
