"""Steps per second of lth's single-network trainer vs. the training loop common LTH code uses, in one run.

The baseline is what open_lth-style code does: a torch DataLoader over PIL images with per-sample
ToTensor + Normalize, then the same masked Adam step. Both train LeNet-300-100 at batch 60 on the
mnist-5k digits under a 50% mask; steps are timed by difference (fixed costs cancel out).

    .venv/bin/python benchmarks/train_speed.py [--steps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import torch

from batched_speed import machine, time_dataloader, time_single
from lth.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    splits = load_dataset("mnist-5k", "data/datasets")
    shape = (1, 28, 28)
    ours = 1 / time_single("lenet-300-100", shape, splits, args.steps, 1.2e-3, "cpu")
    baseline = 1 / time_dataloader("lenet-300-100", shape, splits, args.steps, 1.2e-3, "cpu")
    where = f"{machine('cpu')}, torch {torch.__version__}"
    print(f"LeNet-300-100, batch 60, mnist-5k ({where})\n")
    print("| trainer | steps/s | ms/step |")
    print("|---|---:|---:|")
    print(f"| lth trainer (resident tensors, fused masked Adam) | {ours:,.0f} | {1000 / ours:.2f} |")
    print(f"| DataLoader + per-sample PIL transforms (common LTH code) | {baseline:,.0f} | {1000 / baseline:.2f} |")
    print(f"\nspeed-up: {ours / baseline:.1f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": where, "steps": args.steps, "lth_steps_per_s": ours,
                       "dataloader_steps_per_s": baseline, "ratio": ours / baseline}, handle, indent=2)


if __name__ == "__main__":
    main()
