"""The command line: parsing and printing only; the work happens in lth.engine.rounds and friends.

Heavy modules (torch, torchvision, pandas) are imported inside the commands, so `--help` is instant.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from lth.core.errors import LthError

app = typer.Typer(
    help="Lottery tickets: find sparse trainable sub-networks (Frankle & Carbin; Zhou et al.).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
from lth.experiments.cli import app as experiment_app  # noqa: E402  (the research experiments)

app.add_typer(experiment_app, name="experiment")


class Listing(str, Enum):
    all = "all"
    models = "models"
    datasets = "datasets"
    criteria = "criteria"
    actions = "actions"


def _parse_rates(items: Optional[List[str]]) -> Optional[dict[str, float]]:
    """'--rate fc=0.2 --rate output=0.1' -> {'fc': 0.2, 'output': 0.1}."""
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
            raise LthError(f"bad --rate '{item}': expected KIND=FRACTION, e.g. fc=0.2 (kinds: conv, fc, output)") from None
    return rates


def _duration(duration: Optional[str], epochs: Optional[int], iterations: Optional[int]) -> Optional[str]:
    given = [d for d in (duration, epochs, iterations) if d is not None]
    if len(given) > 1:
        raise LthError("give only one of --duration, --epochs, --iterations")
    if epochs is not None:
        if epochs < 1:
            raise LthError(f"bad --epochs {epochs}: must be >= 1")
        return f"{epochs}ep"
    if iterations is not None:
        if iterations < 1:
            raise LthError(f"bad --iterations {iterations}: must be >= 1")
        return f"{iterations}it"
    return duration


# --pruning VALUE -> the settings it changes: the method of single-weight pruning, or the unit (lth.pruning.structured).
_PRUNING_OPTION: dict[str, dict[str, str]] = {
    "layerwise": {"prune__method": "layerwise"},
    "global": {"prune__method": "global"},
    "unstructured": {"pruning": "unstructured"},
    "structured": {"pruning": "structured", "prune__method": "layerwise"},
}


def _pruning_changes(value: Optional[str]) -> dict[str, str]:
    if value is None:
        return {}
    if value not in _PRUNING_OPTION:
        from lth.core.errors import unknown_choice

        raise unknown_choice("--pruning", value, _PRUNING_OPTION)
    return _PRUNING_OPTION[value]


@app.command("find-ticket")
def find_ticket(
    model: str = typer.Argument(..., help="Model name (see `python -m lth list models`), e.g. lenet-300-100."),
    dataset: str = typer.Argument(..., help="Dataset name (see `python -m lth list datasets`), e.g. mnist-5k."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding (or receiving) the dataset files."),
    rounds: int = typer.Option(20, min=1, help="Rounds to run; round 0 trains the dense network."),
    epochs: Optional[int] = typer.Option(None, help="Training length per round in epochs."),
    iterations: Optional[int] = typer.Option(None, help="Training length per round in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string: '50ep', '2ep100it'."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size \\[default: the model's paper setting]."),
    lr: Optional[float] = typer.Option(None, help="Learning rate \\[default: the model's paper setting]."),
    optimizer: Optional[str] = typer.Option(None, help="adam | sgd | radam \\[default: the model's]."),
    momentum: Optional[float] = typer.Option(None, help="SGD momentum."),
    nesterov: Optional[bool] = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum for SGD."),
    weight_decay: Optional[float] = typer.Option(None, help="Weight decay."),
    warmup: Optional[str] = typer.Option(None, help="Linear learning-rate warmup, a step string ('1000it')."),
    milestones: Optional[str] = typer.Option(None, help="Comma-separated steps where lr is multiplied by gamma."),
    eval_every: Optional[str] = typer.Option(None, help="Evaluate on validation and test every this many steps."),
    precision: Optional[str] = typer.Option(
        None, help="fp32 | bf16: bfloat16 autocast for forward and backward (weights, masks and optimizer stay "
                   "fp32) \\[default: fp32]."),
    criterion: str = typer.Option("large_final", help="Mask criterion (see `python -m lth list criteria`)."),
    rewind: str = typer.Option("0it", help="Rewind survivors to their value at this step of the dense run."),
    mask1: Optional[str] = typer.Option(
        None, help="Mask-1 action on kept weights \\[default: reset, or rewind when --rewind is set]."
    ),
    mask0: str = typer.Option("zero", help="Mask-0 action on pruned weights (see `python -m lth list actions`)."),
    pruning: Optional[str] = typer.Option(
        None, help="layerwise | global (single weights) | structured (whole neurons/channels, per layer) | "
        "unstructured \\[default: the model's]."
    ),
    rate: Optional[List[str]] = typer.Option(None, help="Pruning rate per round for a layer kind, KIND=FRACTION; repeat."),
    seed: int = typer.Option(0, min=0, help="Seed of θ0, data order and tie-breaking."),
    trials: int = typer.Option(1, help="Independent trials (own θ0, data order, masks), trained together."),
    control: Optional[List[str]] = typer.Option(
        None, help="Control arm trained beside each ticket from round 1: reinit | random-prune; repeat."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    out: Optional[Path] = typer.Option(None, help="Run directory \\[default: runs/<model>-<dataset>-<criterion>-seed<seed>]."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    checkpoint_every: str = typer.Option(
        "2000it", help="Save the training state every this many steps, so an interrupted round resumes "
                       "mid-round ('0it': only on Ctrl-C / SIGTERM). Does not change results."),
    distributed_mode: str = typer.Option(
        "data", help="Under torchrun: data = every network's batches split over the processes (DDP); "
                     "trials = the round's networks dealt out to the processes."),
) -> None:
    """Iterative magnitude pruning: train, prune the lowest-scored weights of each layer, rewind, repeat.

    Re-running the same command continues after the last finished round.
    """
    from lth.engine.settings import defaults_for, replace
    from lth.core.steps import Step

    settings = replace(
        defaults_for(model, dataset),
        seed=seed,
        trials=trials,
        controls=tuple(control) if control else None,
        criterion=criterion,
        mask1_action=mask1 or ("reset" if Step.parse(rewind) == Step() else "rewind"),
        mask0_action=mask0,
        rewind=rewind,
        train__optimizer=optimizer,
        train__lr=lr,
        train__batch_size=batch_size,
        train__duration=_duration(duration, epochs, iterations),
        train__momentum=momentum,
        train__nesterov=nesterov,
        train__weight_decay=weight_decay,
        train__warmup=warmup,
        train__milestones=tuple(m.strip() for m in milestones.split(",") if m.strip()) if milestones is not None else None,
        train__eval_every=eval_every,
        train__precision=precision,
        **_pruning_changes(pruning),
    )
    rates = _parse_rates(rate)
    if rates:
        settings = replace(settings, prune__rates={**settings.prune.rates, **rates})
    settings.validate()
    out = out or Path("runs") / f"{model}-{dataset}-{criterion}-seed{seed}"
    Step.parse(checkpoint_every)
    _run_find_ticket(settings, rounds, dataset_dir, device, out, quiet, distributed_mode, checkpoint_every)


def _run_find_ticket(settings, rounds: int, dataset_dir: Path, device: str, out: Path, quiet: bool,
                     distributed_mode: str = "data", checkpoint_every: str = "0it") -> None:
    from lth.datasets import load_dataset
    from lth.training.distributed import session

    # under torchrun (RANK / WORLD_SIZE set) rank 0 runs the rounds below and the other ranks follow
    with session(device, distributed_mode) as processes:
        processes.check(settings)
        splits = processes.prepare(lambda: load_dataset(settings.dataset, dataset_dir).to(processes.device))
        if processes.leader:
            _lead_find_ticket(settings, rounds, splits, processes, out, quiet, checkpoint_every)
        else:
            processes.follow(splits)


def _lead_find_ticket(settings, rounds: int, splits, processes, out: Path, quiet: bool,
                      checkpoint_every: str = "0it") -> None:
    from lth.core.interrupt import graceful_stop
    from lth.engine.rounds import find_ticket as run

    torch_device = processes.device
    console.print(
        f"[bold]{settings.model}[/] on [bold]{settings.dataset}[/] ({len(splits.train_x)} train / "
        f"{len(splits.val_x)} val / {len(splits.test_x)} test), {settings.train.optimizer} lr {settings.train.lr}, "
        f"batch {settings.train.batch_size}, {settings.train.duration} per round, criterion {settings.criterion}, "
        f"{rounds} rounds on {torch_device}"
        + (f", {settings.train.precision}" if settings.train.precision != "fp32" else "")
        + (f", {settings.trials} trials" if settings.trials > 1 else "")
        + (f", controls {', '.join(settings.controls)}" if settings.controls else "")
        + (f", {processes.size} processes ({processes.mode})" if processes.size > 1 else "")
        + f" -> {out}"
    )
    with graceful_stop(), _ProgressReporter(quiet) as reporter:  # Ctrl-C / SIGTERM: save, then exit 130
        records = run(settings, rounds, out, splits, reporter, trainer=processes.train_networks,
                      checkpoint_every=checkpoint_every)
    console.print(summary_table(records))
    console.print(f"summary: {Path(out) / 'summary.csv'}")


class _ProgressReporter:
    """A rich progress bar per round with live loss and accuracy."""

    def __init__(self, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console, disable=quiet,
        )
        self.task = None

    def __enter__(self) -> "_ProgressReporter":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None:
        what = f", {networks} networks" if networks > 1 else ""
        self.task = self.bar.add_task(f"round {round_index:2d} ({weights_remaining:5.1f}% weights{what})", total=None,
                                      info="")

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None:
        if self.task is None:
            return
        fields = {}
        if point is not None:
            loss = f"val loss {point['val_loss']:.4f}  " if "val_loss" in point else ""
            fields["info"] = f"{loss}test acc {100 * point['test_acc']:.2f}%"
        self.bar.update(self.task, completed=iteration, total=total, **fields)

    def round_finished(self, record: dict, skipped: bool) -> None:
        if skipped:
            self.bar.console.print(f"round {record['round']:2d}: already finished, skipped")
        self.task = None


def summary_table(records: list[dict]) -> Table:
    """Round, % weights, the ticket's accuracy (mean [min-max] over trials) and each control's."""
    from lth.engine.summary import TICKET, arm_stats, arms

    controls = arms(records)[1:]
    trials = max((arm_stats(r, TICKET)["trials"] for r in records), default=1)
    span = lambda s, k: f" [{100 * s[k + '_min']:.1f}-{100 * s[k + '_max']:.1f}]" if trials > 1 else ""  # noqa: E731
    table = Table(title="Lottery ticket rounds" + (f" (mean over {trials} trials)" if trials > 1 else ""))
    columns = ["round", "% weights", "test acc (end)", "test acc (early stop)", "early-stop it"]
    columns += [f"{c} (early stop)" for c in controls]
    for column in columns:
        table.add_column(column, justify="right")
    for record in records:
        t = arm_stats(record, TICKET)
        row = [str(record["round"]), f"{record['weights_remaining']:.1f}", f"{100 * t['test_acc']:.2f}",
               f"{100 * t['early_stop_test_acc']:.2f}{span(t, 'early_stop_test_acc')}",
               f"{t['early_stop_iteration']:.0f}"]
        for control in controls:
            c = arm_stats(record, control)
            row.append(f"{100 * c['early_stop_test_acc']:.2f}" if c else "-")
        table.add_row(*row)
    return table


@app.command("compact")
def compact(
    path: Path = typer.Argument(..., help="RUN_DIR, RUN_DIR/trial-T or RUN_DIR/trial-T/round-NN of a find-ticket run."),
    dataset_dir: Optional[Path] = typer.Option(
        None, help="Dataset directory: check outputs and accuracy on the test set \\[default: a random batch]."
    ),
    benchmark: bool = typer.Option(False, "--benchmark/--no-benchmark",
                                   help="Measure CPU latency (1 sample) and throughput of dense vs compact."),
    batch_size: int = typer.Option(256, min=1, help="Batch size of the throughput measurement."),
    threads: int = typer.Option(1, min=1, help="CPU threads while timing (1: stable on a shared machine)."),
) -> None:
    """Cut dead neurons/channels out of tickets: a smaller dense network (torch.export .pt2) per round.

    Writes compact.pt2 and compact.json (params, MACs, file size, output check[, CPU speed]) into each
    round directory; load with torch.export.load(path).module().
    """
    from lth.compact import compact_rounds

    dense, rows = compact_rounds(path, dataset_dir, benchmark, batch_size, threads)
    console.print(compact_table(dense, rows))


def compact_table(dense: dict, rows: list[dict]) -> Table:
    """Per round: accuracy, weights, and what compaction buys in parameters, MACs, file size and CPU time."""
    table = Table(title=f"Compacted tickets (dense: {dense['params']:,} params, {dense['macs']:,} MACs, "
                        f"{dense['file_bytes'] / 1024:.0f} KiB)")
    columns = ["trial", "round", "% weights", "test acc", "params", "% dense", "MACs %", "KiB"]
    if "cpu" in dense:
        columns += ["ms dense", "ms", "/s dense", "/s", "speedup"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        acc = row["check"].get("compact_test_acc", row.get("test_acc"))
        cells = [str(row["trial"]), str(row["round"]), f"{row.get('weights_remaining', float('nan')):.1f}",
                 "-" if acc is None else f"{100 * acc:.2f}", f"{row['params']['compact']:,}",
                 f"{100 * row['params']['compact'] / row['params']['dense']:.1f}",
                 f"{100 * row['macs']['compact'] / row['macs']['dense']:.1f}",
                 f"{row['file_bytes']['compact'] / 1024:.0f}"]
        if "cpu" in row:
            d, c = row["cpu"]["dense"], row["cpu"]["compact"]
            cells += [f"{d['latency_ms']:.3f}", f"{c['latency_ms']:.3f}", f"{d['throughput']:,.0f}",
                      f"{c['throughput']:,.0f}", f"{d['latency_ms'] / c['latency_ms']:.2f}x"]
        table.add_row(*cells)
    return table


@app.command("learn-supermask")
def learn_supermask(
    model: str = typer.Argument(..., help="Model name, e.g. lenet-300-100."),
    dataset: str = typer.Argument(..., help="Dataset name, e.g. mnist-5k."),
    dataset_dir: Path = typer.Argument(..., help="Directory holding (or receiving) the dataset files."),
    weights: str = typer.Option("signed_constant", help="Frozen weights: init (θ0) | signed_constant."),
    lr: float = typer.Option(0.1, help="Adam learning rate of the mask scores."),
    batch_size: int = typer.Option(60, help="Batch size."),
    epochs: Optional[int] = typer.Option(None, help="Training length in epochs \\[default: 50]."),
    iterations: Optional[int] = typer.Option(None, help="Training length in iterations."),
    duration: Optional[str] = typer.Option(None, help="Training length as a step string."),
    init_prob: float = typer.Option(0.5, help="Initial keep probability sigmoid(score) of every weight."),
    rescale: bool = typer.Option(True, "--rescale/--no-rescale", help="Dynamic weight rescaling per layer."),
    seed: int = typer.Option(0, min=0, help="Seed of θ0, data order and mask sampling."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    out: Optional[Path] = typer.Option(None, help="Output directory \\[default: runs/supermask-<model>-<dataset>-seed<seed>]."),
) -> None:
    """Learn a supermask: weights frozen at θ0 (or signed constant), a Bernoulli mask trained by straight-through."""
    from lth.core import files as artifacts
    from lth.datasets import load_dataset
    from lth.models import get_model_spec
    from lth.training.supermask import SupermaskSettings, learn_supermask as learn
    from lth.training.loop import resolve_device

    get_model_spec(model)
    settings = SupermaskSettings(weights=weights, lr=lr, batch_size=batch_size,
                                 duration=_duration(duration, epochs, iterations) or "50ep", init_prob=init_prob,
                                 rescale=rescale).validate()
    splits = load_dataset(dataset, dataset_dir).to(resolve_device(device))
    out = out or Path("runs") / f"supermask-{model}-{dataset}-seed{seed}"
    with _ProgressReporter(False) as reporter:
        reporter.round_started(0, 100.0, 1)
        result = learn(model, splits, settings, seed, progress=reporter.progress)
    artifacts.save_tensors(out / "mask.pt", "mask", model, result["mask"])
    artifacts.write_json(out / "supermask.json", {**result["metrics"], "curve": result["curve"]})
    table = Table(title=f"Learned supermask ({settings.weights} weights)")
    for column in ("test acc (sampled mask)", "test acc (p > 0.5)", "% weights (expected)", "% weights (p > 0.5)"):
        table.add_column(column, justify="right")
    m = result["metrics"]
    table.add_row(f"{100 * m['test_acc_sampled']:.2f}", f"{100 * m['test_acc_thresholded']:.2f}",
                  f"{m['expected_weights_remaining']:.1f}", f"{m['weights_remaining']:.1f}")
    console.print(table)
    console.print(f"mask and metrics: {out}")


@app.command("report")
def report(
    sources: Optional[List[str]] = typer.Argument(
        None, help="find-ticket run directories (--out of find-ticket), DVC workspaces (a folder with dvc.yaml) "
                   "or DVC experiment names / git revisions of --repo."),
    out: Path = typer.Option(Path("report"), help="Report folder to write (replaced when complete)."),
    repo: str = typer.Option(".", help="DVC repository the experiment names refer to."),
    all_experiments: bool = typer.Option(False, "--all-experiments", help="Add every DVC experiment of --repo."),
) -> None:
    """Plots and tables of finished rounds (accuracy and early stop vs % weights, learning curves, per-layer
    sparsity, first-layer masks) as index.html + report.md + PNG + CSV; several runs are compared in one plot."""
    from lth.report import make_report

    files = make_report(sources or [], out, repo=repo, all_experiments=all_experiments)
    console.print(f"report: {out / 'index.html'} ({len(files)} files: "
                  f"{', '.join(p.name for p in files if p.suffix == '.png')})")


# Names a researcher types back into commands and params.yaml: never broken across lines, even when
# the output is not a terminal and rich falls back to 80 columns. Other cells fold rather than end in "…".
TYPED_COLUMNS = {"name", "dataset", "optimizer", "action"}


def registry_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in TYPED_COLUMNS, overflow="fold")
    return table


@app.command("list")
def list_registry(what: Listing = typer.Argument(Listing.all, help="What to list.")) -> None:
    """List models (with their paper defaults), datasets, mask criteria and mask-1 / mask-0 actions."""
    if what in (Listing.all, Listing.models):
        from lth.models import MODELS

        table = registry_table("Models", ("name", "description", "dataset", "optimizer", "lr", "batch", "duration",
                                          "pruning", "rates"))
        for spec in MODELS.values():
            d = spec.defaults
            rates = ", ".join(f"{k} {v:g}" for k, v in d.rates.items() if v > 0)
            table.add_row(spec.name, spec.description, d.dataset, d.optimizer, f"{d.lr:g}", str(d.batch_size),
                          d.duration, d.pruning, rates)
        console.print(table)
    if what in (Listing.all, Listing.datasets):
        from lth.datasets import DATASETS

        table = registry_table("Datasets", ("name", "description", "input", "classes"))
        for spec in DATASETS.values():
            table.add_row(spec.name, spec.description, "x".join(map(str, spec.input_shape)), str(spec.num_classes))
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


def main() -> None:
    """Entry point: LthError becomes one clear line on stderr and exit code 2; Ctrl-C says how to resume."""
    from lth.core.interrupt import Interrupted

    try:
        app()
    except Interrupted as exc:
        err_console.print(f"{exc}; rerun the same command to resume", highlight=False, soft_wrap=True)
        sys.exit(130)
    except LthError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished rounds are saved; rerun the same command to resume", highlight=False)
        sys.exit(130)
