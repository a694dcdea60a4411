"""Stage `summary`: metrics/summary.json (dvc metrics / exp show), metrics/networks.csv and the plot data
for `dvc plots`, over the declared rounds; the results of rounds no longer declared are removed."""

from __future__ import annotations

from stages._common import run_stage, workspace


def main() -> None:
    from lth.steps import summary

    ws = workspace()
    records = summary.execute(ws)
    print(f"summary of {len(records)} rounds -> {ws.layout.summary}")
    stale = summary.remove_undeclared_rounds(ws)
    if stale:
        print(f"removed the results of rounds no longer declared in params.yaml: {', '.join(stale)}")


if __name__ == "__main__":
    run_stage(main)
