"""The command line: parsing and printing only; the work happens in lth.runs and friends.

Heavy modules (torch, torchvision, pandas) are imported inside the commands, so `--help` is instant.
Option help comes from the settings' declarations (lth.core.config), so it says what params.yaml says.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from lth.core.errors import LthError, unknown_choice
from lth.core.fractions import HELP as FRACTIONS, parse_fraction
from lth.datasets_cli import app as datasets_app
from lth.experiments.cli import app as experiment_app
from lth.pruning.at_init import PruneAtInitSettings
from lth.pruning.prune import GRANULARITIES, METHODS
from lth.runs.sparse_train import SparseTrainSettings
from lth.training.settings import DistributedSettings, SupermaskSettings
from lth.ui import (PAPER, Exposed, ProgressReporter, changes, console, err_console, option, registry_table, run_name,
                    training_length, values, with_parameters)

app = typer.Typer(
    help="Lottery tickets: find sparse trainable sub-networks (Frankle & Carbin; Zhou et al.). "
         "An unexpected error is one line; set LTH_DEBUG=1 to see its traceback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(experiment_app, name="experiment")
app.add_typer(datasets_app, name="datasets")


def _version(show: bool) -> None:
    if show:
        from lth import __version__

        console.print(f"lth {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                          help="Print lth's version and exit.")) -> None:
    """Lottery tickets: find sparse trainable sub-networks (Frankle & Carbin; Zhou et al.)."""


class Listing(str, Enum):
    all = "all"
    models = "models"
    datasets = "datasets"
    criteria = "criteria"
    actions = "actions"
    settings = "settings"


def _parse_rates(items: Optional[List[str]]) -> Optional[dict[str, float]]:
    """'--rate fc=0.2 --rate output=0.1' -> {'fc': 0.2, 'output': 0.1}."""
    from lth.models import LAYER_KINDS

    if not items:
        return None
    rates: dict[str, float] = {}
    for item in items:
        kind, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            rates[kind.strip()] = float(value)
        except ValueError:
            raise LthError(f"bad --rate '{item}': expected KIND=FRACTION, e.g. fc=0.2 "
                           f"(kinds: {', '.join(LAYER_KINDS)})") from None
    return rates


@app.command("exp-table")
def exp_table(
    repo: str = typer.Option(".", help="The DVC repository whose experiments to show."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV instead of a table."),
) -> None:
    """The DVC experiments side by side, narrow enough for 80 columns: the params that differ between them,
    the best ticket and the sparsest ticket still matching the dense network (test accuracy at early stop,
    % of weights), and the last round. `dvc exp show` shows everything, hundreds of columns wide."""
    from lth.report.experiments import experiment_frame

    frame = experiment_frame(repo)
    if csv:
        console.print(frame.to_csv(index=False), end="", highlight=False, soft_wrap=True)
        return
    # a param per line and the figures on one: at 80 columns no cell breaks a word ("criterion=mov / ement")
    params = [str(value).split(", ") for value in frame["params that differ"]]
    table = Table(title=f"DVC experiments of {repo}: test metric at early stop @ % weights")
    table.add_column("experiment", no_wrap=True, overflow="fold")
    table.add_column("params that differ", min_width=max(len(item) for items in params for item in items))
    for column in ("best", "sparsest\nmatching", "last round"):
        table.add_column(column, justify="right", no_wrap=True)
    for row, items in zip(frame.itertuples(index=False), params):
        table.add_row(str(row[0]), "\n".join(items), *("-" if value is None else str(value) for value in row[2:]))
    console.print(table)
    console.print("sparsest matching: the sparsest ticket that is not worse than dense beyond noise (2 standard "
                  "errors: trials' spread, at least the test set's); `lth compare A B` tells, round by round, "
                  "which differences between two experiments are beyond noise.")


@app.command("compare")
def compare(
    a: str = typer.Argument(..., help="Run A: a find-ticket run directory, a DVC workspace or a DVC experiment."),
    b: str = typer.Argument(..., help="Run B, the same kinds (it may be A itself, with --arm-b)."),
    arm_a: Optional[str] = typer.Option(None, help="Arm of A to compare (ticket, reinit, random-prune ...) "
                                                   "\\[default: every arm both runs have, each with itself]."),
    arm_b: Optional[str] = typer.Option(None, help="Arm of B to compare it with \\[default: ticket]."),
    repo: str = typer.Option(".", help="DVC repository the experiment names refer to."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV (fractions) instead of a table."),
) -> None:
    """Two runs round by round: each arm's test metric at early stop (mean over trials), B - A, its
    uncertainty (the trials' spread, at least the finite test set's), and whether it is beyond noise (more
    than 2 standard errors): what to read instead of a raw `dvc metrics diff`."""
    from lth.runs.records import task_of
    from lth.report.compare import compare_frame, compare_table
    from lth.report.sources import resolve

    run_a, run_b = resolve([a], repo)[0], resolve([b], repo)[0]
    frame = compare_frame(run_a, run_b, arm_a, arm_b)
    if csv:
        console.print(frame.to_csv(index=False), end="", highlight=False, soft_wrap=True)
        return
    console.print(compare_table(frame, task_of(run_a.records[0]).headline, a, b))
    beyond = int(frame["beyond_noise"].sum())
    console.print(f"{beyond} of {len(frame)} row(s) differ beyond noise.")


@app.command("check-params")
def check_params(path: Path = typer.Argument(Path("params.yaml"), help="The params file to check.")) -> None:
    """Check params.yaml the way every stage will, before `dvc repro`: DVC's own errors about params (such as
    'failed to resolve stages.score.foreach') name neither the file nor the expected form."""
    from lth.runs.params import load_params, read_yaml
    from lth.experiments.settings import check_experiments

    params = load_params(path)
    settings = params.settings
    rounds = len(params.rounds)
    experiments = check_experiments(read_yaml(path).get("experiments"), settings, list(params.rounds), str(path))
    console.print(f"{path} is valid: {settings.model} on {settings.dataset}, r00 + {rounds} pruning "
                  f"round{'s' if rounds != 1 else ''}, {settings.trials} trial{'s' if settings.trials != 1 else ''}"
                  + (f", controls {', '.join(settings.controls)}" if settings.controls else "")
                  + schedule_words(settings)
                  + (f"; experiments {', '.join(experiments)}" if experiments else ""), highlight=False)


def schedule_words(settings) -> str:  # noqa: ANN001 - RunSettings
    """', one shot to 5%' / ', early-bird (distance < 0.1)' when the run departs from IMP's schedule."""
    prune = settings.prune
    return ((f", one shot to {100 * prune.target:g}%" if prune.schedule == "oneshot" else "")
            + (f", early-bird (distance < {prune.early_bird_distance:g})" if prune.early_bird else ""))


