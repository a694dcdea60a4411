"""`python -m lth report`: files, HTML references, aggregated numbers, comparisons and partial runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import RunFiles
from lth.core import files
from lth.core.errors import LthError
from lth.report import make_report
from lth.report.figures import curve_rounds, pixel_map
from lth.report.sources import from_results

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"fc1.weight": (30, 784), "fc2.weight": (10, 30)}


def _network(trial: int, arm: str, r: int, mask: dict, acc: float) -> dict:
    kept = {n: int(m.sum()) for n, m in mask.items()}
    total = {n: m.numel() for n, m in mask.items()}
    remaining = 100 * sum(kept.values()) / sum(total.values())
    curve = [{"iteration": i * 10, "test_acc": acc - 0.01 * (3 - i), "val_loss": 1.0 / (i + 1)} for i in range(4)]
    return {"trial": trial, "arm": arm, "weights_remaining": remaining, "nonzero_remaining": remaining,
            "test_acc": acc + 0.001, "test_loss": 0.3, "val_acc": acc, "val_loss": 0.2, "early_stop_iteration": 10 * (r + 1),
            "early_stop_test_acc": acc, "iterations": 40, "curve": curve,
            "layers": {n: {"kept": kept[n], "total": total[n], "remaining": 100 * kept[n] / total[n]} for n in mask}}


def fake_run(root: Path, rounds: int, trials: int = 2, criterion: str = "large_final", shift: float = 0.0) -> RunFiles:
    """A find-ticket run directory with hand-made masks and accuracies: acc = 0.9 - 0.01 r + 0.02 trial + shift.

    Its records are in format 1, as lth wrote them before metrics were named by split and time (`test_acc`
    for the end of training, weights in percent): the report reads them through lth.runs.records.upgrade."""
    layout = RunFiles(root)
    files.write_json(layout.layout.settings_file, {"fingerprint": "x", "settings": {
        "model": "lenet-test", "dataset": "mnist-5k", "seed": 0, "criterion": criterion, "trials": trials}})
    generator = torch.Generator().manual_seed(0)
    for r in range(rounds):
        networks = []
        for t in range(trials):
            keep = 0.8 ** r
            mask = {n: torch.rand(s, generator=generator) < keep for n, s in LAYERS.items()}
            files.save_tensors(layout.mask(t, r), "mask", "lenet-test", mask, round=r)
            acc = 0.9 - 0.01 * r + 0.02 * t + shift
            networks.append(_network(t, "ticket", r, mask, acc))
            if r > 0:
                networks.append(_network(t, "reinit", r, mask, acc - 0.05))
        remaining = networks[0]["weights_remaining"]
        files.write_json(layout.round_metrics(r), {"round": r, "weights_remaining": remaining, "networks": networks})
    return layout


def test_report_files_html_and_aggregates(tmp_path):
    layout = fake_run(tmp_path / "run", rounds=4)
    written = {p.name for p in make_report([str(layout.root)], tmp_path / "report")}
    assert {"index.html", "report.md", "by_sparsity.png", "early_stop.png", "learning_curves.png", "layers.png",
            "masks.png", "summary.csv", "arms.csv", "networks.csv", "layers.csv"} <= written
    html = (tmp_path / "report" / "index.html").read_text()
    pngs = sorted(f for f in written if f.endswith(".png"))
    assert sorted(re.findall(r"<img src='([^']+)'", html)) == pngs  # every picture, each once
    for png in pngs:
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert all(f"]({png})" in markdown for png in pngs)

    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert list(summary["round"]) == [0, 1, 2, 3]
    for r in range(4):  # trials have acc 0.9 - 0.01 r and 0.92 - 0.01 r
        row = summary[summary["round"] == r].iloc[0]
        assert row["ticket_early_stop_test_acc"] == pytest.approx(0.91 - 0.01 * r)
        assert row["ticket_early_stop_test_acc_min"] == pytest.approx(0.90 - 0.01 * r)
        assert row["ticket_early_stop_test_acc_max"] == pytest.approx(0.92 - 0.01 * r)
        assert row["ticket_end_test_acc"] == pytest.approx(0.911 - 0.01 * r)
        assert row["trials"] == 2
        if r > 0:
            assert row["reinit_early_stop_test_acc"] == pytest.approx(0.86 - 0.01 * r)
    assert pd.isna(summary.loc[0, "reinit_early_stop_test_acc"])  # controls start at round 1

    layers = pd.read_csv(tmp_path / "report" / "layers.csv")
    mask = files.load_tensors(layout.mask(0, 3), "mask")
    assert layers.loc[layers["round"] == 3, "fc1.weight"].item() == pytest.approx(
        mask["fc1.weight"].sum().item() / mask["fc1.weight"].numel(), abs=1e-6)  # a fraction, as in every file


def test_pixel_map_counts_kept_connections_per_input_pixel():
    mask = {"fc1.weight": torch.zeros(3, 784, dtype=torch.bool), "fc2.weight": torch.ones(2, 3, dtype=torch.bool)}
    mask["fc1.weight"][:, 0] = True
    mask["fc1.weight"][1, 28 * 5 + 7] = True
    counts = pixel_map(mask, (1, 28, 28))
    assert counts.shape == (28, 28) and counts[0, 0] == 3 and counts[5, 7] == 1 and counts.sum() == 4
    assert pixel_map({"conv.weight": torch.ones(4, 3, 3, 3, dtype=torch.bool)}, (3, 32, 32)) is None


def test_partial_run_reports_the_rounds_it_has_and_empty_run_is_an_error(tmp_path):
    layout = fake_run(tmp_path / "run", rounds=3)
    layout.round_metrics(2).unlink()  # round 2 still training: its masks exist, its metrics not yet
    make_report([str(layout.root)], tmp_path / "report")
    assert list(pd.read_csv(tmp_path / "report" / "summary.csv")["round"]) == [0, 1]
    assert curve_rounds(from_results(layout.root)) == [0]  # only the 100% round is near a paper sparsity

    for r in range(2):
        layout.round_metrics(r).unlink()
    before = (tmp_path / "report" / "index.html").read_text()
    with pytest.raises(LthError, match="no finished round"):
        make_report([str(layout.root)], tmp_path / "report")
    assert (tmp_path / "report" / "index.html").read_text() == before  # the previous report is untouched


def test_several_runs_are_compared_and_labelled_by_what_differs(tmp_path):
    a = fake_run(tmp_path / "a", rounds=3)
    b = fake_run(tmp_path / "b", rounds=2, criterion="movement", shift=0.03)
    make_report([str(a.root), str(b.root)], tmp_path / "report")
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(summary["run"]) == {"criterion=large_final", "criterion=movement"}
    moved = summary[summary["run"] == "criterion=movement"].set_index("round")["ticket_early_stop_test_acc"]
    assert moved[1] == pytest.approx(0.91 - 0.01 + 0.03)
    written = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"learning_curves-0.png", "learning_curves-1.png", "masks-0.png", "masks-1.png"} <= written


def test_cli_report_and_bad_source(tmp_path):
    layout = fake_run(tmp_path / "run", rounds=2)
    env_python = [sys.executable, "-m", "lth", "report"]
    ok = subprocess.run([*env_python, str(layout.root), "--out", str(tmp_path / "rep")], cwd=REPO,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "rep" / "index.html").is_file()
    bad = subprocess.run([*env_python, str(tmp_path / "nope"), "--out", str(tmp_path / "rep2"),
                          "--repo", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "nope" in bad.stderr and "DVC" in bad.stderr
    assert not (tmp_path / "rep2").exists()


def test_compaction_results_of_lth_compact_are_tabled(tmp_path):
    layout = fake_run(tmp_path / "run", rounds=2)
    cpu = lambda ms: {"latency_ms": ms, "throughput": 1000 / ms, "batch_size": 1, "threads": 1}  # noqa: E731
    rounds = [{"round": r, "trial": 0, "model": "lenet-test", "pruning": "structured", "weights_remaining": 1 - 0.4 * r,
               "end_test_acc": 0.9, "params": {"dense": 1000, "masked_nonzero": 1000 - 400 * r, "compact": 1000 - 400 * r},
               "macs": {"dense": 900, "masked_nonzero": 900 - 300 * r, "compact": 900 - 300 * r},
               "file_bytes": {"dense": 4096, "compact": 4096 - 1024 * r},
               "check": {"outputs_match": True}, "cpu": {"dense": cpu(2.0), "compact": cpu(2.0 - 0.5 * r)}}
              for r in range(2)]
    files.write_json(layout.layout.compact_summary, {"dense": {}, "rounds": rounds})
    make_report([str(layout.root)], tmp_path / "report")
    table = pd.read_csv(tmp_path / "report" / "compaction.csv").set_index("round")
    assert table.loc[1, "params_fraction"] == pytest.approx(0.6)
    assert table.loc[1, "macs_fraction"] == pytest.approx(600 / 900)
    assert table.loc[1, "end_test_acc"] == pytest.approx(0.9)
    assert table.loc[1, "file_kib"] == pytest.approx(3.0)
    assert table.loc[1, "speedup"] == pytest.approx(2.0 / 1.5)
    assert "Compacted networks" in (tmp_path / "report" / "index.html").read_text()


def test_an_experiment_is_read_through_one_dvc_repo_and_a_bad_revision_is_a_clear_error(tiny_repro, tmp_path,
                                                                                         monkeypatch):
    """Reading a revision opens DVC's repository once (one parse of dvc.yaml and dvc.lock for every file read:
    per file it made a report over experiments 1.5x slower), and gives what the workspace holds at that commit."""
    from dvc.repo import Repo

    from conftest import repro_copy
    from lth.report.sources import from_experiment, from_results

    root = repro_copy(tiny_repro, tmp_path / "project")
    monkeypatch.chdir(root)
    opened = []
    real_open = Repo.open
    monkeypatch.setattr(Repo, "open", staticmethod(lambda *a, **k: opened.append(k.get("rev")) or real_open(*a, **k)))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    run = from_experiment(".", "baseline", head)
    assert run.load_mask(0, 1) is not None and opened == [head]
    here = from_results(root)
    assert run.records == here.records and run.test_size == here.test_size == 500
    assert run.params["criterion"] == here.params["criterion"] and len(run.at_init) == len(here.at_init) > 0
    mask = run.load_mask(2, 2)
    assert all(torch.equal(mask[k], v) for k, v in here.load_mask(2, 2).items())
    with pytest.raises(LthError, match="cannot read revision 0123abc of '.' through DVC"):
        from_experiment(".", "gone", "0123abc")
