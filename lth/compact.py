"""Compaction: turn a masked ticket into a physically smaller dense network, and measure what it buys.

A unit (neuron / conv channel, see `lth.pruning.structured`) is cut out when it is *dead*:
- dead-out: all its outgoing weights (input columns of its consumers, among their surviving rows) are
  zero, so its value never reaches the output (unstructured masks make these by pruning columns);
- dead-in: all its incoming weights (among surviving input columns) are zero, so its value is a
  constant (activation of its bias / BatchNorm shift). Its constant contribution to each consumer is
  measured from the masked network itself and folded into the consumer: into the bias of a Linear, or,
  for a padded conv whose borders see the constant differently, into a fixed per-position offset.
Removing units can make others dead, so the search runs to a fixpoint. A layer always keeps at least
one unit, the output layer's units (classes) and the network's input are never removed.

The compacted network is the model's own module tree with smaller tensors, exported with
`torch.export` (`torch.export.load(path).module()(x)` needs nothing from lth), and its outputs equal
the masked network's to float tolerance (checked every time).
"""

from __future__ import annotations

import copy
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from lth.core import files
from lth.core.errors import LthError
from lth.core.masks import apply_mask
from lth.models import build_model
from lth.models.layers import CONVOLUTIONS, PRUNABLE, prunable_layers
from lth.pruning.structured import UnitLayer, unit_layers, unit_span

RTOL, ATOL = 1e-4, 1e-4  # compaction reorders float sums (folded constants), nothing more
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# --- which units are dead ------------------------------------------------------------------------------


@dataclass
class UnitPlan:
    """Per unit layer: which units stay, and why the others go."""

    keep: Tensor  # bool (units,)
    dead_in: Tensor  # bool (units,): removed with a constant value (folded into the consumers)
    dead_out: Tensor  # bool (units,): removed, its value never reached the output


def _connections(weight: Tensor) -> Tensor:
    """(out, in) bool: whether any weight links output unit o to input column i (kernels reduced)."""
    nonzero = weight != 0
    return nonzero.flatten(2).any(2) if nonzero.dim() > 2 else nonzero


def plan_units(layers: list[UnitLayer], weights: Mapping[str, Tensor]) -> dict[str, UnitPlan]:
    """Find every dead unit of `weights` (the masked tensors), iterating until no removal exposes another."""
    links = {name: _connections(w.detach().cpu()) for name, w in weights.items()}
    keep = {layer.weight: torch.ones(weights[layer.weight].shape[0], dtype=torch.bool) for layer in layers}
    feeders: dict[str, list[UnitLayer]] = {}
    for layer in layers:
        for consumer in layer.consumers:
            feeders.setdefault(consumer, []).append(layer)

    def kept_columns(name: str) -> Tensor:
        columns = torch.ones(links[name].shape[1], dtype=torch.bool)
        for producer in feeders.get(name, []):
            span = unit_span(tuple(weights[producer.weight].shape), tuple(weights[name].shape))
            columns &= keep[producer.weight].repeat_interleave(span)
        return columns

    def kept_rows(name: str) -> Tensor:
        return keep.get(name, torch.ones(links[name].shape[0], dtype=torch.bool))

    dead_in = {name: torch.zeros_like(k) for name, k in keep.items()}
    dead_out = {name: torch.zeros_like(k) for name, k in keep.items()}
    changed = True
    while changed:
        changed = False
        for layer in layers:
            name = layer.weight
            has_in = (links[name] & kept_columns(name)[None, :]).any(1)
            has_out = torch.zeros_like(has_in)
            for consumer in layer.consumers:
                span = unit_span(tuple(weights[name].shape), tuple(weights[consumer].shape))
                reach = (links[consumer] & kept_rows(consumer)[:, None]).any(0)
                has_out |= reach.view(-1, span).any(1)
            new_keep = keep[name] & has_in & has_out
            if not new_keep.any():  # a layer keeps one unit, so no tensor becomes empty
                new_keep = torch.zeros_like(new_keep)
                new_keep[int(keep[name].nonzero()[0])] = True
            if not torch.equal(new_keep, keep[name]):
                gone = keep[name] & ~new_keep
                dead_out[name] |= gone & ~has_out
                dead_in[name] |= gone & has_out & ~has_in
                keep[name] = new_keep
                changed = True
    return {name: UnitPlan(keep[name], dead_in[name], dead_out[name]) for name in keep}


