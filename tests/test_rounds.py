"""The IMP runner: exact sparsity per round, rewinding, resume == uninterrupted, refusal, verified files."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import RunFiles, tiny_splits
from lth.core import files
from lth.core.errors import LthError
from lth.steps.rounds import run_rounds
from lth.runs.run import SilentReporter
from lth.runs.settings import defaults_for, replace


def lenet_settings(**changes):
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="6it",
                   train__eval_every="3it")
    return replace(base, **changes)


def load(path, kind):
    return files.load_tensors(path, kind)


def test_lenet_sparsity_follows_the_paper_schedule_exactly(tmp_path):
    results = run_rounds(lenet_settings(), 4, tmp_path, tiny_splits())
    layout = RunFiles(tmp_path)
    sizes = {"fc1.weight": (235200, 0.8), "fc2.weight": (30000, 0.8), "fc3.weight": (1000, 0.9)}
    for r in range(5):
        mask = load(layout.mask(0, r), "mask")
        start = load(layout.start(0, r), "weights")
        final = load(layout.final(0, r), "weights")
        for name, (n, keep) in sizes.items():
            assert int(mask[name].sum()) == round(n * keep**r), (r, name)
            # sparsity in the tensors is exactly the sparsity of the mask, before and after training
            assert int(torch.count_nonzero(start[name])) == int(mask[name].sum())
            assert (final[name][~mask[name]] == 0).all()
            assert results[r]["networks"][0]["layers"][name]["kept"] == round(n * keep**r)
        total = sum(n for n, _ in sizes.values())
        expected = sum(round(n * k**r) for n, k in sizes.values()) / total
        assert results[r]["weights_remaining"] == pytest.approx(expected, abs=1e-6)
        assert results[r]["networks"][0]["nonzero_weights_remaining"] == pytest.approx(expected, abs=1e-4)
        if r:
            previous = load(layout.mask(0, r - 1), "mask")
            assert all(not (mask[k] & ~previous[k]).any() for k in mask), "masks must be nested"
    own = json.loads(layout.round_metrics(4).read_text())
    assert own["round"] == 4 and [n["arm"] for n in own["networks"]] == ["ticket"]
    summary = json.loads((tmp_path / "metrics" / "per_round.json").read_text())
    assert list(summary) == ["r00", "r01", "r02", "r03", "r04"]
    assert json.loads((tmp_path / "metrics" / "summary.json").read_text())["last"]["round"] == 4
    table = (tmp_path / "metrics" / "networks.csv").read_text()
    assert table.startswith("round,trial,arm,weights_remaining,effective_remaining,end_test_acc,early_stop_test_acc") \
        and len(table.splitlines()) == 6


def test_survivors_are_reset_to_theta0(tmp_path):
    run_rounds(lenet_settings(), 1, tmp_path, tiny_splits())
    layout = RunFiles(tmp_path)
    init, start, mask = load(layout.init(0), "weights"), load(layout.start(0, 1), "weights"), load(layout.mask(0, 1), "mask")
    for name, tensor in init.items():
        if name in mask:
            assert torch.equal(start[name][mask[name]], tensor[mask[name]])
            assert (start[name][~mask[name]] == 0).all()
        else:
            assert torch.equal(start[name], tensor)  # biases back to θ0


def test_rewinding_to_iteration_k(tmp_path):
    settings = lenet_settings(rewind="4it", mask1_action="rewind")
    run_rounds(settings, 1, tmp_path, tiny_splits())
    layout = RunFiles(tmp_path)
    rewind, init = load(layout.rewind(0), "weights"), load(layout.init(0), "weights")
    start, mask = load(layout.start(0, 1), "weights"), load(layout.mask(0, 1), "mask")
    assert not torch.equal(rewind["fc1.weight"], init["fc1.weight"])
    for name in init:
        if name in mask:
            assert torch.equal(start[name][mask[name]], rewind[name][mask[name]])
        else:
            assert torch.equal(start[name], rewind[name])
    # θk is what the dense network held after k steps: a 4-iteration dense run ends there
    short = tmp_path / "short"
    run_rounds(replace(settings, rewind="0it", mask1_action="reset", train__duration="4it"), 1, short, tiny_splits())
    assert torch.equal(load(RunFiles(short).final(0, 0), "weights")["fc1.weight"], rewind["fc1.weight"])


class Interrupt(SilentReporter):
    """Simulates Ctrl-C in the middle of round `at`."""

    def __init__(self, at: int):
        self.at, self.current = at, -1

    def round_started(self, round_index, weights_remaining, networks):
        self.current = round_index

    def progress(self, iteration, total, point):
        if self.current == self.at and iteration >= 3:
            raise KeyboardInterrupt


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    settings, splits = lenet_settings(), tiny_splits()
    run_rounds(settings, 3, tmp_path / "straight", splits)
    with pytest.raises(KeyboardInterrupt):
        run_rounds(settings, 3, tmp_path / "resumed", splits, reporter=Interrupt(at=2))
    assert RunFiles(tmp_path / "resumed").round_metrics(1).exists()
    assert not RunFiles(tmp_path / "resumed").round_metrics(2).exists()

    class CountingReporter(SilentReporter):
        trained, skipped = [], []

        def round_finished(self, record, skipped):
            (self.skipped if skipped else self.trained).append(record["round"])

    reporter = CountingReporter()
    run_rounds(settings, 3, tmp_path / "resumed", splits, reporter=reporter)
    assert reporter.skipped == [0, 1] and reporter.trained == [2, 3]  # finished rounds are never recomputed
    a, b = RunFiles(tmp_path / "straight"), RunFiles(tmp_path / "resumed")
    for r in range(4):
        ma, mb = load(a.mask(0, r), "mask"), load(b.mask(0, r), "mask")
        fa, fb = load(a.final(0, r), "weights"), load(b.final(0, r), "weights")
        assert all(torch.equal(ma[k], mb[k]) for k in ma), f"round {r}: masks differ"
        assert all(torch.equal(fa[k], fb[k]) for k in fa), f"round {r}: trained weights differ"


def test_adding_rounds_continues_and_other_settings_are_refused(tmp_path):
    splits = tiny_splits()
    run_rounds(lenet_settings(), 1, tmp_path, splits)
    before = RunFiles(tmp_path).final(0, 1).stat().st_mtime_ns
    results = run_rounds(lenet_settings(), 2, tmp_path, splits)
    assert len(results) == 3 and RunFiles(tmp_path).final(0, 1).stat().st_mtime_ns == before
    with pytest.raises(LthError, match=r"other settings \(train.lr: 0.0012 there, 0.01 now\)"):
        run_rounds(lenet_settings(train__lr=0.01), 3, tmp_path, splits)


def test_damaged_or_mismatched_files_are_clear_errors(tmp_path):
    run_rounds(lenet_settings(), 1, tmp_path, tiny_splits())
    layout = RunFiles(tmp_path)
    shapes = {k: tuple(v.shape) for k, v in load(layout.init(0), "weights").items()}
    with pytest.raises(LthError, match="holds a weights file where a mask file was expected"):
        files.load_tensors(layout.init(0), "mask")
    with pytest.raises(LthError, match="belongs to model 'lenet-300-100', not 'conv-2'"):
        files.load_tensors(layout.init(0), "weights", "conv-2")
    bad_shapes = dict(shapes, **{"fc1.weight": (10, 10)})
    with pytest.raises(LthError, match=r"fc1.weight has shape \(300, 784\), expected \(10, 10\)"):
        files.load_tensors(layout.init(0), "weights", "lenet-300-100", bad_shapes)
    data = layout.final(0, 1).read_bytes()
    layout.final(0, 1).write_bytes(data[: len(data) // 2])
    with pytest.raises(LthError, match="corrupted or truncated weights file .*r01/final/trial-0.pt"):
        files.load_tensors(layout.final(0, 1), "weights")
    # a damaged input of the next round stops the run with that message, never a wrong result
    with pytest.raises(LthError, match="corrupted or truncated"):
        run_rounds(lenet_settings(), 2, tmp_path, tiny_splits())


def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    files.write_json(target, {"a": 1})
    import os

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        files.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"], "temp file left behind"
