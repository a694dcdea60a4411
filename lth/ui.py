"""What every command shares: the consoles, progress bars, training-length options, help from the settings'
declarations, and registry tables. The main CLI and the experiment commands both import it; it imports
neither, so the command modules never import each other.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from lth.core.errors import LthError

class LogConsole(Console):
    """A rich Console that, writing to a pipe or a log file, never breaks a word or a path to fit 80 columns:
    text wraps at spaces only, and a path longer than a line stays whole on a line of its own, so it can be
    copied out of a cluster's log. Tables and terminals are rich's own."""

    def print(self, *objects, **options) -> None:  # noqa: ANN003 - rich's options
        if self.is_terminal or options.get("soft_wrap") or not objects or not all(isinstance(o, str) for o in objects):
            super().print(*objects, **options)
            return
        import textwrap

        plain = str(options.get("sep", " ")).join(
            self.render_str(o, markup=options.get("markup"), highlight=False).plain for o in objects)
        width = options.get("width") or self.width
        lines = [textwrap.fill(part, width, break_long_words=False, break_on_hyphens=False) or part
                 for part in plain.split("\n")]
        super().print("\n".join(lines), end=options.get("end", "\n"), markup=False, highlight=False, soft_wrap=True)


console = LogConsole()
err_console = LogConsole(stderr=True)


def setting_help(key: str, default: Optional[str] = None, of: Optional[type] = None) -> str:
    """A CLI option's help: the declared help of setting `key` ('train.lr', 'device'; of the settings class
    `of`, default the run's and the workspace's), its choices where they are short, and `default` (bracketed
    and escaped, so rich prints it instead of reading it as markup)."""
    return _with_default(declared(key, of).describe(), default)


def _with_default(text: str, default: Optional[str]) -> str:
    return f"{text} \\[default: {default}]." if default else text


def declared(key: str, of: Optional[type] = None):  # noqa: ANN201 - a lth.core.config.SettingInfo
    """The declaration of setting `key` of the settings class `of` (default: the run's, then the workspace's)."""
    from lth.core.config import find
    from lth.runs.params import WorkspaceSettings
    from lth.runs.settings import RunSettings

    for cls in (of,) if of else (RunSettings, WorkspaceSettings):
        try:
            return find(cls, key)
        except KeyError:
            continue
    raise KeyError(key)


PAPER = "the model's paper setting"
_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


@dataclass(frozen=True)
class Exposed:
    """A declared setting that a command exposes as an option (with `argument` or `required`, an argument):
    help, default, type and choices come from the declaration.

    `name`: the parameter, hence the option (default: the field's name; 'batch_size' is --batch-size).
    `of`: the settings class (default: RunSettings, then WorkspaceSettings; RunSettings' make `changes`).
    `shown`: words for the default in the help ('{}': the declared default), the option's default then being
    None: not given, it leaves the base settings' value (the model's paper setting, say). A list is repeated
    (--control a --control b), or with `comma` one comma-separated value; `parse(text, option)` reads a value
    written as text (5% -> 0.05). `note` follows the declared help; `min`, typer's lower bound of a number.
    A bool is a flag (--x, or --x/--no-x where the declared default is on).
    """

    key: str
    name: str = ""
    of: Optional[type] = None
    shown: str = ""
    argument: bool = False
    required: bool = False
    comma: bool = False
    parse: Optional[Callable[[str, str], Any]] = None
    note: str = ""
    annotation: Any = None
    min: Optional[int] = None

    @property
    def param(self) -> str:
        return self.name or self.key.rpartition(".")[2]

    def parameter(self) -> inspect.Parameter:
        info = declared(self.key, self.of)
        many = info.type == "list" and not self.comma
        kind = str if self.comma or self.parse else _TYPES.get(info.type, str)
        default = None if self.shown or many else ",".join(info.default) if self.comma else info.default
        words = self.shown.replace("{}", str(info.default)) or (", ".join(info.default) if many else "")
        more = " Repeat for several." if many else " Comma-separated." if self.comma else ""
        text = _with_default(info.describe() + more + (f" {self.note}" if self.note else ""), words)
        flag = "--" + self.param.replace("_", "-")
        if self.required or self.argument:
            typer_info = typer.Argument(... if self.required else default, help=text)
        elif kind is bool:
            typer_info = typer.Option(default, f"{flag}/--no-{flag[2:]}" if default else flag, help=text)
        else:
            typer_info = typer.Option(default, min=self.min, help=text)
        kind = List[kind] if many else kind
        return option(self.param, self.annotation or (Optional[kind] if default is None else kind), typer_info)

    def value(self, given: Any) -> Any:
        """The setting's value from the option's; None where it leaves the base value (not given, a flag that
        is off unless given)."""
        if given is None or (isinstance(given, (list, tuple)) and not given):
            return None
        if given is False:
            return False if declared(self.key, self.of).default else None  # --no-x; or --x not given
        if self.comma:
            return tuple(part.strip() for part in given.split(",") if part.strip())
        if self.parse:
            return self.parse(given, "--" + self.param.replace("_", "-"))
        return tuple(given) if isinstance(given, (list, tuple)) else given


def option(name: str, annotation: Any, typer_info: Any) -> inspect.Parameter:
    """A command parameter that is no setting: `typer_info` is its typer.Option or typer.Argument."""
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=typer_info, annotation=annotation)


def with_parameters(*table: Any) -> Callable:
    """Decorator: the command takes `table`'s parameters (Exposed settings and `option`s, in that order) as
    keyword arguments; typer reads them from the signature this sets."""

    def apply(command: Callable) -> Callable:
        command.__signature__ = inspect.Signature(
            [entry.parameter() if isinstance(entry, Exposed) else entry for entry in table])
        return command

    return apply


def changes(table: tuple, given: dict[str, Any]) -> dict[str, Any]:
    """lth.runs.settings.replace's changes ('train__lr': 0.1) from the given values of `table`'s RunSettings
    options; an option not given changes nothing."""
    from lth.core.config import describe
    from lth.runs.settings import RunSettings

    run = {info.key for info in describe(RunSettings)}
    values = {entry.key.replace(".", "__"): entry.value(given[entry.param])
              for entry in table if isinstance(entry, Exposed) and entry.of is None and entry.key in run}
    return {key: value for key, value in values.items() if value is not None}


def values(table: tuple, given: dict[str, Any], of: type) -> dict[str, Any]:
    """The fields of the settings class `of` that `table`'s options set ({'lr': 0.1}), for `of(**...)` or
    lth.core.config.build; an option not given sets none, so its field keeps the declared default."""
    found = {entry.key: entry.value(given[entry.param])
             for entry in table if isinstance(entry, Exposed) and entry.of is of}
    return {key: value for key, value in found.items() if value is not None}


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


def run_name(*parts: str) -> str:
    """A default run folder name from model, dataset ...: 'nets.py:MLP' and 'data/mine.npz' become 'nets-MLP' and
    'mine', so a name never makes subfolders or holds characters a shell would read."""
    import re

    def part(text: str) -> str:
        text = text.replace(":", "-").rsplit("/", 1)[-1]
        for suffix in (".py-", ".npz", ".pth", ".pt", ".py"):
            text = text.replace(suffix, "-" if suffix.endswith("-") else "")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("-_") or "x"

    return "-".join(part(p) for p in parts)


class ProgressReporter:
    """Progress of each round (lth.runs.run.Reporter): a live bar in a terminal, a plain line every
    `every` seconds otherwise (a pipe, a log file, CI), so a long round shows progress in logs too.

    In a terminal the bar is the part that shrinks: the iteration count, the time spent and left, and the
    last evaluation stay whole at 80 columns.
    """

    def __init__(self, quiet: bool, every: float = 30.0):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.quiet, self.every = quiet, every
        self.live = console.is_terminal and not quiet
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(bar_width=None), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=console, disable=not self.live, expand=True,
        )
        self.task = None
        self.label, self.info, self.whose, self.last_line, self.started = "", "", "", 0.0, 0.0

    def __enter__(self) -> "ProgressReporter":
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def begin(self, label: str) -> None:
        """A new stretch of training, named `label`."""
        import time

        self.label, self.info, self.started, self.last_line = label, "", time.monotonic(), time.monotonic()
        self.task = self.bar.add_task(label, total=None, info="")

    def round_started(self, round_index: int, weights_remaining: float, networks: int) -> None:
        what = f" x{networks}" if networks > 1 else ""
        self.begin(f"r{round_index:02d} {100 * weights_remaining:.1f}%{what}")
        self.whose = "t0 " if networks > 1 else ""  # the evaluation shown is trial 0's ticket's

    def progress(self, iteration: int, total: int, point: Optional[dict]) -> None:
        import time

        if self.task is None:
            return
        if point is not None:  # the first network's (trial 0's ticket's) last evaluation
            loss = f"loss {point['val_loss']:.3f} " if "val_loss" in point else ""
            self.info = f"{self.whose}{loss}{headline_words(point)}"
        self.bar.update(self.task, completed=iteration, total=total, info=self.info)
        now = time.monotonic()
        if not self.live and not self.quiet and (now - self.last_line >= self.every or iteration == total):
            self.last_line = now
            spent = now - self.started
            left = spent / iteration * (total - iteration) if iteration else float("nan")
            console.print(f"{self.label}: it {iteration}/{total} ({100 * iteration / max(total, 1):.0f}%), "
                          f"{spent:.0f} s, ~{left:.0f} s left" + (f", {self.info}" if self.info else ""),
                          highlight=False, soft_wrap=True)

    def round_finished(self, record: dict, skipped: bool) -> None:
        if skipped:
            self.bar.console.print(f"round {record['round']:2d}: already finished, skipped", highlight=False)
        self.task = None


def headline_words(point: dict) -> str:
    """'acc 96.2%' / 'rmse 0.213': the test headline metric of an evaluation point (lth.tasks)."""
    from lth.tasks import TASKS, get_task

    for name in TASKS:
        metric = get_task(name).headline
        value = point.get(f"test_{metric.name}")
        if value is not None:
            return f"{metric.name} {metric.brief(value)}"
    return ""


# Names a researcher types back into commands and params.yaml: never broken across lines, even when
# the output is not a terminal and rich falls back to 80 columns. Other cells fold rather than end in "…".
TYPED_COLUMNS = {"name", "dataset", "optimizer", "action", "setting"}


def registry_table(title: str, columns: tuple[str, ...]) -> Table:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, no_wrap=column in TYPED_COLUMNS, overflow="fold")
    return table
