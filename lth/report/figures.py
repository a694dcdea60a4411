"""The report's pictures, drawn with matplotlib from the report's pandas tables.

Styling follows the lottery-ticket papers: % weights remaining on a decreasing log axis with ticks at
the rounds of 20% pruning (100, 51.3, 26.2, 13.5, 7.0, 3.6, 1.9 ...), the mean over trials as a line
and the min-max range over trials as a band, control arms as their own dashed lines and the dense
network as a horizontal reference. The y axis is the task's headline metric (test accuracy; RMSE for
regression, lower is better). Tables keep fractions; axes a person reads show percent. Each function
returns a Figure; the caller saves and closes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Sequence

from lth.runs.records import TICKET, headline, task_of

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from lth.report.sources import RunData
    from lth.tasks.base import Metric, Task

PAPER_TICKS = (100, 51.3, 26.2, 13.5, 7.0, 3.6, 1.9, 1.0, 0.5, 0.3, 0.1)
CURVE_TARGETS = (100, 51.3, 21.1, 7.0, 3.6)  # the learning curves Frankle & Carbin show
ARM_STYLE = {TICKET: "-", "reinit": "--", "random-prune": ":"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def percent(fractions):  # noqa: ANN001 - a float, a list or a pandas Series
    """Weights remaining as the axes show them: percent."""
    return [100 * f for f in fractions] if isinstance(fractions, list) else 100 * fractions


def _label(metric: "Metric") -> str:
    """'test accuracy' / 'test RMSE (lower is better)'."""
    return f"test {metric.label}" + ("" if metric.higher_is_better else " (lower is better)")


def weight_ticks(weights: Iterable[float], most: int = 12) -> list[float]:
    """Where the % weights axis is labelled (`weights` in percent): at every round's sparsity when there are few
    rounds (a run of two rounds shows 100, 80, 64), else at the paper's ticks (100, 51.3, 26.2 ...) within the
    range, else (a range they do not cover) at an even subset of the rounds'."""
    values = sorted({round(w, 4) for w in weights if w > 0}, reverse=True)
    if len(values) <= most:
        return values
    low, high = values[-1], values[0]
    paper = [t for t in PAPER_TICKS if low / 1.15 <= t <= high * 1.15]
    return paper if len(paper) >= 3 else values[:: -(-len(values) // most)]


# The x axes of accuracy-vs-sparsity figures: weights kept, or kept *and* on an input-to-output path
# (effective sparsity, Vysogorets & Kempe 2021; lth.pruning.effective), a column of the frames drawn.
X_AXES = {"weights": ("weights_remaining", "% weights remaining"),
          "effective": ("effective_remaining", "% effective weights remaining")}


def _finish_beside_imp(fig: "Figure", ax, weights: list[float], x_axis: str, ylabel: str, title: str) -> "Figure":
    """The closing of a figure that puts other methods beside IMP: the weights axis over every point, the labels,
    and the legend outside on the right (many entries)."""
    _weights_axis(ax, weights, x_axis)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    return fig


def _weights_axis(ax, weights: Iterable[float], x: str = "weights") -> None:
    """The decreasing log axis of % weights remaining (or effective, `x`); `weights` are fractions."""
    weights = [100 * w for w in weights if w == w and w > 0]  # w == w: not NaN (effective not computed)
    if not weights:
        return
    low, high = min(weights), max(weights)
    ax.set_xscale("log")
    ax.set_xlim(high * 1.15, low / 1.15)  # decreasing: the network thins from left to right
    ticks = weight_ticks(weights)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:.3g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel(f"{X_AXES[x][1]} (log scale)")
    ax.grid(True, alpha=0.3)


def _colors(keys: Sequence[str]) -> dict[str, str]:
    cycle = [f"C{i % 10}" for i in range(len(keys))]
    return dict(zip(keys, cycle))


def _series_color(run: str, arm: str, runs: Sequence[str], arms: Sequence[str]) -> str:
    """One run: a color per arm. Several runs: a color per run, the arm told apart by the line style."""
    return _colors(runs)[run] if len(runs) > 1 else _colors(arms)[arm]


def _arms_in(arms: "pd.DataFrame") -> list[str]:
    present = list(dict.fromkeys(arms["arm"]))
    return [TICKET] + [a for a in present if a != TICKET]


def _draw_metric(ax, arms: "pd.DataFrame", metric: str, dense: Optional["pd.DataFrame"], x_axis: str = "weights"
                 ) -> None:
    column = X_AXES[x_axis][0]
    runs = list(dict.fromkeys(arms["run"]))
    arm_names = _arms_in(arms)
    for run in runs:
        for arm in arm_names:
            rows = arms[(arms["run"] == run) & (arms["arm"] == arm)].sort_values("round")
            if rows.empty:
                continue
            color = _series_color(run, arm, runs, arm_names)
            label = arm if len(runs) == 1 else f"{run} · {arm}"
            x = percent(rows[column])
            ax.plot(x, rows[f"{metric}_mean"], ARM_STYLE.get(arm, "-."), marker="o", markersize=3,
                    color=color, label=label)
            if (rows["trials"] > 1).any():
                ax.fill_between(x, rows[f"{metric}_min"], rows[f"{metric}_max"], color=color, alpha=0.15,
                                linewidth=0)
        if dense is not None and run in dense.index:
            ax.axhline(dense.loc[run, f"{metric}_mean"], color=_colors(runs)[run] if len(runs) > 1 else "grey",
                       linestyle=(0, (1, 3)), linewidth=1,
                       label="dense" if len(runs) == 1 else f"{run} · dense")
    _weights_axis(ax, arms[column], x_axis)


def metric_figure(arms: "pd.DataFrame", dense: "pd.DataFrame", task: "Task", x_axis: str = "weights") -> "Figure":
    """The test headline metric (accuracy, RMSE) vs % weights remaining, at early stop (left) and at the end of
    training (right)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    label = _label(task.headline)
    for ax, key, title in ((axes[0], headline(task), "at early stop (min. validation loss)"),
                           (axes[1], headline(task, "end"), "at the end of training")):
        _draw_metric(ax, arms, key, dense, x_axis)
        ax.set_title(f"{label[0].upper()}{label[1:]} {title}")
    axes[0].set_ylabel(f"{label} (mean; band: min-max over trials)")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def early_stop_figure(arms: "pd.DataFrame", dense: "pd.DataFrame", x_axis: str = "weights") -> "Figure":
    """Early-stop iteration (minimum validation loss) vs % weights remaining."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _draw_metric(ax, arms, "early_stop_iteration", dense, x_axis)
    ax.set_title("Early-stop iteration")
    ax.set_ylabel("iteration of min. validation loss (mean; band: min-max)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def curve_rounds(run: "RunData", targets: Sequence[float] = CURVE_TARGETS) -> list[int]:
    """The finished rounds closest to the paper's learning-curve sparsities (each round once)."""
    available = {rec["round"]: 100 * rec["weights_remaining"] for rec in run.records}
    chosen: list[int] = []
    for target in targets:
        best = min(available, key=lambda r: abs(available[r] - target) / target)
        if best not in chosen and abs(available[best] - target) / target < 0.35:
            chosen.append(best)
    return sorted(chosen)


def _mean_curve(networks: list[dict], metric: str) -> tuple[list[int], list[float]]:
    curves = [n["curve"] for n in networks if n.get("curve")]
    if not curves:
        return [], []
    length = min(len(c) for c in curves)
    iterations = [curves[0][i]["iteration"] for i in range(length)]
    means = [sum(c[i][metric] for c in curves) / len(curves) for i in range(length)]
    return iterations, means


def learning_curve_figure(run: "RunData", rounds: Sequence[int]) -> "Figure":
    """The test headline metric vs iteration for selected rounds: the ticket (solid) vs its reinit control
    (dashed)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    by_round = {rec["round"]: rec for rec in run.records}
    metric = task_of(run.records[0]).headline
    settled: list[float] = []  # every value drawn: they set the y range
    for i, r in enumerate(rounds):
        record = by_round[r]
        for arm in (TICKET, "reinit"):
            x, y = _mean_curve([n for n in record["networks"] if n["arm"] == arm], f"test_{metric.name}")
            if x:
                ax.plot(x, y, ARM_STYLE[arm], color=f"C{i % 10}",
                        label=f"{100 * record['weights_remaining']:.1f}% {arm}")
                settled += [v for v in y if v is not None]
    if settled:  # every curve whole, its first evaluation included
        low, high = min(settled), max(settled)
        margin = max(0.005 * max(abs(high), 1e-9) if not metric.percent else 0.005, 0.05 * (high - low))
        ax.set_ylim(low - margin, min(1.0 + margin, high + margin) if metric.percent else high + margin)
    ax.set_xlabel("training iteration")
    ax.set_ylabel(f"{_label(metric)} (mean over trials)")
    ax.set_title(f"Learning curves: {run.label}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    fig.tight_layout()
    return fig


def layer_figure(layers: "pd.DataFrame", run: str) -> "Figure":
    """Per round: what share of the remaining weights each layer holds (stacked), and each layer's % remaining."""
    plt = _pyplot()
    own = layers[layers["run"] == run]
    kept = own.pivot_table(index="round", columns="layer", values="kept", sort=False)
    remaining = 100 * own.pivot_table(index="round", columns="layer", values="remaining", sort=False)
    overall = 100 * own.groupby("round")["weights_remaining"].first()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    share = kept.div(kept.sum(axis=1), axis=0) * 100
    bottom = None
    labels = [f"{overall[r]:.3g}%" for r in share.index]
    for layer in share.columns:
        left.bar(labels, share[layer], bottom=bottom, label=layer)
        bottom = share[layer] if bottom is None else bottom + share[layer]
    left.set_ylabel("% of the remaining weights")
    left.set_title("Where the remaining weights are (stacked per round)")
    left.tick_params(axis="x", labelsize=7, labelrotation=90)
    left.set_xlabel("% weights remaining (one bar per round)")
    left.legend(fontsize=8)
    for layer in remaining.columns:
        right.plot(remaining.index, remaining[layer], marker="o", markersize=3, label=layer)
    right.set_yscale("log")
    right.set_xlabel("round")
    right.set_ylabel("% of the layer's weights remaining (log)")
    right.set_title("Per-layer weights remaining")
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(run)
    fig.tight_layout()
    return fig


def pixel_map(mask: dict, image_shape: tuple[int, ...]):
    """The first layer's kept connections per input pixel (H x W), or None when the inputs are not one-channel
    images or the first layer is not a fully connected layer reading them (e.g. a conv net)."""
    if len(image_shape) != 3:
        return None
    channels, height, width = image_shape
    name = next(iter(mask))
    first = mask[name]
    if channels != 1 or first.dim() != 2 or first.shape[1] != height * width:
        return None
    return first.sum(dim=0).reshape(height, width).float()


def mask_figure(maps: list[tuple[str, object]], title: str) -> "Figure":
    """Heat maps of kept-connection counts per input pixel, one panel per round."""
    plt = _pyplot()
    columns = min(4, len(maps))
    rows = (len(maps) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (caption, counts) in zip(axes.flat, maps):
        image = ax.imshow(counts.numpy(), cmap="viridis", vmin=0)
        ax.set_title(caption, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


AT_INIT_STYLE = {TICKET: ("-", "o"), "shuffle": ("--", "s"), "reinit": (":", "^"), "invert": ("-.", "v")}


def at_init_figure(at_init: "pd.DataFrame", arms: "pd.DataFrame", task: "Task", x_axis: str = "weights") -> "Figure":
    """Pruning at initialization vs IMP: the test headline metric at early stop vs % weights remaining. Each method
    a color, its mask solid and its controls dashed (shuffle), dotted (reinit), dash-dot (invert); IMP runs in
    black/grey."""
    key, column = headline(task), X_AXES[x_axis][0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    methods = list(dict.fromkeys(at_init["method"]))
    at_init_runs = list(dict.fromkeys(at_init["run"]))
    for run in at_init_runs:
        for i, method in enumerate(methods):
            for arm, (style, marker) in AT_INIT_STYLE.items():
                rows = at_init[(at_init["run"] == run) & (at_init["method"] == method) & (at_init["arm"] == arm)]
                if rows.empty:
                    continue
                rows = rows.sort_values("weights_remaining", ascending=False)
                label = method if arm == TICKET else f"{method} · {arm}"
                ax.plot(percent(rows[column]), rows[f"{key}_mean"], style, marker=marker, markersize=4,
                        color=f"C{i % 10}", label=label if len(at_init_runs) == 1 else f"{run} · {label}")
    imp = arms[arms["arm"] == TICKET] if not arms.empty else arms
    for j, run in enumerate(dict.fromkeys(imp["run"]) if not imp.empty else []):
        rows = imp[imp["run"] == run].sort_values("round")
        ax.plot(percent(rows[column]), rows[f"{key}_mean"], "-", marker=".", linewidth=2,
                color=("black", "dimgrey", "silver")[j % 3], label=_short(f"IMP: {run}"))
    weights = list(at_init[column]) + (list(imp[column]) if not imp.empty else [])
    return _finish_beside_imp(fig, ax, weights, x_axis, f"{_label(task.headline)} at early stop (mean over trials)",
                              "Pruning at initialization vs iterative magnitude pruning")


def stability_figure(frame: "pd.DataFrame", task: "Task") -> "Figure":
    """Instability: error barrier vs rewind iteration, a line per sparsity (and run and pair), with the
    threshold under which two copies count as linearly connected (Frankle et al. 2020; classification only).
    A classification barrier is drawn in percentage points (the file keeps the fraction)."""
    error, threshold = task.error, task.barrier_threshold
    scale = 100 if error.percent else 1
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups = frame.groupby(["run", "pair", "weights_remaining"], sort=False)
    for i, ((run, pair, weights), rows) in enumerate(groups):
        rows = rows.sort_values("rewind_iteration")
        label = f"{100 * weights:.1f}% weights" + (f", {pair}" if frame["pair"].nunique() > 1 else "")
        if frame["run"].nunique() > 1:
            label = f"{run} · {label}"
        ax.plot(rows["rewind_iteration"], scale * rows["barrier"], "-o", markersize=4, color=f"C{i % 10}",
                label=_short(label))
    if threshold is not None:
        ax.axhline(scale * threshold, color="grey", linestyle="--", linewidth=1,
                   label=f"{scale * threshold:g}-point threshold" if error.percent else f"threshold {threshold:g}")
    iterations = sorted(set(frame["rewind_iteration"]))
    positive = [i for i in iterations if i > 0]
    if positive:  # rewind points spread over orders of magnitude (0, 100, 500, 2000): log beyond the first
        ax.set_xscale("symlog", linthresh=min(positive))
    ax.set_xticks(iterations)
    ax.set_xticklabels([str(i) for i in iterations])
    ax.set_xlabel("rewind iteration k")
    ax.set_ylim(bottom=0)
    ax.set_ylabel("test error barrier (percentage points)" if error.percent else f"test {error.label} barrier")
    ax.set_title("Instability: test error barrier between two copies")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _short(label: str, width: int = 40) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def compute_figure(frame: "pd.DataFrame", task: "Task") -> "Figure":
    """The test headline metric vs the training compute spent to reach a ticket and train it (every run a line:
    IMP, early-bird, one-shot ...); each point a round, labelled with its % weights; hollow: the round's
    training stopped early (early-bird), so its value is the one at the stop."""
    plt = _pyplot()
    key = headline(task)
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, ((run, schedule), rows) in enumerate(frame.groupby(["run", "schedule"], sort=False)):
        rows = rows.sort_values("round")
        color = f"C{i % 10}"
        label = schedule if frame["run"].nunique() == frame["schedule"].nunique() else f"{schedule} · {run}"
        ax.plot(rows["total_iterations"], rows[key], "-", color=color, label=_short(label, 60))
        stopped = rows["stopped_early"].astype(bool)
        ax.scatter(rows.loc[~stopped, "total_iterations"], rows.loc[~stopped, key], color=color, s=16)
        ax.scatter(rows.loc[stopped, "total_iterations"], rows.loc[stopped, key], s=16,
                   facecolors="none", edgecolors=color)
        step = max(1, len(rows) // 5)
        for j, (_, row) in enumerate(rows.iterrows()):
            if j % step == 0 or j == len(rows) - 1:
                ax.annotate(f"{100 * row['weights_remaining']:.1f}%", (row["total_iterations"], row[key]),
                            textcoords="offset points", xytext=(3, 4), fontsize=7, color=color)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlabel("training steps spent on the ticket and the rounds before it (controls excluded)")
    ax.set_ylabel(f"{_label(task.headline)} at early stop (mean over trials)")
    ax.set_title(f"{task.headline.label[0].upper()}{task.headline.label[1:]} vs training compute "
                 "(labels: % weights remaining)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


TRANSFER_STYLE = {"ticket": ("-", "C0"), "reinit": ("--", "C1")}


def transfer_figure(frame: "pd.DataFrame") -> "Figure":
    """Transfer across domains and tasks: one panel per target, its test metric at early stop vs % weights
    remaining for the ticket and its random re-initialisation (mean ± std over trials as error bars), the dense
    network as a band, and the source run's own ticket curve (its metric, right axis) for reference."""
    from lth.tasks import metric_named

    plt = _pyplot()
    targets = list(dict.fromkeys(zip(frame["run"], frame["target"])))
    fig, axes = plt.subplots(1, len(targets), figsize=(6 * len(targets), 4.5), squeeze=False)
    for ax, (run, target) in zip(axes[0], targets):
        rows = frame[(frame["run"] == run) & (frame["target"] == target)]
        arms = rows[rows["arm"].isin(["ticket", "reinit", "dense"])]
        metric = metric_named(arms["metric"].iloc[0])
        factor = 100 if metric.percent else 1
        unit = arms["unit"].iloc[0]
        for arm, (style, color) in TRANSFER_STYLE.items():
            part = arms[arms["arm"] == arm].sort_values("weights_remaining", ascending=False)
            ax.errorbar(percent(part["weights_remaining"]), factor * part["mean"], yerr=factor * part["std"],
                        fmt=style, marker="o", markersize=4, capsize=3, color=color, label=f"{arm} on {target}")
        dense = arms[arms["arm"] == "dense"].iloc[0]
        ax.axhline(factor * dense["mean"], color="grey", linestyle=(0, (1, 3)), label="dense on target")
        ax.axhspan(factor * (dense["mean"] - dense["std"]), factor * (dense["mean"] + dense["std"]), color="grey",
                   alpha=0.12, linewidth=0)
        ax.set_ylabel(f"test {metric.label}{f' ({unit})' if unit else ''} at early stop"
                      + ("" if metric.higher_is_better else ", lower is better"))
        source = rows[rows["arm"].str.startswith("source")].sort_values("weights_remaining", ascending=False)
        if not source.empty:
            twin = ax.twinx()
            source_metric = metric_named(source["metric"].iloc[0])
            scale = 100 if source_metric.percent else 1
            twin.plot(percent(source["weights_remaining"]), scale * source["mean"], ":", marker=".", color="C2",
                      label=f"{source['arm'].iloc[0]}, own test set (right axis)")
            twin.set_ylabel(f"source test {source_metric.label}{' (%)' if source_metric.percent else ''}",
                            color="C2")
            twin.tick_params(axis="y", colors="C2")
            handles = ax.get_legend_handles_labels()
            more = twin.get_legend_handles_labels()
            ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="best")
        else:
            ax.legend(fontsize=7, loc="best")
        _weights_axis(ax, list(arms["weights_remaining"]))  # the source's rounds sit at (nearly) the same places
        title = f"{target} ({arms['task'].iloc[0]}, {int(arms['trials'].iloc[0])} trials)"
        ax.set_title(title if frame["run"].nunique() == 1 else f"{run} · {title}", fontsize=10)
    fig.suptitle("Transfer across domains and tasks: tickets vs random re-init vs dense")
    fig.tight_layout()
    return fig


SPARSE_COLORS = {"static": "C2", "set": "C1", "rigl": "C3"}
DISTRIBUTION_STYLE = {"erk": "-", "uniform": "--", "erk-power": "-."}


def sparse_train_figure(sparse: "pd.DataFrame", arms: "pd.DataFrame", at_init: "pd.DataFrame", task: "Task",
                        x_axis: str = "weights") -> "Figure":
    """Sparse training vs tickets: the test headline metric at early stop vs % weights remaining. Each sparse
    method and distribution a line with error bars (± std over trials; a color per method, ERK solid, uniform
    dashed, ERK-power dash-dot, N:M dotted), IMP tickets in black and their reinit control in grey (band: min-max), pruning
    at initialization as markers."""
    key, column = headline(task), X_AXES[x_axis][0]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    single = sparse["run"].nunique() == 1
    methods = list(dict.fromkeys(sparse["method"]))
    for (run, method, distribution), rows in sparse.groupby(["run", "method", "distribution"], sort=False):
        rows = rows.sort_values("weights_remaining", ascending=False)
        label = f"{method} ({distribution})" if single else f"{run} · {method} ({distribution})"
        ax.errorbar(percent(rows[column]), rows[f"{key}_mean"], yerr=rows[f"{key}_std"],
                    fmt=DISTRIBUTION_STYLE.get(distribution, ":"), marker="s", markersize=4, capsize=3,
                    color=SPARSE_COLORS.get(method, f"C{(4 + methods.index(method)) % 10}"), label=label)
    imp_arms = arms[arms["arm"].isin([TICKET, "reinit"])] if not arms.empty else arms
    for (run, arm), rows in (imp_arms.groupby(["run", "arm"], sort=False) if not imp_arms.empty else []):
        rows = rows.sort_values("round")
        color = "black" if arm == TICKET else "grey"
        ax.plot(percent(rows[column]), rows[f"{key}_mean"], "-" if arm == TICKET else "--", marker=".",
                linewidth=2 if arm == TICKET else 1, color=color, label=_short(f"IMP {arm}: {run}"))
        if (rows["trials"] > 1).any():
            ax.fill_between(percent(rows[column]), rows[f"{key}_min"], rows[f"{key}_max"], color=color, alpha=0.12,
                            linewidth=0)
    tickets = at_init[at_init["arm"] == TICKET] if not at_init.empty else at_init
    for i, (method, rows) in enumerate(tickets.groupby("method", sort=False) if not tickets.empty else []):
        ax.plot(percent(rows[column]), rows[f"{key}_mean"], linestyle="none", marker="^v<>dP*X"[i % 8],
                markersize=7, color="dimgrey", label=f"at init: {method}")
    weights = list(sparse[column]) + (list(imp_arms[column]) if not imp_arms.empty else [])
    return _finish_beside_imp(fig, ax, weights, x_axis, f"{_label(task.headline)} at early stop (mean ± std over "
                              "trials)", "Sparse training from scratch vs lottery tickets")
