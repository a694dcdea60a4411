"""What every command shares: the consoles, progress bars, training-length options, help from the settings'
declarations, and registry tables. The main CLI and the experiment commands both import it; it imports
neither, so the command modules never import each other.
"""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from lth.core.errors import LthError

console = Console()
err_console = Console(stderr=True)



def setting_help(key: str, default: Optional[str] = None, of: Optional[type] = None) -> str:
    """A CLI option's help: the declared help of setting `key` ('train.lr', 'device'; of the settings class
    `of`, default the run's and the workspace's), its choices where they are short, and `default` (bracketed
    and escaped, so rich prints it instead of reading it as markup)."""
    from lth.core.config import find
    from lth.engine.params import WorkspaceSettings
    from lth.engine.settings import RunSettings

    for cls in (of,) if of else (RunSettings, WorkspaceSettings):
        try:
            text = find(cls, key).describe()
            break
        except KeyError:
            continue
    else:
        raise KeyError(key)
    return f"{text} \\[default: {default}]." if default else text


def training_length(duration: Optional[str], epochs: Optional[int], iterations: Optional[int]) -> Optional[str]:
    """One of --duration / --epochs / --iterations as a step string (None: none given)."""
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


class ProgressReporter:
    """A rich progress bar per round with live loss and accuracy (lth.engine.run.Reporter)."""

    def __init__(self, quiet: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=console, disable=quiet,
        )
        self.task = None

    def __enter__(self) -> "ProgressReporter":
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


# Names a researcher types back into commands and params.yaml: never broken across lines, even when
# the output is not a terminal and rich falls back to 80 columns. Other cells fold rather than end in "…".
TYPED_COLUMNS = {"name", "dataset", "optimizer", "action", "setting"}


def registry_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in TYPED_COLUMNS, overflow="fold")
    return table
