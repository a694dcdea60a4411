"""Write a report folder: PNG pictures, CSV tables, report.md and an index.html that opens offline.

The folder is built beside its destination and renamed into place, so an interrupted report never
leaves a half-written folder and a previous report stays intact until the new one is complete.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lth.report import figures, tables

if TYPE_CHECKING:
    import pandas as pd

    from lth.report.sources import RunData
    from lth.tasks.base import Task

MASK_PANELS = 8


@dataclass
class Section:
    title: str
    text: str = ""
    images: list[str] = field(default_factory=list)
    table: "pd.DataFrame | None" = None
    csv: str = ""


def _slug(index: int, runs: list) -> str:
    return "" if len(runs) == 1 else f"-{index}"


def _save(fig, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _mask_maps(run: "RunData") -> list[tuple[str, object]]:
    """Up to MASK_PANELS rounds, evenly spread, of trial 0's first-layer kept connections per pixel."""
    if run.input_shape is None or not run.records:
        return []
    rounds = [rec["round"] for rec in run.records]
    step = max(1, -(-len(rounds) // MASK_PANELS))
    chosen = rounds[::step][:MASK_PANELS - 1]
    if rounds[-1] not in chosen:
        chosen.append(rounds[-1])
    remaining = {rec["round"]: rec["weights_remaining"] for rec in run.records}
    maps = []
    for r in chosen:
        mask = run.load_mask(0, r)
        counts = figures.pixel_map(mask, run.input_shape) if mask else None
        if counts is not None:
            maps.append((f"r{r:02d} ({100 * remaining[r]:.1f}% weights)", counts))
    return maps


def build_sections(runs: list["RunData"], folder: Path, x_axis: str = "weights") -> list[Section]:
    """Compute every table and draw every picture into `folder`; return the report's sections in order.
    `x_axis`: what the accuracy-vs-sparsity figures put on x, weights remaining or effective weights remaining."""
    if x_axis not in figures.X_AXES:
        from lth.core.errors import unknown_choice

        raise unknown_choice("x axis", x_axis, figures.X_AXES)
    task = tables.report_task(runs)
    imp_runs = [run for run in runs if run.records]
    sections = _round_sections(imp_runs, folder, task, x_axis) if imp_runs else []
    if imp_runs:
        sections.append(_compute_section(imp_runs, folder, task))
    if any(run.at_init for run in runs):
        sections.append(_at_init_section(runs, imp_runs, folder, task, x_axis))
    if any(run.sparse_train for run in runs):
        sections.append(_sparse_train_section(runs, imp_runs, folder, task, x_axis))
    if any(run.stability for run in runs):
        sections.append(_stability_section(runs, folder, task))
    if any(run.transfer_curves for run in runs):
        sections.append(_transfer_section(runs, folder))
    return sections


def _metric_words(task: "Task") -> str:
    """'test accuracy' / 'test RMSE (lower is better)': what the report's y axes and tables show."""
    return figures._label(task.headline)


def _compute_section(runs: list["RunData"], folder: Path, task: "Task") -> Section:
    """Compute-to-ticket: the headline metric vs training steps spent, every run on one plot, and a matched table."""
    frame = tables.compute_frame(runs)
    matched = tables.compute_matched_table(frame)
    frame.to_csv(folder / "compute.csv", index=False)
    matched.to_csv(folder / "compute_matched.csv", index=False)
    return Section(f"{task.headline.label[0].upper()}{task.headline.label[1:]} vs training compute",
                   f"Each round's ticket (mean over trials): its {_metric_words(task)} at early stop against the "
                   "training steps spent on it and on every round before it (control arms excluded; seconds are "
                   "each network's share of its round's wall time). Early-bird rounds count the steps they trained. "
                   "The table puts the runs side by side at the sparsities of the run with the fewest rounds.",
                   [_save(figures.compute_figure(frame, task), folder, "compute.png")], matched, "compute_matched.csv")


def _stability_section(runs: list["RunData"], folder: Path, task: "Task") -> Section:
    """Instability analyses: the error barrier vs the rewind point, and its table."""
    frame = tables.stability_frame(runs, task)
    frame.to_csv(folder / "stability.csv", index=False)
    judged = ("below 0.02 (2 percentage points) the copies are linearly connected, i.e. stable to SGD noise "
              "(Frankle et al. 2020)" if task.barrier_threshold is not None else
              f"the barrier is in {task.error.label}, for which no threshold is established")
    return Section("Instability (linear mode connectivity)",
                   "Two copies of a round's ticket trained from the same rewound weights θk with different data "
                   "orders (pair data-order; init: two initialisations). The barrier is the highest test "
                   f"{task.error.label} on the line between them minus the mean of its ends; {judged}.",
                   [_save(figures.stability_figure(frame, task), folder, "stability.png")], frame, "stability.csv")


def _transfer_section(runs: list["RunData"], folder: Path) -> Section:
    """Transfer across domains and tasks: a panel per target, and the curves side by side in a table."""
    frame = tables.transfer_frame(runs)
    table = tables.transfer_table(frame)
    frame.to_csv(folder / "transfer_curves.csv", index=False)
    table.to_csv(folder / "transfer.csv", index=False)
    return Section("Transfer across domains and tasks",
                   "Tickets of several rounds trained on another dataset, domain or task (another task gets a fresh, "
                   "dense output layer), each beside a random re-initialisation of the same mask and the dense "
                   "network, several seeds each: the target's test metric at early stop, mean ± standard "
                   "deviation over the trials. 'ticket beats reinit': yes or no when the gap is beyond noise (2 standard errors "
                   "of the difference: the trials' spread, at least the test set's), else within noise. "
                   "The dotted green line is the source run's own ticket on its own test set.",
                   [_save(figures.transfer_figure(frame), folder, "transfer.png")], table, "transfer.csv")


def _imp_arms(imp_runs: list["RunData"], task: "Task") -> "pd.DataFrame":
    """The IMP runs' arms (ticket and controls per round, over trials) that other methods are set beside; empty
    without IMP runs."""
    import pandas as pd

    return tables.arm_frame(tables.network_frame(imp_runs), task) if imp_runs else pd.DataFrame()


def _at_init_section(runs: list["RunData"], imp_runs: list["RunData"], folder: Path, task: "Task",
                     x_axis: str = "weights") -> Section:
    """Pruning at initialization next to IMP: one figure, and a table at matched sparsity."""
    at_init = tables.at_init_frame(runs, task)
    arms = _imp_arms(imp_runs, task)
    matched = tables.matched_sparsity_table(at_init, arms, task)
    at_init.to_csv(folder / "prune_at_init.csv", index=False)
    matched.to_csv(folder / "matched_sparsity.csv", index=False)
    return Section("Pruning at initialization vs IMP",
                   f"The {_metric_words(task)} at early stop (mean over trials). Each method's mask, then its controls "
                   "(Frankle et al. 2021): shuffle = the mask permuted within each layer, reinit = the mask on "
                   "fresh weights, invert = the lowest-scored weights. IMP columns: the ticket of the IMP round "
                   "nearest in weights remaining. Emptied layers: layer collapse.",
                   [_save(figures.at_init_figure(at_init, arms, task, x_axis), folder, "prune_at_init.png")], matched,
                   "matched_sparsity.csv")


def _sparse_train_section(runs: list["RunData"], imp_runs: list["RunData"], folder: Path, task: "Task",
                          x_axis: str = "weights") -> Section:
    """Sparse training from scratch next to the tickets, pruning at init and its controls: one figure, and a
    table at matched sparsity."""
    sparse = tables.sparse_train_frame(runs, task)
    arms = _imp_arms(imp_runs, task)
    at_init = tables.at_init_frame(runs, task)
    sizes = {run.test_size for run in runs if run.sparse_train}
    matched = tables.sparse_matched_table(sparse, arms, at_init, task, sizes.pop() if len(sizes) == 1 else None)
    sparse.to_csv(folder / "sparse_train.csv", index=False)
    matched.to_csv(folder / "sparse_vs_tickets.csv", index=False)
    return Section("Sparse training vs tickets",
                   f"The {_metric_words(task)} at early stop, mean ± standard deviation over trials, of networks trained "
                   "sparse from scratch: a random mask with the distribution's per-layer counts, fixed (static) or "
                   "moved during training (SET: random growth; RigL: growth by gradient magnitude). Beside them the "
                   "IMP tickets and their reinit control (band: min-max over trials) and pruning at initialization. "
                   "The table puts them at matched sparsity (IMP: its round nearest in weights remaining); 'best' is "
                   "beyond noise when its lead over the next exceeds 2 standard errors of the difference.",
                   [_save(figures.sparse_train_figure(sparse, arms, at_init, task, x_axis), folder,
                          "sparse_train.png")], matched, "sparse_vs_tickets.csv")


def _test_noise(runs: list["RunData"], task: "Task", dense: "pd.DataFrame") -> str:
    """How finely the test set can tell accuracies apart: its size and one trial's ± (two standard errors, at
    the dense network's accuracy), per run whose test size is known (lth.core.noise)."""
    from lth.core import noise
    from lth.runs.records import headline

    if not task.headline.percent:
        return ""
    parts = []
    for run in runs:
        if run.test_size and run.label in dense.index:
            p = float(dense.loc[run.label, f"{headline(task)}_mean"])
            half = 100 * noise.binomial_halfwidth(p, run.test_size)
            trials = max((len([n for n in r["networks"] if n["arm"] == "ticket"]) for r in run.records), default=1)
            parts.append(f"{run.label + ': ' if len(runs) > 1 else ''}{run.test_size} test examples, so one trial's "
                         f"accuracy near {100 * p:.1f}% is ±{half:.1f} points (two standard errors; {trials} "
                         f"trial{'s' if trials != 1 else ''} per arm)")
    return (" Test-set noise: " + "; ".join(parts) + ". Differences smaller than that are not findings "
            "(`lth compare A B` judges them).") if parts else ""


def _round_sections(runs: list["RunData"], folder: Path, task: "Task", x_axis: str = "weights") -> list[Section]:
    """The sections of runs with rounds (IMP): the metric and early stop vs sparsity, curves, layers, masks."""
    networks = tables.network_frame(runs)
    arms = tables.arm_frame(networks, task)
    dense = tables.dense_reference(arms)
    layers = tables.layer_frame(runs)
    headline = tables.headline_table(arms, task)
    for frame, name in ((networks, "networks.csv"), (arms, "arms.csv"), (layers, "layer_sparsity.csv"),
                        (headline, "summary.csv")):
        frame.to_csv(folder / name, index=False)

    words = _metric_words(task)
    sections = [
        Section(f"Test {task.headline.label} vs {figures.X_AXES[x_axis][1][2:]}",
                "Mean over trials (band: min-max). Ticket solid; controls dashed/dotted; dense network dotted "
                "horizontal line." + ("" if task.headline.higher_is_better else f" Lower {task.headline.label} is "
                                      "better.") + " Tables and CSV files keep fractions (0.962 is 96.2%)."
                + _test_noise(runs, task, dense),
                [_save(figures.metric_figure(arms, dense, task, x_axis), folder, "by_sparsity.png")], headline,
                "summary.csv"),
        Section("Early-stop iteration vs weights remaining", "Iteration of the minimum validation loss.",
                [_save(figures.early_stop_figure(arms, dense, x_axis), folder, "early_stop.png")]),
    ]
    curves = Section("Learning curves", f"The {words} during training at selected sparsities: ticket solid, "
                                        "reinit control dashed.")
    layer_sections = []
    missing: list[str] = []
    mask_section = Section("Which pixels the ticket still reads",
                           "First layer: number of kept connections from each input pixel (trial 0).")
    for i, run in enumerate(runs):
        suffix = _slug(i, runs)
        rounds = figures.curve_rounds(run)
        if rounds:
            curves.images.append(_save(figures.learning_curve_figure(run, rounds), folder,
                                       f"learning_curves{suffix}.png"))
        if not layers.empty and (layers["run"] == run.label).any():
            wide = tables.layer_table(layers, run.label)
            wide.to_csv(folder / f"layers{suffix}.csv", index=False)
            layer_sections.append(Section(f"Per-layer sparsity: {run.label}",
                                          "The fraction of each layer's weights remaining.",
                                          [_save(figures.layer_figure(layers, run.label), folder,
                                                 f"layers{suffix}.png")], wide, f"layers{suffix}.csv"))
        maps = _mask_maps(run)
        if maps:
            mask_section.images.append(_save(figures.mask_figure(maps, run.label), folder, f"masks{suffix}.png"))
        elif run.records and run.load_mask(0, run.records[0]["round"]) is None:
            missing.append(run.label)
    sections.append(curves)
    sections += layer_sections
    compaction = tables.compaction_table(runs)
    if not compaction.empty:
        compaction.to_csv(folder / "compaction.csv", index=False)
        sections.append(Section("Compacted networks (`lth compact`)",
                                "Dead neurons/channels removed: parameters and MACs as fractions of the dense network, "
                                "file size, CPU latency per batch (dense vs compact) and whether outputs matched the "
                                "masked network.", [], compaction, "compaction.csv"))
    if missing:  # a fresh clone has the metrics (git) but not the masks (DVC): say so, do not just leave it out
        mask_section.text += (f" No masks found for {', '.join(missing)}: their mask files are not here "
                              "(a fresh clone: `dvc pull` or `dvc repro` brings them).")
    if mask_section.images or missing:
        sections.append(mask_section)
    return sections


def _contents(run: "RunData") -> str:
    """'21 rounds, 15 pruning-at-init results' (what a source brought)."""
    parts = [f"{len(run.records)} rounds"] if run.records or not run.at_init else []
    if run.at_init:
        parts.append(f"{len(run.at_init)} pruning-at-init result{'s' if len(run.at_init) != 1 else ''}")
    if run.stability:
        parts.append(f"{len(run.stability)} instability analys{'es' if len(run.stability) != 1 else 'is'}")
    return ", ".join(parts)


def _markdown(runs: list["RunData"], sections: list[Section]) -> str:
    lines = ["# Lottery-ticket report", "", "Runs: " + "; ".join(f"**{r.label}** ({_contents(r)})"
                                                              for r in runs), ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.text, ""]
        lines += [f"![{section.title}]({image})" for image in section.images]
        if section.table is not None:
            lines += ["", section.table.to_markdown(index=False, floatfmt=".4g"), "", f"CSV: [{section.csv}]({section.csv})"]
        lines.append("")
    return "\n".join(lines)


def _html(runs: list["RunData"], sections: list[Section]) -> str:
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Lottery-ticket report</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
             "img{max-width:100%;display:block;margin:0.5em 0}table{border-collapse:collapse;font-size:12px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style></head><body>",
             "<h1>Lottery-ticket report</h1><ul>"]
    parts += [f"<li><b>{html.escape(r.label)}</b>: {html.escape(_contents(r))}</li>" for r in runs]
    parts.append("</ul>")
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        parts += [f"<img src='{html.escape(image)}' alt='{html.escape(section.title)}'>" for image in section.images]
        if section.table is not None:
            parts.append(section.table.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep=""))
            parts.append(f"<p><a href='{html.escape(section.csv)}'>{html.escape(section.csv)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(runs: list["RunData"], out: Path, x_axis: str = "weights") -> list[Path]:
    """Build the whole report in a temporary folder beside `out`, then move it into place.

    Both temporary folders (the new report's, and the old report's on its way out) get fresh random names
    (mkdtemp), so no path of them can be planted; the report folder ends with the permissions any tool's
    would have (0777 less the umask), so colleagues and a web server can read it."""
    from lth.core.files import current_umask

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    retired = None
    try:
        sections = build_sections(runs, staging, x_axis)
        (staging / "report.md").write_text(_markdown(runs, sections))
        (staging / "index.html").write_text(_html(runs, sections))
        os.chmod(staging, 0o777 & ~current_umask())
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            out.rename(retired)  # replaces the empty folder mkdtemp made
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if retired is not None and not out.exists():
            retired.rename(out)  # the previous report back in place
        elif retired is not None:
            shutil.rmtree(retired, ignore_errors=True)  # still empty: the previous report never moved
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    return sorted(out.iterdir())