# --- building the smaller network ----------------------------------------------------------------------


class OffsetConv(nn.Module):
    """A conv plus a fixed (C, H, W) offset: the folded contribution of removed constant channels,
    which zero padding makes differ at the borders, so it cannot be a per-channel bias."""

    def __init__(self, conv: nn.Conv2d, offset: Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("offset", offset)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) + self.offset


def _module_of(weight_name: str) -> str:
    return weight_name.rsplit(".", 1)[0]


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _probe(model: nn.Module, layers: list[UnitLayer], input_shape: tuple[int, ...]) -> tuple[dict, dict]:
    """One forward pass: each consumer's input (batch of 1), and the BatchNorm right after each producer."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[int, tuple[str, Tensor]] = {}  # the tensors are held, so no id is reused during the pass
    norms: dict[str, str] = {}
    consumers = {c for layer in layers for c in layer.consumers}
    producers = {layer.weight for layer in layers}
    handles = []
    for name, module in model.named_modules():
        weight = f"{name}.weight"
        if weight in consumers:
            handles.append(module.register_forward_pre_hook(
                lambda m, args, weight=weight: inputs.__setitem__(weight, args[0].detach().clone())))
        if weight in producers:
            handles.append(module.register_forward_hook(
                lambda m, args, out, weight=weight: outputs.__setitem__(id(out), (weight, out))))
        if isinstance(module, NORMS):
            handles.append(module.register_forward_pre_hook(
                lambda m, args, name=name: norms.__setitem__(outputs[id(args[0])][0], name)
                if id(args[0]) in outputs and outputs[id(args[0])][1] is args[0] else None))
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return inputs, norms


def _constant_offset(module: nn.Module, x: Tensor) -> Tensor:
    """The consumer's response (without bias) to only the removed units' constant values in `x`."""
    if isinstance(module, nn.Linear):
        return nn.functional.linear(x, module.weight)[0]
    if isinstance(module, CONVOLUTIONS):
        return module._conv_forward(x, module.weight, None)[0]
    raise TypeError(f"cannot fold constants into a {type(module).__name__}")


def _slice(module: nn.Module, index: Tensor, dim: int) -> None:
    """Keep only `index` along `dim` of a Linear/Conv (0: outputs, 1: inputs) or of a BatchNorm's features."""
    with torch.no_grad():
        if isinstance(module, PRUNABLE):
            module.weight = nn.Parameter(module.weight.index_select(dim, index).clone())
            if dim == 0 and module.bias is not None:
                module.bias = nn.Parameter(module.bias[index].clone())
            if isinstance(module, nn.Linear):
                module.out_features, module.in_features = module.weight.shape
            else:
                module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1]
        elif isinstance(module, NORMS):
            for name in ("weight", "bias"):
                if getattr(module, name) is not None:
                    setattr(module, name, nn.Parameter(getattr(module, name)[index].clone()))
            for name in ("running_mean", "running_var"):
                if getattr(module, name) is not None:
                    setattr(module, name, getattr(module, name)[index].clone())
            module.num_features = len(index)
        else:
            raise TypeError(f"cannot slice a {type(module).__name__}")


def masked_network(model: str, input_shape: tuple[int, ...], num_outputs: int, state: Mapping[str, Tensor],
                   mask: Mapping[str, Tensor]) -> nn.Module:
    """The full-size network with masked weights at exactly zero, in eval mode on the CPU."""
    net = build_model(model, input_shape, num_outputs, seed=0)
    net.load_state_dict(apply_mask({k: v.cpu() for k, v in state.items()}, {k: v.cpu() for k, v in mask.items()}))
    return net.eval()


