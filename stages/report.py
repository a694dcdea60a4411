"""Stage `report`: report/index.html, report.md, PNGs and CSVs of this workspace's declared rounds and its
pruning-at-init methods (metrics/prune_at_init) and sparse-training methods (metrics/sparse_train)."""

from __future__ import annotations

from stages._common import run_stage


def main() -> None:
    from lth.runs.layout import Layout
    from lth.report import make_report

    out = Layout(".").report
    written = make_report(["."], out)
    print(f"report of this workspace -> {out / 'index.html'} ({len(written)} files)")


if __name__ == "__main__":
    run_stage(main)
