"""`python -m lth datasets ...`: prepare datasets ahead of a run (parsing and printing only; the work is in
lth.datasets, imported inside the command so `--help` stays instant)."""

from __future__ import annotations

from pathlib import Path

import typer

from lth.ui import console, setting_help

app = typer.Typer(
    help="Prepare datasets ahead of a run: synthesise tts-digits, download and cache speech-digits, download others.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("build")
def build(
    name: str = typer.Argument(..., help="A registered dataset (lth list datasets), e.g. tts-digits or "
                                         "speech-digits."),
    dataset_dir: Path = typer.Argument(Path("data/datasets"), help=setting_help("dataset_dir")),
    rebuild: bool = typer.Option(False, "--rebuild", help="Synthesise tts-digits again even when its file exists."),
) -> None:
    """Make a dataset's files ready in DATASET_DIR (built or downloaded when missing); print where, and split sizes."""
    from lth.datasets import prepare_dataset

    where, splits = prepare_dataset(name, dataset_dir, rebuild)
    sizes = ", ".join(f"{split} {len(getattr(splits, f'{split}_y'))}" for split in ("train", "val", "test"))
    place = where if where is not None else "no files (made in memory on every load)"
    console.print(f"{name}: {place} ({sizes})", highlight=False, soft_wrap=True)
