"""Stage `exp_<name>`: one research experiment (lth.experiments) on the workspace's finished rounds;
writes metrics/experiments/<name>.json."""

from __future__ import annotations

from stages._common import run_stage, stage_argument, workspace


def main() -> None:
    from lth.core import files
    from lth.experiments.registry import EXPERIMENTS, experiment_module

    name = stage_argument(__doc__, "name", f"experiment: {', '.join(EXPERIMENTS)}")
    ws = workspace()
    metrics = experiment_module(name).run_stage(ws)
    files.write_json(ws.layout.experiment_metrics(name), metrics)
    print(f"{name}: {ws.layout.experiment_metrics(name)}")


if __name__ == "__main__":
    run_stage(main)
