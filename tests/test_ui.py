"""Output that holds up at 80 columns, in a terminal and in a log; one error line for anything unexpected."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_progress_bar_keeps_count_time_and_accuracy_whole_at_80_columns(monkeypatch):
    from rich.console import Console

    import lth.ui as ui

    screen = Console(file=io.StringIO(), force_terminal=True, width=80, color_system=None)
    monkeypatch.setattr(ui, "console", screen)
    with ui.ProgressReporter(quiet=False) as reporter:
        reporter.round_started(12, 0.055, 3)
        reporter.progress(3300, 3300, {"val_loss": 0.1234, "test_acc": 0.961})
        reporter.bar.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.file.getvalue())  # cursor moves of the live display
    lines = [line for line in text.splitlines() if "r12" in line]
    assert lines, text
    last = lines[-1]
    assert len(last) <= 80 and "3300/3300" in last and "96.1%" in last and "t0 loss 0.123" in last, last


def test_piped_find_ticket_prints_plain_progress_lines_and_stays_in_80_columns(tmp_path):
    env = {**os.environ, "COLUMNS": "80", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "lth", "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path),
                             "--rounds", "1", "--iterations", "12", "--eval-every", "6it", "--control", "reinit",
                             "--progress-every", "0", "--device", "cpu", "--out", str(tmp_path / "run")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # 80 columns, but never by breaking a word or a path: a path longer than a line stands whole on its own
    assert all(len(line) <= 80 or " " not in line.strip() for line in lines), [l for l in lines if len(l) > 80]
    assert str(tmp_path / "run" / "metrics" / "networks.csv") in lines[-1]
    progress = [line for line in lines if line.startswith(("r00 ", "r01 "))]
    assert any("it 12/12 (100%)" in line for line in progress), lines
    assert any(line.startswith("r01 80.0% x2: it ") and "t0 loss" in line for line in progress), progress
    assert "r00 + 1 pruning round" in result.stdout.replace("\n", " ")


def test_unexpected_errors_are_one_line_and_the_traceback_waits_for_lth_debug(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "lth", "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path), "--iterations",
            "6", "--rounds", "1", "--out", str(tmp_path / "file")]
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "is a file" in result.stderr and "Traceback" not in result.stderr
    # an error nobody anticipated: a report of a run whose round record lacks what the tables read
    run = tmp_path / "run"
    (run / "metrics" / "rounds").mkdir(parents=True)
    (run / "settings.json").write_text(json.dumps({"settings": {"model": "lenet-300-100", "dataset": "mnist-5k"}}))
    (run / "metrics" / "rounds" / "r00.json").write_text(json.dumps(
        {"format": 2, "task": "classification", "round": 0, "weights_remaining": 1.0,
         "networks": [{"trial": 0, "arm": "ticket", "weights_remaining": 1.0}]}))
    report = [sys.executable, "-m", "lth", "report", str(run), "--out", str(tmp_path / "report")]
    plain = subprocess.run(report, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert re.search(r"unexpected \w+Error", plain.stderr) and "LTH_DEBUG=1" in plain.stderr
    assert len(plain.stderr.strip().splitlines()) <= 2  # one line (rich may fold it once at 80 columns)
    debug = subprocess.run(report, cwd=tmp_path, env={**env, "LTH_DEBUG": "1"}, capture_output=True, text=True,
                           timeout=300)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_compact_then_report_has_no_cpu_timings_and_does_not_crash():
    from lth.report.sources import RunData
    from lth.report.tables import compaction_table

    row = {"round": 1, "trial": 0, "pruning": "unstructured", "weights_remaining": 0.8, "end_test_acc": 0.9,
           "params": {"dense": 100, "compact": 60}, "macs": {"dense": 100, "compact": 50},
           "file_bytes": {"dense": 4096, "compact": 2048}, "check": {"outputs_match": True}}
    frame = compaction_table([RunData("run", {}, [], compaction=[row])])
    assert list(frame["params_fraction"]) == [0.6] and "speedup" not in frame


def test_metrics_json_is_strict_json(tmp_path):
    from lth.core import files

    files.write_json(tmp_path / "m.json", {"loss": float("nan"), "inf": float("inf"), "ok": [1.5]})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"loss": None, "inf": None, "ok": [1.5]}


COMMANDS = ["find-ticket", "prune-at-init", "learn-supermask", "report", "compact", "exp-table", "check-params",
            "list", "experiment transfer", "experiment combine", "experiment removal", "experiment perturb",
            "experiment optimizers", "experiment stability"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_fits_80_columns_without_cutting_a_word(command, monkeypatch, capsys):
    """Rich cuts a word longer than its column with '…' (a path default, say): help must fold instead."""
    from lth.cli import main

    monkeypatch.setattr(sys, "argv", ["lth", *command.split(), "--help"])
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None) and "Usage" in out
    assert "…" not in out, [line for line in out.splitlines() if "…" in line]
    assert max(len(line) for line in out.splitlines()) <= 80
