"""What every stage shares: `--round`, the workspace as a Run, and errors as one line (exit 2)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable


def stage_argument(description: str, name: str, help: str) -> str:
    """Parse the one `--NAME VALUE` a stage declared once per item of a list (`foreach` in dvc.yaml) takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(f"--{name}", required=True, help=help)
    return getattr(parser.parse_args(), name)


def round_argument(description: str) -> str:
    """Parse `--round rNN`, returning the round name."""
    return stage_argument(description, "round", "round name as declared in params.yaml, e.g. r03")


def method_argument(description: str, group: str) -> str:
    """Parse `--method M` of a stage run once per method of the params group `group` (sparse_train, ...)."""
    return stage_argument(description, "method", f"a method under {group}.methods in params.yaml")


def run_stage(stage: Callable[[], None]) -> None:
    """Run a stage (in a fork of the warm server, stages/_warm.py, when one is up): a bad value or file, an
    interruption (Ctrl-C, SIGTERM: the train stages save their state first) or any unexpected error is one
    line on stderr and exit code 2 (LTH_DEBUG=1 shows an unexpected error's traceback)."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:  # `python -m stages.X`: run in a fork of the warm server when there is one
        from stages._warm import run_in_server

        status = run_in_server(spec.name)
        if status is not None:
            sys.exit(status)
    from lth.core import timing
    from lth.core.failures import report_failures
    from lth.core.interrupt import graceful_stop

    def body() -> None:
        with graceful_stop():
            stage()

    def tell_error(text: str) -> None:
        print(f"error: {text}", file=sys.stderr)

    def tell_interrupted(text: str) -> None:
        print(f"error: {text or 'interrupted'}; rerun `dvc repro` to continue (finished stages are kept)",
              file=sys.stderr)

    timing.mark("main")
    try:
        report_failures(body, tell_error, tell_interrupted, 2)
    finally:
        timing.write_record()  # LTH_PROFILE only (benchmarks/pipeline_profile.py)


def workspace(**options: Any):
    """The DVC workspace (params.yaml in the current directory) as a Run."""
    from lth.runs.run import open_workspace
    from lth.experiments.settings import workspace_experiments

    ws = open_workspace(".", **options)
    workspace_experiments(ws)  # params.yaml checked whole, as `lth check-params` does: no late failure after training
    return ws