# --pruning VALUE -> the settings it changes: which weights compete (lth.pruning.prune.METHODS), or what a
# pruned unit is (GRANULARITIES; structured units are ranked within each layer).
_PRUNING_OPTION: dict[str, dict[str, str]] = {
    **{method: {"prune__method": method} for method in METHODS},
    **{unit: {"pruning": unit, **({"prune__method": "layerwise"} if unit != "unstructured" else {})}
       for unit in GRANULARITIES},
}


def _pruning_changes(value: Optional[str]) -> dict[str, str]:
    if value is None:
        return {}
    if value not in _PRUNING_OPTION:
        raise unknown_choice("--pruning", value, _PRUNING_OPTION)
    return _PRUNING_OPTION[value]


# find-ticket's parameters in the order --help lists them: the declared settings it exposes (help, default and
# choices from the declarations: lth.runs.settings and the groups it holds, lth.runs.params.WorkspaceSettings) and
# the few options that are no setting.
FIND_TICKET = (
    Exposed("model", required=True),
    Exposed("dataset", required=True),
    Exposed("dataset_dir", argument=True, annotation=Path),
    Exposed("task"),
    option("rounds", Optional[int], typer.Option(None, help="Pruning rounds after the dense round r00 (>= 1): --rounds "
                                                            "20 trains r00..r20 \\[default: 20; 1 with --schedule "
                                                            "oneshot].")),
    option("epochs", Optional[int], typer.Option(None, help="Training length per round in epochs.")),
    option("iterations", Optional[int], typer.Option(None, help="Training length per round in iterations.")),
    *(Exposed(f"train.{name}", shown=PAPER) for name in ("duration", "batch_size", "lr", "optimizer", "momentum")),
    Exposed("train.nesterov"),
    Exposed("train.weight_decay", shown=PAPER),
    Exposed("train.warmup", shown=PAPER),
    Exposed("train.milestones", shown=PAPER, comma=True),
    Exposed("train.eval_every"),
    Exposed("train.precision"),
    Exposed("criterion"),
    Exposed("rewind"),
    Exposed("mask1_action", "mask1", shown="{}, or rewind when --rewind is set"),
    Exposed("mask0_action", "mask0"),
    option("pruning", Optional[str], typer.Option(
        None, help=f"One of: {' | '.join(_PRUNING_OPTION)}: which weights compete ({', '.join(METHODS)}) or what "
                   f"a pruned unit is ({', '.join(GRANULARITIES)}; structured and nm are per layer) "
                   "\\[default: the model's].")),
    Exposed("prune.nm", shown="{}"),  # given without --pruning nm, an error
    option("rate", Optional[List[str]], typer.Option(None, help="Pruning rate per round for a layer kind, "
                                                                "KIND=FRACTION; repeat.")),
    Exposed("prune.schedule"),
    Exposed("prune.target", "target_remaining", parse=parse_fraction),  # used by --schedule oneshot only
    Exposed("prune.early_bird"),
    Exposed("prune.early_bird_distance"),
    Exposed("seed"),
    Exposed("trials"),
    Exposed("controls", "control"),
    Exposed("device"),
    option("out", Optional[Path], typer.Option(None, help="Run directory "
                                                          "\\[default: MODEL-DATASET-CRITERION-seedN under runs/].")),
    option("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bar or progress lines.")),
    option("progress_every", float, typer.Option(30.0, help="Seconds between progress lines when the output is not "
                                                            "a terminal (a pipe or a log file).")),
    Exposed("checkpoint_every", note="Does not change results."),
    Exposed("mode", "distributed_mode", of=DistributedSettings, note="Under torchrun."),
)


