"""Reports: turn finished (or running) lottery-ticket runs into pictures and tables researchers expect.

`make_report(["runs/a", "exp-1234"], Path("report"))` resolves each source (run directory, DVC
workspace or DVC experiment), then writes report/index.html, report.md, PNGs and CSVs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def make_report(sources: Iterable[str], out: Path, repo: str = ".", all_experiments: bool = False,
                x_axis: str = "weights") -> list[Path]:
    """`x_axis`: 'weights' (weights remaining) or 'effective' (effective weights remaining) on the x axis of the
    accuracy-vs-sparsity figures."""
    from lth.report.document import write_report
    from lth.report.sources import resolve

    return write_report(resolve(sources, repo=repo, all_experiments=all_experiments), out, x_axis)
