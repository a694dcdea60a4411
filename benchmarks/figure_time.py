"""How long Frankle & Carbin's LeNet figure takes here: trials x (ticket + controls) x rounds of IMP.

Runs the real `find_ticket` (all trials and control arms of a round batched, CUDA graphs on a GPU) for
a few short rounds on mnist-5k, times the dense round and the pruned rounds separately, and projects
the time of the full figure (default: 5 trials, reinit control, 21 rounds of 50,000 iterations) from
the measured seconds per iteration. The projection is printed as such, beside what was measured.

    .venv/bin/python benchmarks/figure_time.py [--iterations 2000] [--rounds 2] [--device cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from batched_speed import machine, sync
from lth.datasets import load_dataset
from lth.runs.run import SilentReporter
from lth.runs.settings import defaults_for, replace
from lth.steps.rounds import run_rounds
from lth.training.device import resolve_device
from lth.training.precision import PRECISIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet-300-100")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--control", nargs="*", default=["reinit"])
    parser.add_argument("--iterations", type=int, default=2000, help="iterations per measured round")
    parser.add_argument("--rounds", type=int, default=2, help="measured pruning rounds after the dense one (>= 1)")
    parser.add_argument("--figure-rounds", type=int, default=21)
    parser.add_argument("--figure-iterations", type=int, default=50_000)
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1: one pruned round after the dense one")

    device = resolve_device(args.device)
    splits = load_dataset("mnist-5k", "data/datasets").to(device)
    settings = replace(defaults_for(args.model, "mnist-5k"), trials=args.trials, controls=tuple(args.control),
                       train__duration=f"{args.iterations}it", train__precision=args.precision).validate()
    networks = args.trials * (1 + len(args.control))
    class Clock(SilentReporter):
        """When each round finished (a round: score, mask, rewind and train)."""

        finished: list[float] = []

        def round_finished(self, record: dict, skipped: bool) -> None:
            sync(device.type)
            self.finished.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        run_rounds(settings, args.rounds, Path(out), splits, Clock())
        dense = Clock.finished[0] - start
        pruned = (Clock.finished[-1] - Clock.finished[0]) / args.rounds
    scale = args.figure_iterations / args.iterations
    projected = (dense + (args.figure_rounds - 1) * pruned) * scale
    where = machine(device.type)
    result = {
        "machine": where, "torch": torch.__version__, "model": args.model, "precision": args.precision,
        "trials": args.trials, "controls": args.control, "networks_per_pruned_round": networks,
        "measured_iterations_per_round": args.iterations, "measured_rounds": args.rounds,
        "dense_round_seconds": dense, "pruned_round_seconds": pruned,
        "network_steps_per_second": networks * args.iterations / pruned,
        "projected_figure_minutes": projected / 60,
        "figure": f"{args.trials} trials x {1 + len(args.control)} arms x {args.figure_rounds} rounds x "
                  f"{args.figure_iterations} iterations",
    }
    print(f"# {args.model} IMP figure on {where} (torch {torch.__version__}, {args.precision})\n")
    print(f"measured: dense round ({args.trials} networks, {args.iterations} it) {dense:.1f} s; pruned round "
          f"({networks} networks, {args.iterations} it) {pruned:.1f} s = {result['network_steps_per_second']:,.0f} "
          f"network-steps/s (evaluation every 100 it, pruning and rewinding included)")
    print(f"projected from these: {result['figure']} = {projected / 60:.1f} minutes")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
