"""Steps/s and µs per network-step: single-network trainer, batched trainer at N networks, DataLoader baseline.

All figures come from one run on the machine it runs on, each trainer in a process of its own, the
trainers measured in turn for several rounds (`Trainers`).
LeNet-300-100 trains on the mnist-5k digits; Conv-6 on a CIFAR-shaped random set (3x32x32; only speed
is measured). The baseline is the loop common
LTH code uses: a DataLoader over PIL images with per-sample transforms, one network at a time.

    .venv/bin/python benchmarks/batched_speed.py [--networks 1 4 16 32] [--json results.json] [--device cpu]
        [--precision fp32 bf16] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from lth.training.batched import train_batched
from lth.datasets import Splits, load_dataset
from lth.models import build_model
from lth.training.precision import PRECISIONS
from lth.training.settings import TrainSettings
from lth.training.loop import train

CASES = {
    # model: (input shape, optimizer lr, steps timed on CPU, steps timed on GPU)
    "lenet-300-100": ((1, 28, 28), 1.2e-3, 200, 2000),
    "conv-6": ((3, 32, 32), 3e-4, 4, 300),
}


def cifar_like(n: int = 1200, device: str = "cpu") -> Splits:
    g = torch.Generator().manual_seed(0)
    make = lambda k: (torch.randn(k, 3, 32, 32, generator=g), torch.randint(0, 10, (k,), generator=g))  # noqa: E731
    (tx, ty), (vx, vy), (sx, sy) = make(n), make(100), make(100)
    return Splits("cifar-like", tx, ty, vx, vy, sx, sy, 10, True).to(device)


def masks_for(model, count: int):
    g = torch.Generator().manual_seed(1)
    return [{n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters()
             if n in model.prunable_layers()} for _ in range(count)]


def machine(device: str) -> str:
    """What the figures were measured on, as the tables print it (CPU figures differ a lot by model)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{cpu_name()}, {torch.get_num_threads()} threads"


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one, and whether it has AMX (fast bf16 matmuls)."""
    name, flags = "", ""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not name:
                    name = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = value
    except OSError:
        pass
    name = f"{name or platform.processor() or 'unknown'} ({platform.machine()} CPU)"
    return name + (" with AMX" if "amx_bf16" in flags.split() else "")


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def per_step(run: Callable[[int], None], steps: int) -> float:
    """Seconds per step, by difference: (time of 2*steps) - (time of steps), over steps.

    Fixed costs (set-up, the evaluations at start and end) cancel out.
    """
    times = []
    for count in (steps, 2 * steps):
        start = time.perf_counter()
        run(count)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / steps


def single_run(name, shape, splits, lr, device, precision="fp32") -> Callable[[int], None]:
    model = build_model(name, shape, 10, seed=0).to(device)
    mask = {k: v.to(device) for k, v in masks_for(model, 1)[0].items()}

    def run(count: int) -> None:
        train(model, mask, splits, TrainSettings(lr=lr, batch_size=60, duration=f"{count}it",
                                                 eval_every=f"{count}it", precision=precision), seed=0)
        sync(device)

    return run


def batched_run(name, shape, splits, lr, count, device, precision="fp32") -> Callable[[int], None]:
    model = build_model(name, shape, 10, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    masks = masks_for(model, count)

    def run(iterations: int) -> None:
        train_batched(model, [state] * count, masks, splits, TrainSettings(lr=lr, batch_size=60,
                      duration=f"{iterations}it", eval_every=f"{iterations}it", precision=precision),
                      list(range(count)))
        sync(device)

    return run


def dataloader_run(name, shape, splits, lr, device) -> Callable[[int], None]:
    """open_lth-style: uint8 images -> PIL -> per-sample transforms in a DataLoader, masked Adam."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    raw = splits.train_x.cpu()
    images = ((raw - raw.min()) / (raw.max() - raw.min()) * 255).to(torch.uint8)
    labels = splits.train_y.cpu()
    channels = shape[0]
    steps_list = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()] if channels == 3 else []
    transform = transforms.Compose([*steps_list, transforms.ToTensor(), transforms.Normalize([0.5] * channels,
                                                                                              [0.25] * channels)])

    class PilImages(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            array = images[i].permute(1, 2, 0).numpy()
            pil = Image.fromarray(array[:, :, 0] if channels == 1 else np.ascontiguousarray(array))
            return transform(pil), int(labels[i])

    loader = DataLoader(PilImages(), batch_size=60, shuffle=True, drop_last=True)
    model = build_model(name, shape, 10, seed=0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    weights = [p for n, p in model.named_parameters() if n in model.prunable_layers()]
    masks = [m.float().to(device) for m in masks_for(model, 1)[0].values()]

    def run(n: int) -> None:
        done = 0
        while True:
            for x, y in loader:
                x, y = x.to(device), y.to(device)
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

    def timed(count: int) -> None:
        run(count)
        sync(device)

    return timed


def warm_up(run: Callable[[int], None], steps: int) -> None:
    """A quarter of a measurement's steps first: the allocator and lazy initialisation settle."""
    run(max(2, steps // 4))


def time_single(name, shape, splits, steps, lr, device, precision="fp32") -> float:
    """Seconds per step of the single-network trainer, warmed up, in this process."""
    run = single_run(name, shape, splits, lr, device, precision)
    warm_up(run, steps)
    return per_step(run, steps)


def time_dataloader(name, shape, splits, steps, lr, device) -> float:
    """Seconds per step of the DataLoader baseline, warmed up, in this process."""
    run = dataloader_run(name, shape, splits, lr, device)
    warm_up(run, steps)
    return per_step(run, steps)


def make_run(trainer: str, name: str, device: str, precision: str = "fp32", count: int = 1) -> Callable[[int], None]:
    """run(steps): one trainer training `steps` steps from scratch, set up in the process that calls it."""
    shape, lr, _, _ = CASES[name]
    splits = load_dataset("mnist-5k", "data/datasets").to(device) if shape[0] == 1 else cifar_like(device=device)
    if trainer == "dataloader":
        return dataloader_run(name, shape, splits, lr, device)
    if trainer == "single":
        return single_run(name, shape, splits, lr, device, precision)
    return batched_run(name, shape, splits, lr, count, device, precision)


def serve(conn, steps: int, job: tuple) -> None:
    """A resident trainer: set up once, warm up, then one `per_step` measurement per request."""
    run = make_run(*job)
    warm_up(run, steps)
    conn.send("ready")
    while conn.recv():
        conn.send(per_step(run, steps))


PAUSE = 0.5  # seconds between two trainers' measurements: the last one's OpenMP threads stop spinning


class Trainers:
    """Every trainer in its own resident process, measured in turn, round after round.

    Each trainer runs in a process of its own (as every DVC stage and CLI run is one; in one process the
    trainers disturb each other: on an AMD EPYC the single-network LeNet step took 1.8 ms before the
    DataLoader baseline ran and 2.7 ms after it). They are set up once and then take turns, one short
    measurement each per round, so the measurements of one round lie seconds apart: on a shared CPU whose
    speed drifts by tens of percent over minutes, ratios within a round mostly cancel that drift.
    """

    def __init__(self, jobs: list[tuple], steps: int):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.processes = [], []
        for job in jobs:
            ours, theirs = context.Pipe()
            process = context.Process(target=serve, args=(theirs, steps, job), daemon=True)
            process.start()
            ours.recv()  # set up and warmed up, one trainer at a time
            self.pipes.append(ours)
            self.processes.append(process)

    def round(self) -> list[float]:
        """Seconds per step of every trainer, measured one after another."""
        times = []
        for pipe in self.pipes:
            time.sleep(PAUSE)
            pipe.send(True)
            times.append(pipe.recv())
        return times

    def close(self) -> None:
        for pipe, process in zip(self.pipes, self.processes):
            pipe.send(False)
            process.join()


def batching_ratios(single: list[float], batched: list[float], count: int) -> list[float]:
    """Throughput of `count` networks batched over `count` single-network runs, once per round.

    Each ratio pairs the two measurements of one round (`Trainers`), taken seconds apart; a ratio of
    medians taken at different times would mix the machine's drift in.
    """
    return [count * s / b for s, b in zip(single, batched)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--models", nargs="+", default=list(CASES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply the number of timed steps")
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=PRECISIONS,
                        help="train.precision of lth's trainers (the DataLoader baseline stays fp32)")
    parser.add_argument("--rounds", type=int, default=7,
                        help="measure every trainer this many times, in turn, and keep the median")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    device = args.device
    where = machine(device)
    results = {"machine": where, "torch": torch.__version__, "rows": []}
    print(f"# lth training speed on {where} (torch {torch.__version__})\n")
    print("| model | trainer | precision | networks | steps/s | µs per network-step | vs DataLoader |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.models:
        _, _, cpu_steps, gpu_steps = CASES[name]
        steps = max(2, int((gpu_steps if device == "cuda" else cpu_steps) * args.steps_scale))
        jobs = [("DataLoader + per-sample transforms", "fp32", 1, ("dataloader", name, device))]
        for precision in args.precision:
            jobs.append(("lth single-network", precision, 1, ("single", name, device, precision)))
            jobs += [("lth batched", precision, count, ("batched", name, device, precision, count))
                     for count in args.networks]
        trainers = Trainers([job[3] for job in jobs], steps)
        times: list[list[float]] = [[] for _ in jobs]
        for _ in range(args.rounds):
            for measured, seconds in zip(times, trainers.round()):
                measured.append(seconds)
        trainers.close()
        results.setdefault("rounds", {}).update({f"{name}/{trainer}/{precision}/{count}": measured
                                                 for (trainer, precision, count, _), measured in zip(jobs, times)})
        rows = [(trainer, precision, count, statistics.median(measured))
                for (trainer, precision, count, _), measured in zip(jobs, times)]
        baseline = rows[0][3]
        for trainer, precision, count, seconds in rows:
            per_network = seconds / count
            print(f"| {name} | {trainer} | {precision} | {count} | {1 / seconds:,.1f} | {1e6 * per_network:,.0f} | "
                  f"{baseline / per_network:.1f}x |")
            results["rows"].append({"model": name, "trainer": trainer, "precision": precision, "networks": count,
                                    "seconds_per_step": seconds, "us_per_network_step": 1e6 * per_network,
                                    "speedup_vs_dataloader": baseline / per_network})
        for precision in args.precision:
            single = next(t for (trainer, p, _, _), t in zip(jobs, times) if trainer == "lth single-network" and p == precision)
            batched = {count: measured for (trainer, p, count, _), measured in zip(jobs, times)
                       if trainer == "lth batched" and p == precision and count > 1}
            ratios = {count: batching_ratios(single, measured, count) for count, measured in batched.items()}
            for count, measured in batched.items():
                print(f"\n{name} ({precision}): {count} networks batched = {statistics.median(ratios[count]):.2f}x "
                      f"the throughput of {count} sequential single-network runs (the median of the rounds' ratios "
                      f"{', '.join(f'{r:.2f}x' for r in ratios[count])}; from each trainer's fastest round: "
                      f"{count * min(single) / min(measured):.2f}x)", end="")
            results.setdefault("ratios", {})[f"{name}/{precision}"] = ratios
        print("\n")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
