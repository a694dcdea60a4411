"""Stage `summary`: metrics/summary.json (dvc metrics / exp show), metrics/networks.csv and the plot data
for `dvc plots`, over the declared rounds (stale files of removed rounds are ignored)."""

from __future__ import annotations

from stages._common import run, workspace


def main() -> None:
    from lth.steps import summary

    ws = workspace()
    records = summary.run(ws)
    print(f"summary of {len(records)} rounds -> {ws.layout.summary}")


if __name__ == "__main__":
    run(main)
