"""The run driver, what `lth compact RUN` does: compact each finished round's ticket of a run.

Per round and trial it rebuilds the masked network, cuts its dead units out (`lth.compact.surgery`), checks
the outputs and the exported program against it (`lth.compact.measure`), and writes
data/compact/rNN/trial-T.{pt2,json} (`lth.compact.export`) and the summary metrics/compact.json.
Compaction needs mask-0 action 'zero': the pruned weights must be zero in the trained network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from lth.compact.export import export_bytes, load_exported
from lth.compact.measure import benchmark, compare_outputs, count_macs, count_params, dense_reference
from lth.compact.surgery import compact_network, masked_network
from lth.core import files
from lth.core.errors import LthError


@dataclass(frozen=True)
class RoundRef:
    key: str  # 'r03'
    trial: int


def find_rounds(run, rounds: Optional[list[int]] = None, trials: Optional[list[int]] = None) -> list[RoundRef]:  # noqa: ANN001
    """The finished rounds of `run` (lth.runs.run.Run), optionally only `rounds` and `trials`."""
    from lth.runs.params import round_index

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
    from lth.runs.params import round_index
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
    from lth.runs.run import open_results

    run = open_results(root)
    refs = find_rounds(run, rounds, trials)
    settings = run.settings
    splits = load_dataset(settings.dataset, dataset_dir, settings.task) if dataset_dir is not None else None
    dense = dense_reference(settings.model, run.shape.input_shape, run.shape.num_outputs, run_benchmark, batch_size,
                            threads)
    rows = [compact_round(run, ref, splits, dense, run_benchmark, batch_size, threads) for ref in refs]
    files.write_json(run.layout.compact_summary, {"dense": dense, "rounds": _merged(run, rows)})
    return dense, rows


def _merged(run, rows: list[dict]) -> list[dict]:  # noqa: ANN001 - lth.runs.run.Run
    """The summary's rows: those just compacted, beside the rows of other finished (round, trial) pairs already
    in metrics/compact.json, so compacting one round never drops the others' results; sorted by round, trial."""
    from lth.runs.params import round_key

    path, finished = run.layout.compact_summary, set(run.finished_rounds())
    earlier = files.read_json(path).get("rounds", []) if path.is_file() else []
    new = {(row["round"], row["trial"]): {k: v for k, v in row.items() if k != "units"} for row in rows}
    kept = {(row["round"], row["trial"]): row for row in earlier
            if round_key(row["round"]) in finished and row["trial"] in run.trials}
    return [row for _, row in sorted({**kept, **new}.items())]
