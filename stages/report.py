"""Stage `report`: report/index.html, report.md, PNGs and CSVs of this workspace's declared rounds."""

from __future__ import annotations

from stages._common import run


def main() -> None:
    from lth.engine import layout as pipeline
    from lth.report import make_report

    files = make_report(["."], pipeline.REPORT)
    print(f"report of this workspace -> {pipeline.REPORT / 'index.html'} ({len(files)} files)")


if __name__ == "__main__":
    run(main)
