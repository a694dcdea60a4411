"""Stage `exp_<name>`: one research experiment (lth.experiments) on the pipeline's artifacts;
writes metrics/experiments/<name>.json."""

from __future__ import annotations

import argparse

from stages._common import run


def main() -> None:
    from lth.core import files as artifacts
    from lth.experiments import EXPERIMENTS, experiment_module
    from lth.experiments.common import metrics_path

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True, help=f"experiment: {', '.join(EXPERIMENTS)}")
    name = parser.parse_args().name
    metrics = experiment_module(name).run_stage()
    artifacts.write_json(metrics_path(name), metrics)
    print(f"{name}: {metrics_path(name)}")


if __name__ == "__main__":
    run(main)
