"""Stage `summary`: metrics/summary.json (dvc metrics / exp show) and the plot data for `dvc plots`."""

from __future__ import annotations

from stages._common import run


def main() -> None:
    from lth.core import files as artifacts
    from lth.engine import layout as pipeline
    from lth.engine.params import DENSE_ROUND, load_params
    from lth.engine.summary import dvc_summary, layer_rows, learning_curve_rows, plot_rows

    rounds = [DENSE_ROUND, *load_params().rounds]  # only declared rounds: stale files of removed ones are ignored
    records = [artifacts.read_json(pipeline.round_metrics(r)) for r in rounds]
    artifacts.write_json(pipeline.SUMMARY, dvc_summary(records))
    artifacts.write_json(pipeline.ACCURACY_PLOT, plot_rows(records))
    artifacts.write_json(pipeline.CURVES_PLOT, learning_curve_rows(records))
    artifacts.write_json(pipeline.LAYERS_PLOT, layer_rows(records))
    print(f"summary of {len(records)} rounds -> {pipeline.SUMMARY}")


if __name__ == "__main__":
    run(main)
