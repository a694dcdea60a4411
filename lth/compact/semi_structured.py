"""N:M tickets on sparse tensor cores (`lth compact --nm`): the 2:4 check and semi-structured timing.

A ticket of `--pruning nm --nm 2:4` keeps at most 2 of every 4 consecutive input weights, the pattern
`torch.sparse.to_sparse_semi_structured` takes; on a CUDA GPU (NVIDIA Ampere or later) its Linear weights are
converted and timed in fp16 against the dense masked network. Without a GPU only the pattern is checked.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from lth.compact.runner import find_rounds
from lth.compact.surgery import module_of, masked_network
from lth.core.errors import LthError

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
        module = sparse.get_submodule(module_of(name))
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
    from lth.runs.params import round_index
    from lth.runs.run import open_results

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
