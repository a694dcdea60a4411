"""Measurement: what compaction buys (parameters, MACs, CPU speed) and the check that it changed nothing.

The compacted network's outputs equal the masked network's to float tolerance (`compare_outputs`, checked
every time a ticket is compacted); sizes and speeds are compared with the unpruned architecture
(`dense_reference`).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import torch
from torch import Tensor, nn

from lth.compact.export import export_bytes
from lth.models import build_model
from lth.models.layers import CONVOLUTIONS, PRUNABLE

RTOL, ATOL = 1e-4, 1e-4  # compaction reorders float sums (folded constants), nothing more


def count_params(network: nn.Module, nonzero: bool = False) -> int:
    """Parameters (weights, biases, BatchNorm affine), or only the nonzero ones."""
    return sum(int(torch.count_nonzero(p)) if nonzero else p.numel() for p in network.parameters())


def count_macs(network: nn.Module, input_shape: tuple[int, ...], nonzero: bool = False) -> int:
    """Multiply-accumulates of one sample through every Linear/Conv (only nonzero weights if `nonzero`)."""
    total = 0

    def hook(module: nn.Module, args: Any, out: Tensor) -> None:
        nonlocal total
        weights = int(torch.count_nonzero(module.weight)) if nonzero else module.weight.numel()
        positions = out[0].numel() // out.shape[1] if isinstance(module, CONVOLUTIONS) else 1
        total += weights * positions

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, PRUNABLE)]
    try:
        with torch.no_grad():
            network(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return total


def time_forward(network: nn.Module, x: Tensor, budget_s: float = 0.3, min_calls: int = 5) -> float:
    """Fastest seconds per forward pass of `x`, after warm-up, over at least `min_calls` calls or `budget_s`.

    The minimum, not the median: on a shared CPU other processes only ever add time, so the fastest
    call is the best estimate of what the network itself costs.
    """
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(3):
            network(x)
        spent = 0.0
        while len(times) < min_calls or spent < budget_s:
            start = time.perf_counter()
            network(x)
            times.append(time.perf_counter() - start)
            spent += times[-1]
    return min(times)


def benchmark(network: nn.Module, input_shape: tuple[int, ...], batch_size: int = 256,
              threads: int = 1) -> dict[str, float]:
    """CPU latency of one sample (ms) and throughput of `batch_size`-sample batches (samples/s).

    Timed on the eager module (the exported program runs the same ops plus ~0.05-0.1 ms of call overhead).

    One intra-op thread by default: on a shared CPU, multi-threaded ops wait for every thread to be
    scheduled, and the timings measure the neighbours' load more than the network.
    """
    g = torch.Generator().manual_seed(0)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one = time_forward(network, torch.randn(1, *input_shape, generator=g))
        batch = time_forward(network, torch.randn(batch_size, *input_shape, generator=g))
    finally:
        torch.set_num_threads(previous)
    return {"latency_ms": round(1e3 * one, 4), "throughput": round(batch_size / batch, 1),
            "batch_size": batch_size, "threads": threads}


def dense_reference(model: str, input_shape: tuple[int, ...], num_outputs: int,
                    run_benchmark: bool, batch_size: int = 256, threads: int = 1) -> dict:
    """The unpruned architecture's size and (optionally) speed: the baseline every round is compared with."""
    dense = build_model(model, input_shape, num_outputs, seed=0).eval()
    data = export_bytes(dense, input_shape)
    info: dict[str, Any] = {"params": count_params(dense), "macs": count_macs(dense, input_shape),
                            "file_bytes": len(data)}
    if run_benchmark:
        info["cpu"] = benchmark(dense, input_shape, batch_size, threads)
    return info


def compare_outputs(masked: nn.Module, compact: nn.Module, x: Tensor, y: Optional[Tensor] = None,
                    task: str = "classification", batch_size: int = 1000) -> dict[str, Any]:
    """Largest |difference| of the two networks' outputs on `x`, and, when targets are given, both networks'
    test metrics (the task's: `masked.end_test_acc`, `compact.end_test_acc` ...; the weights are the end of
    training)."""
    from lth.tasks import get_task
    from lth.training.evaluation import evaluate
    from lth.training.networks import SingleNetwork

    diff, same = 0.0, True
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            a, b = masked(x[start: start + batch_size]), compact(x[start: start + batch_size])
            diff = max(diff, float((a - b).abs().max()))
            same &= bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL))
    result: dict[str, Any] = {"max_abs_diff": diff, "outputs_match": same, "samples": len(x)}
    if y is not None:
        spec = get_task(task)
        for name, network in (("masked", masked), ("compact", compact)):
            measured = evaluate(SingleNetwork(network), x, y, spec, batch_size)
            result[name] = {f"end_test_{m.name}": float(measured[m.name][0]) for m in spec.metrics}
        masked.eval(), compact.eval()
    return result