@app.command("find-ticket")
@with_parameters(*FIND_TICKET)
def find_ticket_command(**given: Any) -> None:
    """Iterative magnitude pruning: train, prune the lowest-scored weights of each layer, rewind, repeat.

    MODEL and DATASET may be your own (README: Bring your own model and data). Re-running the same command
    continues after the last finished step.
    """
    from lth.core.durations import Step
    from lth.runs.settings import defaults_for, replace

    if given["nm"] is not None and given["pruning"] != "nm":
        raise LthError(f"--nm {given['nm']} sets the pattern of N:M pruning: add --pruning nm")
    oneshot = given["schedule"] == "oneshot"
    given["duration"] = training_length(given["duration"], given["epochs"], given["iterations"])
    given["target_remaining"] = given["target_remaining"] if oneshot else None
    change = changes(FIND_TICKET, given)
    if "mask1_action" not in change and Step.parse(given["rewind"]) != Step():
        change["mask1_action"] = "rewind"  # --rewind alone picks the rewind action
    settings = replace(defaults_for(given["model"], given["dataset"]), **change, **_pruning_changes(given["pruning"]))
    rates = _parse_rates(given["rate"])
    if rates:
        settings = replace(settings, prune__rates={**settings.prune.rates, **rates})
    settings.validate()
    out = given["out"] or Path("runs") / run_name(settings.model, settings.dataset, settings.criterion,
                                                  f"seed{settings.seed}")
    Step.parse(given["checkpoint_every"])
    rounds = given["rounds"] if given["rounds"] is not None else (1 if oneshot else 20)
    if rounds < 1:
        raise LthError(f"bad --rounds {rounds}: the number of pruning rounds after the dense round r00 must be >= 1")
    if oneshot and rounds != 1:
        raise LthError(f"bad --rounds {rounds}: the one-shot schedule prunes once (r01); leave --rounds out")
    _run_find_ticket(settings, rounds, given["dataset_dir"], given["device"], out, given["quiet"],
                     given["distributed_mode"], given["checkpoint_every"], given["progress_every"])


def _run_find_ticket(settings, rounds: int, dataset_dir: Path, device: str, out: Path, quiet: bool,
                     distributed_mode: str, checkpoint_every: str, progress_every: float) -> None:
    from lth.datasets import load_dataset
    from lth.training.distributed import session

    # under torchrun (RANK / WORLD_SIZE set) rank 0 runs the rounds below and the other ranks follow
    with session(device, distributed_mode) as processes:
        processes.check(settings.train)
        splits = processes.prepare(lambda: load_dataset(settings.dataset, dataset_dir, settings.task)
                                   .to(processes.device))
        if processes.leader:
            _lead_find_ticket(settings, rounds, splits, processes, out, quiet, checkpoint_every, progress_every)
        else:
            processes.follow(splits)


def _lead_find_ticket(settings, rounds: int, splits, processes, out: Path, quiet: bool, checkpoint_every: str,
                      progress_every: float) -> None:
    from lth.runs.layout import Layout
    from lth.core.interrupt import graceful_stop
    from lth.steps.rounds import run_rounds

    from rich.markup import escape

    torch_device = processes.device
    console.print(
        f"[bold]{escape(settings.model)}[/] on [bold]{escape(settings.dataset)}[/] ({splits.task}, "
        f"{len(splits.train_x)} train / {len(splits.val_x)} val / {len(splits.test_x)} test), "
        f"{settings.train.optimizer} lr {settings.train.lr}, "
        f"batch {settings.train.batch_size}, {settings.train.duration} per round, criterion {settings.criterion}, "
        f"r00 + {rounds} pruning round{'s' if rounds != 1 else ''} on {torch_device}"
        + (f", {settings.train.precision}" if settings.train.precision != "fp32" else "")
        + (f", {settings.trials} trials" if settings.trials > 1 else "")
        + (f", controls {', '.join(settings.controls)}" if settings.controls else "")
        + schedule_words(settings)
        + (f", {processes.size} processes ({processes.mode})" if processes.size > 1 else "")
        + f" -> {out}"
    )
    with graceful_stop(), ProgressReporter(quiet, progress_every) as reporter:  # Ctrl-C / SIGTERM: save, then exit 130
        records = run_rounds(settings, rounds, out, splits, reporter, trainer=processes.train_networks,
                      checkpoint_every=checkpoint_every)
    console.print(summary_table(records))
    console.print(compute_line(records))
    console.print(f"every network: {Layout(out).networks_table}")


def compute_line(records: list[dict]) -> str:
    """The training spent to reach the last round's ticket (trial 0; controls excluded)."""
    from lth.runs.records import compute_to_ticket

    rows = [row for row in compute_to_ticket(records) if row["trial"] == 0]
    last = rows[-1]
    seconds = f", {last['to_ticket_seconds']:.0f} s" if last["to_ticket_seconds"] is not None else ""
    stops = sum(row["stopped_early"] for row in rows)
    early = f"; {stops} round{'s' if stops != 1 else ''} stopped early (early-bird)" if stops else ""
    return (f"compute to the r{last['round']:02d} ticket: {last['to_ticket_iterations']:,} training steps{seconds} "
            f"({last['total_iterations']:,} with its own training){early}")


