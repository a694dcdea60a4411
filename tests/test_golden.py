"""Golden equality: a tiny fixed-seed find-ticket run gives the masks and metrics recorded before the
round engine was rewritten (tests/golden/find_ticket.json).

The run: LeNet-300-100 on mnist-5k, dense round + 2 pruning rounds, 2 trials, both controls (reinit,
random-prune), 30 iterations per round, CPU. It runs in float64 so the recorded figures do not depend on
the CPU: in float32 a different CPU rounds matrix products differently (MKL picks kernels by CPU) and a
near-tie between two weights' magnitudes may flip the mask; in float64 runs on different CPUs agree to
~1e-15, far below anything a change of logic would move. Masks are compared bit for bit (checksums),
metrics to 1e-9 relative.

Recorded with the pre-engine code, where `--rounds 3` meant rounds r00..r02; now `rounds=2` means two
pruning rounds after the dense r00, the same three rounds. The records were recorded before metrics were
named by split and time and kept as fractions (lth.runs.records, format 1): they are compared after
`upgrade`, which renames and converts them (the values are the recorded ones).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "find_ticket.json"
ROUNDS = ("r00", "r01", "r02")
TRIALS = 2
EFFECTIVE = ("effective_remaining", "disconnected_units", "effective_not_computed")


def golden_settings():
    from lth.runs.settings import defaults_for, replace

    return replace(defaults_for("lenet-300-100", "mnist-5k"), trials=TRIALS, controls=("reinit", "random-prune"),
                   train__duration="30it", train__eval_every="10it")


def float64_splits(root: Path):
    from lth.datasets import Splits, load_dataset

    splits = load_dataset("mnist-5k", root)
    state = splits.state()
    for key in ("train_x", "val_x", "test_x"):
        state[key] = state[key].double()
    return Splits.from_state(state)


def run_golden(out: Path) -> dict:
    """Masks (checksums) and round records of the golden run into `out`."""
    from lth.core import files
    from lth.runs.layout import Layout
    from lth.steps.rounds import run_rounds

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        records = run_rounds(golden_settings(), len(ROUNDS) - 1, out, float64_splits(out / "datasets"))
    finally:
        torch.set_default_dtype(before)
    layout = Layout(out)
    masks = {f"{key}/trial-{t}": files.tensor_checksum(files.load_tensors(
        layout.trial_file(layout.round_dir(key, "mask"), t), "mask")) for key in ROUNDS for t in range(TRIALS)}
    for record in records:  # wall seconds are a measurement, not a result (and were not recorded then)
        for net in record["networks"]:
            net.pop("seconds", None)
            # effective sparsity was added to records after the recording (tests/test_effective.py checks it)
            for field in EFFECTIVE:
                net.pop(field, None)
            for layer in net["layers"].values():
                for field in EFFECTIVE:
                    layer.pop(field, None)
    return {"masks": masks, "records": records}


def assert_close(ours, golden, where: str = "") -> None:
    """Equal structure, equal strings/ints/bools, floats to 1e-9 relative. The recording wrote a loss with
    no step behind it as NaN, metrics JSON now writes null (strict JSON): the two are equal here."""
    if isinstance(golden, dict):
        assert isinstance(ours, dict) and sorted(ours) == sorted(golden), f"{where}: keys {sorted(ours)}"
        for key in golden:
            assert_close(ours[key], golden[key], f"{where}.{key}")
    elif isinstance(golden, list):
        assert isinstance(ours, list) and len(ours) == len(golden), f"{where}: length"
        for i, (a, b) in enumerate(zip(ours, golden)):
            assert_close(a, b, f"{where}[{i}]")
    elif isinstance(golden, float) or isinstance(ours, float):
        if golden is None or ours is None:
            assert (ours is None or math.isnan(ours)) and (golden is None or math.isnan(golden)), \
                f"{where}: {ours} != {golden}"
        elif math.isnan(golden):
            assert ours is None or math.isnan(ours), f"{where}: {ours} is not NaN or null"
        else:
            assert ours == pytest.approx(golden, rel=1e-9, abs=1e-12), f"{where}: {ours} != {golden}"
    else:
        assert ours == golden, f"{where}: {ours!r} != {golden!r}"


def test_find_ticket_reproduces_the_recorded_masks_and_metrics(tmp_path):
    from lth.runs.records import upgrade

    golden = json.loads(GOLDEN.read_text())
    ours = json.loads(json.dumps(run_golden(tmp_path / "run")))  # the same JSON round trip as the file
    assert ours["masks"] == golden["masks"], "masks differ from the recorded ones"
    assert all(record.get("format", 1) == 1 for record in golden["records"])  # what `upgrade` converts
    assert_close(ours["records"], [upgrade(record) for record in golden["records"]], "records")


if __name__ == "__main__":  # regenerate only for a change that is meant to change results, and say so
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(run_golden(Path(tmp) / "run"), indent=1) + "\n")
        print(f"wrote {GOLDEN} ({os.path.getsize(GOLDEN)} bytes)")