def compact_network(masked: nn.Module, input_shape: tuple[int, ...]) -> tuple[nn.Module, dict]:
    """A physically smaller copy of `masked` without its dead units; returns (network, per-layer unit counts).

    The model must be a chain of layers (lth.models.topology) or say what its units are (`structured_units`);
    otherwise the error says what it cannot handle."""
    kinds = prunable_layers(masked)
    layers = unit_layers(masked, kinds)
    params = dict(masked.named_parameters())
    plans = plan_units(layers, {name: params[name] for name in kinds})
    inputs, norms = _probe(masked, layers, input_shape)
    compact = copy.deepcopy(masked).eval()

    offsets: dict[str, Tensor] = {}
    for layer in layers:
        removed = ~plans[layer.weight].keep
        for consumer in layer.consumers:
            if not removed.any():
                continue
            span = unit_span(tuple(params[layer.weight].shape), tuple(params[consumer].shape))
            x = inputs[consumer]
            columns = removed.repeat_interleave(span).view(1, -1, *([1] * (x.dim() - 2)))
            with torch.no_grad():
                offset = _constant_offset(masked.get_submodule(_module_of(consumer)), x * columns)
            offsets[consumer] = offsets.get(consumer, 0) + offset

    for layer in layers:
        keep = plans[layer.weight].keep.nonzero().squeeze(1)
        _slice(compact.get_submodule(_module_of(layer.weight)), keep, 0)
        if layer.weight in norms:
            _slice(compact.get_submodule(norms[layer.weight]), keep, 0)
        for consumer in layer.consumers:
            span = unit_span(tuple(params[layer.weight].shape), tuple(params[consumer].shape))
            columns = (keep[:, None] * span + torch.arange(span)[None, :]).flatten()
            _slice(compact.get_submodule(_module_of(consumer)), columns, 1)

    for consumer, offset in offsets.items():
        if consumer in plans:
            offset = offset[plans[consumer].keep]
        if not offset.any():
            continue
        name = _module_of(consumer)
        module = compact.get_submodule(name)
        with torch.no_grad():
            first = offset.flatten(1)[:, :1].reshape(-1, *([1] * (offset.dim() - 1))) if offset.dim() > 1 else offset
            uniform = offset.dim() == 1 or torch.equal(offset, first.expand_as(offset))
            if uniform:
                per_unit = offset if offset.dim() == 1 else offset.flatten(1)[:, 0]
                bias = module.bias if module.bias is not None else torch.zeros_like(per_unit)
                module.bias = nn.Parameter(bias + per_unit)
            else:
                _set_module(compact, name, OffsetConv(module, offset.clone()))

    units = {name: {"units": len(p.keep), "kept": int(p.keep.sum()), "dead_in": int(p.dead_in.sum()),
                    "dead_out": int(p.dead_out.sum())} for name, p in plans.items()}
    return compact.eval(), units


# --- files and measurements ----------------------------------------------------------------------------