def summary_table(records: list[dict]) -> Table:
    """Round, % weights, the ticket's test headline metric (accuracy %, RMSE ...; mean [min-max] over trials) and
    each control's."""
    from lth.runs.records import TICKET, headline
    from lth.steps.summary import arm_stats, arms, records_task

    task = records_task(records)
    metric, early, end = task.headline, headline(task), headline(task, "end")
    controls = arms(records)[1:]
    trials = max((arm_stats(r, TICKET)["trials"] for r in records), default=1)
    span = lambda s: f" [{metric.show(s[early + '_min'])}-{metric.show(s[early + '_max'])}]" if trials > 1 else ""  # noqa: E731
    # headers broken into short lines: the table stays narrow enough for 80 columns without cutting a name
    table = Table(title=f"Lottery ticket rounds: test {metric.label}{f' {metric.unit}' if metric.unit else ''}, "
                        "at early stop but for (end)" + (f", mean over {trials} trials" if trials > 1 else ""))
    columns = ["round", "%\nweights", "ticket\n(end)", "ticket", "early-stop\nit", *controls]
    for column in columns:
        table.add_column(column, justify="right")
    for record in records:
        t = arm_stats(record, TICKET)
        row = [str(record["round"]), f"{100 * record['weights_remaining']:.1f}", metric.show(t[end]),
               f"{metric.show(t[early])}{span(t)}", f"{t['early_stop_iteration']:.0f}"]
        for control in controls:
            c = arm_stats(record, control)
            row.append(metric.show(c[early]) if c else "-")
        table.add_row(*row)
    return table


# sparse-train's parameters: the networks and their mask-update schedule (params.yaml's sparse_train:
# lth.runs.sparse_train.SparseTrainSettings), the run's model, data and training (RunSettings), and what is no setting.
SPARSE_TRAIN = (
    Exposed("model", required=True),
    Exposed("dataset", required=True),
    Exposed("dataset_dir", argument=True, annotation=Path),
    Exposed("methods", "method", of=SparseTrainSettings),
    Exposed("distributions", "distribution", of=SparseTrainSettings),
    Exposed("remaining", of=SparseTrainSettings),
    Exposed("nm", of=SparseTrainSettings),
    Exposed("trials", of=SparseTrainSettings, min=1),
    Exposed("update_every", of=SparseTrainSettings, min=1),
    Exposed("drop_fraction", of=SparseTrainSettings),
    Exposed("stop_fraction", of=SparseTrainSettings),
    option("epochs", Optional[int], typer.Option(None, help="Training length in epochs \\[default: the model's].")),
    option("iterations", Optional[int], typer.Option(None, help="Training length in iterations.")),
    Exposed("train.duration", shown=PAPER),
    Exposed("train.eval_every"),
    Exposed("seed"),
    Exposed("device"),
    # not the workspace's checkpoint_every (2000it): a sparse-train run saves its state only when interrupted
    option("checkpoint_every", str, typer.Option("0it", help="Save the training state this often (a step string; "
                                                             "0it: only when interrupted), so a rerun resumes it.")),
    option("out", Path, typer.Option(Path("runs/sparse-train.json"), help="Results JSON (a summary and one entry per "
                                     "network); OUT's .details.json and .masks.pt beside it hold update histories, "
                                     "curves and final masks.")),
    option("force", bool, typer.Option(False, "--force", help="Replace a result at --out made with other settings.")),
)


@app.command("sparse-train")
@with_parameters(*SPARSE_TRAIN)
def sparse_train(**given: Any) -> None:
    """Train sparse networks from scratch (static masks, SET, RigL) at a fraction of the weights, with a uniform
    or Erdős–Rényi-Kernel layer-wise allocation (or N:M masks): the other half of the field, beside the tickets.
    Interrupted (Ctrl-C), the same command resumes where it stopped. Under torchrun the processes share every
    network's batches, and their mask updates are checked to agree."""
    from lth.core import files
    from lth.core.config import build
    from lth.datasets import load_dataset
    from lth.runs.settings import RunSettings, defaults_for
    from lth.experiments.sparse_train import made_with, run_settings, train_and_save
    from lth.runs.sparse_train import load_settings
    from lth.tasks import get_task
    from lth.training.distributed import session

    model, dataset, out, force = given["model"], given["dataset"], given["out"], given["force"]
    exp = load_settings(values(SPARSE_TRAIN, given, SparseTrainSettings), "sparse-train")
    length = training_length(given["duration"], given["epochs"], given["iterations"])
    train = {"eval_every": given["eval_every"], **({"duration": length} if length is not None else {})}
    settings = build(RunSettings, {"model": model, "dataset": dataset, "seed": given["seed"], "train": train},
                     "sparse-train", defaults_for(model, dataset)).validate()
    identity = made_with(run_settings(settings, exp), exp, exp.methods)
    files.check_result(out, identity, force)
    stem = out.with_suffix("")
    # under torchrun (RANK / WORLD_SIZE set) rank 0 leads and the other ranks train beside it (data-parallel)
    with session(given["device"], "data") as processes:
        processes.check(settings.train)
        splits = processes.prepare(lambda: load_dataset(dataset, given["dataset_dir"], settings.task)
                                         .to(processes.device))
        if not processes.leader:
            processes.follow(splits)
            return
        if out.is_file() and not force and files.read_json(out).get("made_with") == identity:
            result = files.read_json(out)  # finished before with these settings: nothing to train
        else:
            result = train_and_save(settings, splits, exp, exp.methods, out, Path(f"{stem}.details.json"),
                                    Path(f"{stem}.masks.pt"), Path(f"{stem}.checkpoint.pt"), given["checkpoint_every"],
                                    session=processes if processes.size > 1 else None)
    metric = get_task(splits.task).headline
    table = Table(title=f"Sparse training from scratch: {model} on {dataset}, test {metric.name} at early stop "
                        f"(mean ± std over trials)")
    for column in ("% weights", "% effective", "distribution", "method", "trials", "test (early stop)", "updates"):
        table.add_column(column, justify="right")
    updates = {(e["target_remaining"], e["distribution"], e["method"]): e["updates"] for e in result["networks"]}
    for row in result["summary"]:
        key = f"early_stop_test_{metric.name}"
        effective = row["effective_remaining"]
        table.add_row(f"{100 * row['weights_remaining']:.2f}",
                      "-" if effective is None else f"{100 * effective:.2f}", row["distribution"], row["method"],
                      str(row["trials"]), f"{metric.show(row[key])} ± {metric.show(row[key + '_std'])}",
                      str(updates[(row["target_remaining"], row["distribution"], row["method"])]))
    console.print(table)
    console.print(f"results: {out}")


