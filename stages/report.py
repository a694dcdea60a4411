"""Stage `report`: report/index.html, report.md, PNGs and CSVs of this workspace's declared rounds and its
pruning-at-init methods (metrics/prune_at_init) and sparse-training methods (metrics/sparse_train)."""

from __future__ import annotations

from stages._common import run


def main() -> None:
    from lth.engine.layout import Layout
    from lth.report import make_report

    out = Layout(".").report
    written = make_report(["."], out)
    print(f"report of this workspace -> {out / 'index.html'} ({len(written)} files)")


if __name__ == "__main__":
    run(main)
