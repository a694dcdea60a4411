"""What the mask updates of sparse training (SET, RigL: lth.training.sparse) cost, amortised over training steps.

Trains LeNet-300-100 on the mnist-5k digits at 10% weights (ERK), 2 trials batched as in `lth sparse-train`,
once per method, in turn for several rounds on one machine: static (the same training loop and hook, no
mask update) is the baseline. The amortised cost of an update per step is (method - static) / static; the
target is under 5% at the papers' cadence (an update every 100 steps until 75% of training). Evaluation
runs only at the start and the end, so the figures are about steps.

    .venv/bin/python benchmarks/sparse_update_cost.py [--steps 1200] [--update-every 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from lth.datasets import load_dataset
from lth.runs.settings import RunSettings, TrainSettings
from lth.experiments.sparse_train import sparse_train
from lth.training.sparse import SparseSchedule

METHODS = ("static", "set", "rigl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--update-every", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    splits = load_dataset("mnist-5k", "data/datasets").to(args.device)
    train = TrainSettings(optimizer="adam", lr=1.2e-3, batch_size=60, duration=f"{args.steps}it",
                          eval_every=f"{args.steps}it")
    settings = RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train)
    schedule = SparseSchedule(update_every=args.update_every)
    seconds: dict[str, list[float]] = {m: [] for m in METHODS}
    updates: dict[str, int] = {}
    sparse_train(settings, splits, ["rigl"], ["erk"], [0.1], SparseSchedule(update_every=10), 1)  # warm up
    for _ in range(args.rounds):
        for method in METHODS:
            began = time.perf_counter()
            entries = sparse_train(settings, splits, [method], ["erk"], [0.1], schedule, args.trials)
            seconds[method].append(time.perf_counter() - began)
            updates[method] = len(entries[0]["updates"])

    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, device {args.device}: LeNet-300-100, 10% weights (ERK), {args.trials} trials batched, "
          f"{args.steps} steps, an update every {args.update_every} steps until 75%; median of {args.rounds} rounds")
    base = statistics.median(seconds["static"])
    print(f"{'method':8} {'s':>8} {'ms/step':>8} {'updates':>8} {'amortised cost/step':>20} {'one update (steps)':>19}")
    for method in METHODS:
        t = statistics.median(seconds[method])
        extra = (t - base) / base
        per_update = (t - base) / updates[method] / (base / args.steps) if updates[method] else 0.0
        print(f"{method:8} {t:8.2f} {1000 * t / args.steps:8.3f} {updates[method]:8d} {100 * extra:19.1f}% "
              f"{per_update:19.2f}")


if __name__ == "__main__":
    main()
