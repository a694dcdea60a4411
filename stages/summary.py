"""Stage `summary`: metrics/summary.json (dvc metrics / exp show) and the plot data for `dvc plots`."""

from __future__ import annotations

from stages._common import run


def main() -> None:
    from lth import artifacts, pipeline
    from lth.params import DENSE_ROUND, load_params
    from lth.summary import dvc_summary, learning_curve_rows, plot_rows

    rounds = [DENSE_ROUND, *load_params().rounds]  # only declared rounds: stale files of removed ones are ignored
    results = [artifacts.read_json(pipeline.round_metrics(r)) for r in rounds]
    curves = {m["round"]: artifacts.read_json(pipeline.round_curve(r)) for r, m in zip(rounds, results)}
    artifacts.write_json(pipeline.SUMMARY, dvc_summary(results))
    artifacts.write_json(pipeline.ACCURACY_PLOT, plot_rows(results))
    artifacts.write_json(pipeline.CURVES_PLOT, learning_curve_rows(results, curves))
    print(f"summary of {len(results)} rounds -> {pipeline.SUMMARY}")


if __name__ == "__main__":
    run(main)