@app.command("effective-sparsity")
def effective_sparsity(
    run_dir: Path = typer.Argument(..., help="A find-ticket run directory or a DVC workspace."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV (fractions; a row per round, trial and layer)."),
) -> None:
    """Weights remaining vs *effective* weights remaining (Vysogorets & Kempe 2021) of every finished round's
    ticket: kept weights that lie on no input-to-output path (a neuron or channel cut off on one side) do not
    count; and the disconnected units of each hidden layer. Chains of Linear/Conv layers only."""
    import pandas as pd

    from lth.runs.params import round_index
    from lth.runs.run import open_results
    from lth.pruning.effective import effective_masks, model_chain

    run = open_results(run_dir)
    chain = model_chain(run.template)
    rows = []
    for key in run.finished_rounds():
        for trial in run.trials:
            found = effective_masks(run.ticket(key, trial).mask, chain)
            for name in chain:
                rows.append({"round": round_index(key), "trial": trial, "layer": name, "total": found.total[name],
                             "kept": found.kept[name], "effective": found.effective[name],
                             "disconnected_units": found.disconnected_units[name]})
    frame = pd.DataFrame(rows)
    if csv:
        console.print(frame.to_csv(index=False), end="", highlight=False, soft_wrap=True)
        return
    table = Table(title=f"Effective sparsity of {run_dir} (mean over trials): kept weights on an input-to-output "
                        "path; units cut off")
    for column in ("round", "% weights", "% effective", *(f"cut off\n{n.rsplit('.', 1)[0]}" for n in chain[:-1])):
        table.add_column(column, justify="right")
    for r, group in frame.groupby("round"):
        per_trial = group.groupby("trial")[["total", "kept", "effective"]].sum()
        cut = group.groupby("layer")["disconnected_units"].mean()
        table.add_row(f"r{r:02d}", f"{100 * (per_trial.kept / per_trial.total).mean():.2f}",
                      f"{100 * (per_trial.effective / per_trial.total).mean():.2f}",
                      *(f"{cut[n]:.1f}".rstrip("0").rstrip(".") for n in chain[:-1]))
    console.print(table)


@app.command("compact")
def compact(
    root: Path = typer.Argument(..., help="A find-ticket run directory or a DVC workspace."),
    round: Optional[List[int]] = typer.Option(None, "--round", help="Only this finished round; repeat "
                                                                     "\\[default: every finished round]."),
    trial: Optional[List[int]] = typer.Option(None, help="Only this trial; repeat \\[default: every trial]."),
    dataset_dir: Optional[Path] = typer.Option(
        None, help="Dataset directory: check outputs and accuracy on the test set \\[default: a random batch]."
    ),
    benchmark: bool = typer.Option(False, "--benchmark/--no-benchmark",
                                   help="Measure CPU latency (1 sample) and throughput of dense vs compact."),
    batch_size: int = typer.Option(256, min=1, help="Batch size of the throughput measurement."),
    threads: int = typer.Option(1, min=1, help="CPU threads while timing (1: stable on a shared machine)."),
    nm: bool = typer.Option(False, "--nm", help="Instead: check that a --pruning nm ticket is 2:4 in every pruned "
                                                "layer (default round: the last finished) and, on a CUDA GPU, time it "
                                                "as torch semi-structured sparse (fp16, --batch-size) against the "
                                                "dense masked network."),
) -> None:
    """Cut dead neurons/channels out of tickets: a smaller dense network (torch.export .pt2) per round.

    Writes ROOT/data/compact/rNN/trial-T.pt2 and .json (params, MACs, file size, output check[, CPU speed])
    and ROOT/metrics/compact.json; load a network with torch.export.load(path).module().
    """
    from lth.compact.runner import compact_rounds

    if nm:
        _compact_nm(root, round, trial, batch_size)
        return
    dense, rows = compact_rounds(root, round, trial, dataset_dir, benchmark, batch_size, threads)
    console.print(compact_table(dense, rows))
    if benchmark:
        console.print(speed_table(rows))


def _compact_nm(root: Path, rounds: Optional[List[int]], trials: Optional[List[int]], batch_size: int) -> None:
    """`lth compact --nm`: the 2:4 check, and on a CUDA GPU dense vs semi-structured inference time."""
    from lth.compact.semi_structured import NO_GPU, nm_rounds

    rows = nm_rounds(root, rounds, trials, batch_size)
    if not rows[0]["cuda"]:
        for row in rows:
            console.print(f"r{row['round']:02d} trial {row['trial']}: at most 2 of every 4 consecutive inputs kept in "
                          f"{', '.join(row['layers'])}", highlight=False)
        console.print(NO_GPU, highlight=False)
        return
    table = Table(title="2:4 semi-structured vs dense masked network (fp16, CUDA, median of 30)")
    for column in ("trial", "round", "batch", "ms dense", "ms 2:4", "speed-up", "2:4 layers"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        timed = "speedup" in row
        table.add_row(str(row["trial"]), str(row["round"]), str(row["batch_size"]),
                      f"{row['dense_ms']:.3f}" if timed else "-", f"{row['sparse_ms']:.3f}" if timed else "-",
                      f"{row['speedup']:.2f}x" if timed else "-", str(len(row["converted"])))
    console.print(table)
    for row in rows:
        where = f"r{row['round']:02d} trial {row['trial']}"
        if "reason" in row:
            console.print(f"{where}: no speed-up: {row['reason']}", highlight=False, markup=False)
        for name, reason in (row["skipped"].items() if row["converted"] else ()):  # else: all in the reason
            console.print(f"{where}: {name} stays dense: {reason}", highlight=False, markup=False)


def compact_table(dense: dict, rows: list[dict]) -> Table:
    """Per round: the test headline metric, weights, and what compaction buys in parameters, MACs and file size."""
    from lth.tasks import metric_named

    key = next((k for row in rows for k in row if k.startswith("end_test_")), "end_test_acc")
    metric = metric_named(key.rsplit("_", 1)[-1])
    table = Table(title=f"Compacted tickets (dense: {dense['params']:,} params, {dense['macs']:,} MACs, "
                        f"{dense['file_bytes'] / 1024:.0f} KiB)")
    for column in ("trial", "round", "% weights", f"test {metric.name}", "params", "% dense", "MACs %", "KiB"):
        table.add_column(column, justify="right", no_wrap=True)  # numbers stay whole; the title folds
    for row in rows:
        value = row["check"].get("compact", {}).get(key, row.get(key))
        table.add_row(str(row["trial"]), str(row["round"]), f"{100 * row.get('weights_remaining', float('nan')):.1f}",
                      metric.show(value), f"{row['params']['compact']:,}",
                      f"{100 * row['params']['compact'] / row['params']['dense']:.1f}",
                      f"{100 * row['macs']['compact'] / row['macs']['dense']:.1f}",
                      f"{row['file_bytes']['compact'] / 1024:.0f}")
    return table


def speed_table(rows: list[dict]) -> Table:
    """Per round (`--benchmark`): CPU latency of one sample and throughput, dense vs compact."""
    table = Table(title="CPU speed, dense vs compact")
    for column in ("trial", "round", "ms dense", "ms", "/s dense", "/s", "speedup"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        d, c = row["cpu"]["dense"], row["cpu"]["compact"]
        table.add_row(str(row["trial"]), str(row["round"]), f"{d['latency_ms']:.3f}", f"{c['latency_ms']:.3f}",
                      f"{d['throughput']:,.0f}", f"{c['throughput']:,.0f}", f"{d['latency_ms'] / c['latency_ms']:.2f}x")
    return table


# learn-supermask's parameters: how the mask is learned (lth.training.settings.SupermaskSettings), the model and
# data (RunSettings, WorkspaceSettings), and what is no setting.
LEARN_SUPERMASK = (
    Exposed("model", required=True),
    Exposed("dataset", required=True),
    Exposed("dataset_dir", argument=True, annotation=Path),
    Exposed("task"),
    *(Exposed(name, of=SupermaskSettings) for name in ("weights", "lr", "batch_size")),
    option("epochs", Optional[int], typer.Option(None, help="Training length in epochs.")),
    option("iterations", Optional[int], typer.Option(None, help="Training length in iterations.")),
    Exposed("duration", of=SupermaskSettings, shown="{}"),  # or --epochs / --iterations
    *(Exposed(name, of=SupermaskSettings) for name in ("init_prob", "rescale", "eval_every")),
    option("seed", int, typer.Option(0, min=0, help="Seed of θ0, data order and mask sampling.")),
    Exposed("device"),
    option("out", Optional[Path], typer.Option(None, help="Output directory \\[default: a folder of runs/ named by "
                                                          "model, dataset and seed].")),
    option("force", bool, typer.Option(False, "--force", help="Replace a result in --out made with other settings.")),
)


@app.command("learn-supermask")
@with_parameters(*LEARN_SUPERMASK)
def learn_supermask(**given: Any) -> None:
    """Learn a supermask: weights frozen at θ0 (or signed constant), a Bernoulli mask trained by straight-through."""
    from lth.core import files
    from lth.datasets import load_dataset
    from lth.models import get_model_spec
    from lth.tasks import get_task
    from lth.training.device import resolve_device
    from lth.training.supermask import learn_supermask as learn

    model, dataset, seed, out = given["model"], given["dataset"], given["seed"], given["out"]
    get_model_spec(model)
    given["duration"] = training_length(given["duration"], given["epochs"], given["iterations"])
    settings = SupermaskSettings(**values(LEARN_SUPERMASK, given, SupermaskSettings)).validate()
    splits = load_dataset(dataset, given["dataset_dir"], given["task"]).to(resolve_device(given["device"]))
    out = out or Path("runs") / run_name("supermask", model, dataset, f"seed{seed}")
    made_with = {"model": model, "dataset": dataset, "task": splits.task, "seed": seed, "supermask": settings}
    files.check_result(out / "supermask.json", made_with, given["force"])
    with ProgressReporter(False) as reporter:
        reporter.begin(f"supermask ({settings.weights})")
        result = learn(model, splits, settings, seed, progress=reporter.progress)
    files.save_tensors(out / "mask.pt", "mask", model, result["mask"])
    files.write_result(out / "supermask.json", {**result["metrics"], "curve": result["curve"]}, made_with)
    m = result["metrics"]
    metric = get_task(m["task"]).headline
    table = Table(title=f"Learned supermask ({settings.weights} weights)")
    for column in (f"test {metric.name} (sampled mask)", f"test {metric.name} (p > 0.5)", "% weights (expected)",
                   "% weights (p > 0.5)"):
        table.add_column(column, justify="right")
    table.add_row(metric.show(m[f"end_test_{metric.name}_sampled"]), metric.show(m[f"end_test_{metric.name}_thresholded"]),
                  f"{100 * m['expected_weights_remaining']:.1f}", f"{100 * m['weights_remaining']:.1f}")
    console.print(table)
    console.print(f"mask and metrics: {out}")


# prune-at-init's parameters: the methods, their controls and SynFlow's rounds (params.yaml's prune_at_init:
# lth.pruning.at_init.PruneAtInitSettings), the run's settings (RunSettings), and what is no setting. --remaining
# takes several fractions where params.yaml's prune_at_init.remaining is one: its default is the declared one.
PRUNE_AT_INIT = (
    Exposed("model", required=True),
    Exposed("dataset", required=True),
    Exposed("dataset_dir", argument=True, annotation=Path),
    Exposed("task"),
    Exposed("methods", "method", of=PruneAtInitSettings),
    option("remaining", Optional[List[str]], typer.Option(None, help=f"Weights kept: {FRACTIONS}; repeat for several "
                                                                     f"\\[default: {PruneAtInitSettings.remaining}].")),
    Exposed("controls", "control", of=PruneAtInitSettings, note="none: no control."),
    Exposed("synflow_rounds", of=PruneAtInitSettings),
    Exposed("trials"),
    option("epochs", Optional[int], typer.Option(None, help="Training length in epochs.")),
    option("iterations", Optional[int], typer.Option(None, help="Training length in iterations.")),
    Exposed("train.duration", shown=PAPER),
    Exposed("seed"),
    Exposed("device"),
    option("out", Optional[Path], typer.Option(None, help="Output directory: results in OUT/metrics/prune_at_init/"
                                                          "METHOD.json \\[default: a folder of runs/ named by model, "
                                                          "dataset and seed].")),
    option("quiet", bool, typer.Option(False, "--quiet", "-q", help="No progress bar or progress lines.")),
    option("force", bool, typer.Option(False, "--force", help="Replace results in --out made with other settings.")),
)


@app.command("prune-at-init")
@with_parameters(*PRUNE_AT_INIT)
def prune_at_init(**given: Any) -> None:
    """Prune θ0 in one shot (SNIP, GraSP, SynFlow, magnitude, random), then train it beside its sanity controls.

    Re-running the same command keeps finished results. Compare with IMP: lth report IMP_RUN OUT.
    """
    from lth.datasets import load_dataset
    from lth.runs.settings import defaults_for, replace
    from lth.experiments.prune_at_init import results_table, run_methods
    from lth.training.device import resolve_device

    model, dataset, out = given["model"], given["dataset"], given["out"]
    chosen = values(PRUNE_AT_INIT, given, PruneAtInitSettings)
    controls = [c for c in chosen.pop("controls", PruneAtInitSettings.controls) if c != "none"]
    exp = PruneAtInitSettings(**chosen, controls=tuple(controls)).validate("prune-at-init --method/--control")
    fractions = [parse_fraction(text, "--remaining") for text in given["remaining"] or [PruneAtInitSettings.remaining]]
    given["duration"] = training_length(given["duration"], given["epochs"], given["iterations"])
    settings = replace(defaults_for(model, dataset), **changes(PRUNE_AT_INIT, given)).validate()
    out = out or Path("runs") / run_name("prune-at-init", model, dataset, f"seed{settings.seed}")
    splits = load_dataset(settings.dataset, given["dataset_dir"], settings.task).to(resolve_device(given["device"]))
    console.print(f"[bold]{model}[/] on [bold]{dataset}[/], {settings.train.duration} of training, "
                  f"{', '.join(exp.methods)} at {', '.join(f'{100 * f:g}%' for f in fractions)}"
                  + (f", controls {', '.join(controls)}" if controls else "")
                  + (f", {settings.trials} trials" if settings.trials > 1 else "") + f" -> {out}")
    with ProgressReporter(given["quiet"]) as reporter:
        results = run_methods(settings, splits, exp.methods, fractions, controls, exp.synflow_rounds, out, reporter,
                              given["force"])
    console.print(results_table(results))
    console.print(f"results: {out}/metrics/prune_at_init")


@app.command("report")
def report(
    sources: Optional[List[str]] = typer.Argument(
        None, help="find-ticket run directories (--out of find-ticket), DVC workspaces (a folder with dvc.yaml) "
                   "or DVC experiment names / git revisions of --repo."),
    out: Path = typer.Option(Path("report"), help="Report folder to write (replaced when complete)."),
    repo: str = typer.Option(".", help="DVC repository the experiment names refer to."),
    all_experiments: bool = typer.Option(False, "--all-experiments", help="Add every DVC experiment of --repo."),
    x_axis: str = typer.Option("weights", "--x-axis", help="x of the accuracy-vs-sparsity figures: weights (weights "
                                                           "remaining) | effective (effective weights remaining: "
                                                           "kept and on an input-to-output path)."),
) -> None:
    """Plots and tables of finished rounds (accuracy and early stop vs % weights, learning curves, per-layer
    sparsity, first-layer masks, pruning at init, sparse training) as index.html + report.md + PNG + CSV;
    several runs are compared in one plot."""
    from lth.report import make_report

    written = make_report(sources or [], out, repo=repo, all_experiments=all_experiments, x_axis=x_axis)
    console.print(f"report: {out / 'index.html'} ({len(written)} files: "
                  f"{', '.join(p.name for p in written if p.suffix == '.png')})")


@app.command("list")
def list_registry(what: Listing = typer.Argument(Listing.all, help="What to list.")) -> None:
    """List models (with their paper defaults), datasets, mask criteria, mask-1 / mask-0 actions and every
    setting of params.yaml (type, default, valid values)."""
    if what in (Listing.all, Listing.models):
        from lth.models import MODELS

        table = registry_table("Models (or your own: package.module:callable or path/to/file.py:callable)",
                               ("name", "description", "paper defaults"))
        for spec in MODELS.values():
            d = spec.defaults
            rates = ", ".join(f"{k} {v:g}" for k, v in d.rates.items() if v > 0)
            table.add_row(spec.name, spec.description, f"{d.dataset}; {d.optimizer} lr {d.lr:g}, batch {d.batch_size}, "
                                                       f"{d.duration}; {d.pruning} {rates}")
        console.print(table)
    if what in (Listing.all, Listing.datasets):
        from lth.datasets import DATASETS

        table = registry_table("Datasets (or your own: a .npz/.pt file of arrays, or package.module:callable)",
                               ("name", "description", "input", "outputs"))
        for spec in DATASETS.values():
            table.add_row(spec.name, spec.description, "x".join(map(str, spec.input_shape)), str(spec.num_outputs))
        console.print(table)
    if what in (Listing.all, Listing.criteria):
        from lth.pruning.criteria import CRITERIA

        table = registry_table("Mask criteria", ("name", "description"))
        for crit in CRITERIA.values():
            table.add_row(crit.name, crit.description)
        console.print(table)
    if what in (Listing.all, Listing.actions):
        from lth.pruning.actions import KEPT_ACTIONS, PRUNED_ACTIONS

        table = registry_table("Mask-1 actions (kept weights) and mask-0 actions (pruned weights)",
                               ("action", "applies to", "description"))
        for action in KEPT_ACTIONS.values():
            table.add_row(action.name, "kept (--mask1)", action.description)
        for action in PRUNED_ACTIONS.values():
            table.add_row(action.name, "pruned (--mask0)", action.description)
        console.print(table)
    if what in (Listing.all, Listing.settings):
        console.print(settings_table())


def settings_table() -> Table:
    """Every setting of params.yaml, from its declaration: key, type, default, valid values, meaning."""
    from lth.core.config import describe
    from lth.runs.params import SourceSettings, WorkspaceSettings
    from lth.runs.settings import RunSettings

    table = registry_table("Settings of params.yaml (a run's settings.json holds those down to `pruning`)",
                           ("setting", "default", "meaning"))
    groups = [describe(RunSettings), describe(DistributedSettings, "train.distributed."),
              describe(WorkspaceSettings), describe(SourceSettings, "sources."), describe(SupermaskSettings, "supermask."),
              describe(PruneAtInitSettings, "prune_at_init."), describe(SparseTrainSettings, "sparse_train.")]
    for info in (info for group in groups for info in group):
        names = info.names()
        valid = f" One of: {' | '.join(names)}." if names and (info.inline or len(names) <= 4) else ""
        default = "" if info.default is None else str(info.default)
        table.add_row(info.key, default, f"{info.help}{valid} ({info.type})")
    return table


def main() -> None:
    """Entry point: LthError becomes one clear line on stderr and exit code 2; Ctrl-C says how to resume; any
    other exception is one `error:` line too (exit 2), its traceback shown only with LTH_DEBUG=1
    (lth.core.failures, as every DVC stage)."""
    from rich.markup import escape  # messages quote paths and library text: "[/...]" must not read as markup

    from lth.core.failures import report_failures

    def tell_error(text: str) -> None:
        err_console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)

    def tell_interrupted(text: str) -> None:
        err_console.print(f"{escape(text)}; rerun the same command to resume" if text else
                          "interrupted: finished rounds are saved; rerun the same command to resume",
                          highlight=False, soft_wrap=True)

    report_failures(app, tell_error, tell_interrupted, 130)