def export_bytes(network: nn.Module, input_shape: tuple[int, ...]) -> bytes:
    """`torch.export` program of `network` (any batch size), serialised: what `compact` writes to disk."""
    example = torch.zeros(2, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(network.eval(), (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def load_exported(data: bytes | str | Path) -> nn.Module:
    """The callable module of a saved export (what a user without lth does: torch.export.load(path).module())."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    return torch.export.load(source).module()


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


# --- the rounds of a run ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoundRef:
    key: str  # 'r03'
    trial: int


def find_rounds(run, rounds: Optional[list[int]] = None, trials: Optional[list[int]] = None) -> list[RoundRef]:  # noqa: ANN001
    """The finished rounds of `run` (lth.engine.run.Run), optionally only `rounds` and `trials`."""
    from lth.engine.params import round_index

    finished = run.finished_rounds()
    if not finished:
        raise LthError(f"{run.layout.root} holds no finished round yet: nothing to compact")
    keys = finished if not rounds else [f"r{r:02d}" for r in rounds]
    for key in keys:
        if key not in finished:
            raise LthError(f"round {key} of {run.layout.root} is not finished; finished rounds: {', '.join(finished)}")
    chosen = list(run.trials) if not trials else trials
    for trial in chosen:
        if trial not in run.trials:
            raise LthError(f"bad trial {trial}: {run.layout.root} has trials 0..{run.settings.trials - 1}")
    return [RoundRef(key, trial) for trial in chosen for key in sorted(keys, key=round_index)]


def compact_round(run, ref: RoundRef, splits=None, dense: Optional[dict] = None, run_benchmark: bool = False,  # noqa: ANN001
                  batch_size: int = 256, threads: int = 1) -> dict:
    """Compact one trial's ticket after one round: writes data/compact/rNN/trial-T.{pt2,json} under the run's root.

    `splits` (the run's dataset) checks outputs and accuracy on the test set; without it a seeded random
    batch checks the outputs. `dense` is `dense_reference(...)` (computed here when not given).
    """
    from lth.engine.params import round_index
    from lth.tasks import get_task

    settings, layout = run.settings, run.layout
    if settings.mask0_action != "zero":
        raise LthError(f"{layout.root} pruned with mask-0 action '{settings.mask0_action}': its pruned weights are "
                       "not zero in the trained network, so it has no smaller equivalent; compaction needs mask-0 'zero'")
    input_shape, num_outputs = run.shape.input_shape, run.shape.num_outputs
    final = run.weights(layout.round_dir(ref.key, "final"), ref.trial)
    mask = run.mask(layout.round_dir(ref.key, "mask"), ref.trial)
    where = f"round {ref.key} trial {ref.trial} of {layout.root}"
    masked = masked_network(settings.model, input_shape, num_outputs, final, mask)
    compact, units = compact_network(masked, input_shape)

    if splits is not None:
        x, y = splits.test_x.cpu(), splits.test_y.cpu()
    else:
        x, y = torch.randn(64, *input_shape, generator=torch.Generator().manual_seed(0)), None
    check = compare_outputs(masked, compact, x, y, run.shape.task)
    if not check["outputs_match"]:
        raise RuntimeError(f"compacting {where} changed the outputs (max |diff| {check['max_abs_diff']:.3g}): "
                           "a bug in lth.compact")
    data = export_bytes(compact, input_shape)
    exported = compare_outputs(compact, load_exported(data), x[:256])
    if not exported["outputs_match"]:
        raise RuntimeError(f"the exported program of {where} differs from the compacted network "
                           f"(max |diff| {exported['max_abs_diff']:.3g})")
    dense = dense or dense_reference(settings.model, input_shape, num_outputs, run_benchmark, batch_size, threads)
    metrics: dict[str, Any] = {
        "round": round_index(ref.key), "trial": ref.trial, "model": settings.model, "pruning": settings.pruning,
        "params": {"dense": dense["params"], "masked_nonzero": count_params(masked, nonzero=True),
                   "compact": count_params(compact)},
        "macs": {"dense": dense["macs"], "masked_nonzero": count_macs(masked, input_shape, nonzero=True),
                 "compact": count_macs(compact, input_shape)},
        "file_bytes": {"dense": dense["file_bytes"], "compact": len(data)},
        "check": check,
        "units": units,
    }
    ticket = next((n for n in run.record(ref.key).get("networks", []) if n.get("trial") == ref.trial
                   and n.get("arm") == "ticket"), None)
    if ticket:
        headline = f"end_test_{get_task(run.shape.task).headline.name}"  # the final weights: the end of training
        metrics.update({"weights_remaining": ticket["weights_remaining"], headline: ticket[headline]})
    if run_benchmark:
        metrics["cpu"] = {"dense": dense["cpu"], "compact": benchmark(compact, input_shape, batch_size, threads)}
    files.atomic_write_bytes(layout.compact_file(ref.key, ref.trial, "pt2"), data)
    files.write_json(layout.compact_file(ref.key, ref.trial, "json"), metrics)
    return metrics


def compact_rounds(root: str | Path, rounds: Optional[list[int]] = None, trials: Optional[list[int]] = None,
                   dataset_dir: Optional[str | Path] = None, run_benchmark: bool = False, batch_size: int = 256,
                   threads: int = 1) -> tuple[dict, list[dict]]:
    """Compact the finished rounds of a run directory or DVC workspace (all, or `rounds` x `trials`);
    returns (dense reference, per-round metrics) and writes them to metrics/compact.json under `root`."""
    from lth.datasets import load_dataset
    from lth.engine.run import open_results

    run = open_results(root)
    refs = find_rounds(run, rounds, trials)
    settings = run.settings
    splits = load_dataset(settings.dataset, dataset_dir, settings.task) if dataset_dir is not None else None
    dense = dense_reference(settings.model, run.shape.input_shape, run.shape.num_outputs, run_benchmark, batch_size,
                            threads)
    rows = [compact_round(run, ref, splits, dense, run_benchmark, batch_size, threads) for ref in refs]
    files.write_json(run.layout.compact_summary, {"dense": dense, "rounds": _merged(run, rows)})
    return dense, rows


def _merged(run, rows: list[dict]) -> list[dict]:  # noqa: ANN001 - lth.engine.run.Run
    """The summary's rows: those just compacted, beside the rows of other finished (round, trial) pairs already
    in metrics/compact.json, so compacting one round never drops the others' results; sorted by round, trial."""
    from lth.engine.params import round_key

    path, finished = run.layout.compact_summary, set(run.finished_rounds())
    earlier = files.read_json(path).get("rounds", []) if path.is_file() else []
    new = {(row["round"], row["trial"]): {k: v for k, v in row.items() if k != "units"} for row in rows}
    kept = {(row["round"], row["trial"]): row for row in earlier
            if round_key(row["round"]) in finished and row["trial"] in run.trials}
    return [row for _, row in sorted({**kept, **new}.items())]


# --- N:M tickets on sparse tensor cores (lth compact --nm) -----------------------------------------------

SEMI_KEEP, SEMI_GROUP = 2, 4  # torch.sparse.to_sparse_semi_structured: at most 2 nonzeros in every 4 inputs
NO_GPU = ("the 2:4 pattern holds; its semi-structured speed-up needs a CUDA GPU (NVIDIA Ampere or later), and "
          "there is none here, so nothing was timed")


def check_semi_structured(mask: Mapping[str, Tensor], names: list[str], where: str) -> None:
    """Each layer of `names` keeps at most 2 of every 4 consecutive input weights; else an LthError naming it."""
    from lth.pruning.nm import check_nm_shapes, group_counts

    check_nm_shapes({name: tuple(mask[name].shape) for name in names}, SEMI_GROUP)
    for name in names:
        counts = group_counts(mask[name].cpu(), SEMI_GROUP)
        if int(counts.max()) > SEMI_KEEP:
            row, group = divmod(int(counts.flatten().argmax()), counts.shape[1])
            raise LthError(f"{where}: layer '{name}' is not 2:4 sparse: row {row} keeps {int(counts.max())} of its "
                           f"inputs {SEMI_GROUP * group}..{SEMI_GROUP * group + SEMI_GROUP - 1} (a ticket of "
                           "--pruning nm --nm 2:4 is 2:4 once its rounds have reached 2 of 4)")


def time_cuda(network: nn.Module, x: Tensor, warmup: int = 10, repeats: int = 30) -> float:
    """Median milliseconds of one forward pass of `x` on the GPU (CUDA events, after `warmup` passes)."""
    import statistics

    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            network(x)
        torch.cuda.synchronize()
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            network(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def semi_structured_speed(masked: nn.Module, names: list[str], input_shape: tuple[int, ...],
                          batch_size: int) -> dict[str, Any]:
    """fp16 on CUDA: the masked network beside a copy whose Linear weights of `names` are
    torch.sparse semi-structured; median ms of both, and `reason` whenever there is no speed-up."""
    from lth.core.errors import one_line
    from torch.sparse import to_sparse_semi_structured

    dense = copy.deepcopy(masked).half().cuda().eval()
    sparse = copy.deepcopy(dense)
    converted, skipped = [], {}
    for name in names:
        module = sparse.get_submodule(_module_of(name))
        if not isinstance(module, nn.Linear):
            skipped[name] = f"a {type(module).__name__}, not a Linear"
            continue
        try:
            module.weight = nn.Parameter(to_sparse_semi_structured(module.weight.detach()), requires_grad=False)
            converted.append(name)
        except Exception as exc:  # noqa: BLE001 - an unsupported GPU, dtype or shape: reported, not fatal
            skipped[name] = one_line(exc)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0)).half().cuda()
    info: dict[str, Any] = {"batch_size": batch_size, "converted": converted, "skipped": skipped}
    if not converted:
        info["reason"] = "no layer could be converted: " + "; ".join(f"{n}: {r}" for n, r in skipped.items())
        return info
    try:
        with torch.inference_mode():
            info["max_abs_diff"] = float((dense(x) - sparse(x)).abs().max())
        info["dense_ms"], info["sparse_ms"] = time_cuda(dense, x), time_cuda(sparse, x)
    except Exception as exc:  # noqa: BLE001 - e.g. a batch size the sparse kernels do not take
        info["reason"] = f"the semi-structured network does not run: {one_line(exc)}"
        return info
    info["speedup"] = info["dense_ms"] / info["sparse_ms"]
    if info["speedup"] <= 1:
        info["reason"] = (f"2:4 is not faster on {torch.cuda.get_device_name()} at batch {batch_size} for these "
                          f"layer shapes ({info['sparse_ms']:.3f} vs {info['dense_ms']:.3f} ms dense); small layers "
                          "are bound by kernel launches rather than by the matrix products")
    return info


def nm_rounds(root: str | Path, rounds: Optional[list[int]] = None, trials: Optional[list[int]] = None,
              batch_size: int = 256) -> list[dict]:
    """Check that the tickets of `rounds` (default: the last finished) are 2:4 in every pruned layer and, on a
    CUDA GPU, time each as torch semi-structured sparse against its dense masked network (semi_structured_speed)."""
    from lth.engine.params import round_index
    from lth.engine.run import open_results

    run = open_results(root)
    settings, layout = run.settings, run.layout
    finished = run.finished_rounds()
    refs = find_rounds(run, rounds or ([round_index(finished[-1])] if finished else None), trials)
    if settings.mask0_action != "zero":
        raise LthError(f"{layout.root} pruned with mask-0 action '{settings.mask0_action}': its pruned weights are "
                       "not zero, so its ticket is not 2:4 sparse; N:M speed needs mask-0 'zero'")
    names = [name for name, kind in run.kinds.items() if settings.prune.rates.get(kind, 0.0) > 0]
    cuda = torch.cuda.is_available()
    rows = []
    for ref in refs:
        mask = run.mask(layout.round_dir(ref.key, "mask"), ref.trial)
        check_semi_structured(mask, names, f"round {ref.key} trial {ref.trial} of {layout.root}")
        row: dict[str, Any] = {"round": round_index(ref.key), "trial": ref.trial, "layers": names, "cuda": cuda}
        if cuda:
            final = run.weights(layout.round_dir(ref.key, "final"), ref.trial)
            masked = masked_network(settings.model, run.shape.input_shape, run.shape.num_outputs, final, mask)
            row.update(semi_structured_speed(masked, names, run.shape.input_shape, batch_size))
        rows.append(row)
    return rows
