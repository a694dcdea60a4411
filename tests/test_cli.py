"""The command line: help texts, listings, a real end-to-end run on torchvision-format files, and clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fake_mnist, run_cli

REPO = Path(__file__).resolve().parents[1]


def test_module_entry_point_help_is_quick_and_lists_commands():
    result = subprocess.run([sys.executable, "-m", "lth", "--help"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0
    assert "find-ticket" in result.stdout and "list" in result.stdout


def test_find_ticket_help(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "find-ticket", "--help")
    assert code == 0
    for option in ("--rounds", "--epochs", "--iterations", "--batch-size", "--lr", "--optimizer", "--criterion",
                   "--rewind", "--pruning", "--seed", "--device", "--out", "--precision"):
        assert option in out, option
    # bracketed defaults are text, not rich markup that would swallow them
    assert "[default: the model's paper setting]" in out and "[default: fp32]" in out
    # choices come from the registries, the help text from the settings' declarations
    from lth.core.config import find
    from lth.runs.settings import RunSettings
    from lth.pruning.prune import GRANULARITIES, METHODS
    from lth.training.optimizers import OPTIMIZERS
    from lth.training.precision import PRECISIONS

    flat = " ".join(out.replace("│", " ").split())
    for names in (OPTIMIZERS, PRECISIONS, METHODS, GRANULARITIES):
        assert " | ".join(names) in flat or all(name in flat for name in names), names
    assert find(RunSettings, "train.eval_every").help in flat


def help_rows(out: str) -> dict[str, str]:
    """A command's rich --help, one flattened text per argument or option, keyed by its name ('--lr', 'model')."""
    rows: dict[str, list[str]] = {}
    name = None
    for line in out.splitlines():
        if not line.startswith("│"):
            name = None
            continue
        start = re.match(r"│\s{0,8}(?:\*\s+)?(--[a-z0-9-]+|[a-z_]+)\s", line)
        if start:
            name = start.group(1)
            rows[name] = []
        if name:
            rows[name].append(line.strip("│ "))
    return {name: " ".join(" ".join(parts).split()) for name, parts in rows.items()}


def generated(monkeypatch, capsys, command: str, table: tuple) -> tuple[dict, list]:
    """The command's click parameters by name, and for each Exposed entry of its table (entry, its declaration,
    its parameter, its `--help` row), the row already checked to show the declared help."""
    import typer

    from lth.cli import app
    from lth.ui import Exposed, declared

    code, out, _ = run_cli(monkeypatch, capsys, command, "--help")
    assert code == 0
    rows = help_rows(out)
    params = {param.name: param for param in typer.main.get_command(app).commands[command].params}
    found = []
    for entry in (entry for entry in table if isinstance(entry, Exposed)):
        info, param = declared(entry.key, entry.of), params[entry.param]
        row = rows[entry.param if entry.argument or entry.required else param.opts[0]]
        assert " ".join(info.describe().split()) in row, (entry.key, row)
        found.append((entry, info, param, row))
    return params, found


def test_find_ticket_options_are_generated_from_the_declarations(monkeypatch, capsys):
    """Each setting find-ticket exposes has its declaration's help and default in --help, and its option's default
    is the declared object itself (None where words stand for it: the model's paper setting)."""
    from lth.cli import FIND_TICKET

    params, exposed = generated(monkeypatch, capsys, "find-ticket", FIND_TICKET)
    assert len(exposed) >= 30 and len(FIND_TICKET) - len(exposed) <= 8  # the options that are no setting: few
    for entry, info, param, row in exposed:
        if entry.required:
            assert param.required
        elif entry.shown:
            assert param.default is None
            assert f"[default: {entry.shown.replace('{}', str(info.default))}]" in row, (entry.key, row)
        elif info.type == "list" and not entry.comma:
            assert param.multiple and param.default is None and info.default == []  # repeat --control
        else:
            assert param.default is info.default, entry.key
            if info.type != "bool":  # a flag's off needs no words
                assert f"[default: {info.default}]" in row, (entry.key, row)
    assert params["mask1"].opts == ["--mask1"] and params["target_remaining"].opts == ["--target-remaining"]
    assert params["nesterov"].is_flag and params["control"].multiple and params["quiet"].opts == ["--quiet", "-q"]


@pytest.mark.parametrize("command, table", [("sparse-train", "SPARSE_TRAIN"), ("prune-at-init", "PRUNE_AT_INIT"),
                                            ("learn-supermask", "LEARN_SUPERMASK")])
def test_other_commands_options_are_generated_from_the_declarations(monkeypatch, capsys, command, table):
    """The commands whose options mirror a settings group (params.yaml's sparse_train, prune_at_init, the
    supermask's) show each exposed setting's declared help and default, and default to the declared value."""
    import lth.cli

    _, exposed = generated(monkeypatch, capsys, command, getattr(lth.cli, table))
    assert len({entry.of for entry, *_ in exposed if entry.of is not None}) == 1  # one group besides the run's
    for entry, info, param, row in exposed:
        if entry.required:
            assert param.required
            continue
        if entry.shown:
            words = entry.shown.replace("{}", str(info.default))
            assert param.default is None
        elif info.type == "list":
            words = ", ".join(info.default)
            assert param.multiple and param.default is None and info.default, entry.key  # not given: the declared
        else:
            words = str(info.default)
            assert param.default == info.default and type(param.default) is type(info.default), entry.key
        if info.type != "bool" and words:  # a flag names itself; '' (no N:M) has no words
            assert f"[default: {words}]" in row, (entry.key, row)


def test_a_changed_declaration_is_what_find_ticket_uses(monkeypatch):
    """The options are built from the declarations when the command is: change a declared default, and a
    command built from the same table shows and uses the new one."""
    import dataclasses

    import typer
    from typer.testing import CliRunner

    from lth.cli import FIND_TICKET
    from lth.pruning.settings import PruneSettings
    from lth.runs.params import WorkspaceSettings
    from lth.runs.settings import RunSettings
    from lth.ui import changes, with_parameters

    def declare(cls: type, name: str, default) -> None:  # noqa: ANN001 - any setting's type
        monkeypatch.setattr({f.name: f for f in dataclasses.fields(cls)}[name], "default", default)

    declare(RunSettings, "criterion", "magnitude_increase")
    declare(RunSettings, "trials", 3)
    declare(PruneSettings, "early_bird_distance", 0.25)
    declare(WorkspaceSettings, "checkpoint_every", "500it")
    seen: dict = {}
    probe = typer.Typer()

    @probe.command()
    @with_parameters(*FIND_TICKET)
    def probe_command(**given) -> None:  # noqa: ANN003 - the table's parameters
        seen.update(given)

    runner = CliRunner()
    result = runner.invoke(probe, ["lenet-300-100", "mnist-5k", "--rewind", "2it"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert (seen["criterion"], seen["trials"], seen["checkpoint_every"]) == ("magnitude_increase", 3, "500it")
    change = changes(FIND_TICKET, seen)
    assert change["criterion"] == "magnitude_increase" and change["prune__early_bird_distance"] == 0.25
    assert change["rewind"] == "2it" and "train__lr" not in change  # not given: the model's paper setting
    flat = " ".join(runner.invoke(probe, ["--help"], env={"COLUMNS": "200"}).output.replace("│", " ").split())
    assert "[default: magnitude_increase]" in flat and "[default: 500it]" in flat and "[default: 0.25]" in flat


def test_rounds_counts_pruning_rounds_and_must_be_positive(monkeypatch, capsys, tmp_path):
    for bad in ("0", "-2"):
        code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path),
                               "--rounds", bad, "--out", str(tmp_path / "run"))
        assert code == 2 and "--rounds" in err and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()
    from lth.core.errors import LthError
    from lth.runs.settings import defaults_for
    from lth.steps.rounds import run_rounds

    with pytest.raises(LthError, match="bad rounds 0: the number of pruning rounds after the dense round r00"):
        run_rounds(defaults_for("lenet-300-100", "mnist-5k"), 0, tmp_path / "lib", None)


def test_list_settings_reads_the_declarations(monkeypatch, capsys):
    from lth.core.config import describe
    from lth.runs.settings import RunSettings

    code, out, _ = run_cli(monkeypatch, capsys, "list", "settings")
    assert code == 0
    for info in describe(RunSettings):
        assert info.key in out, info.key
    flat = " ".join(out.replace("│", " ").split())
    assert "adam | sgd | radam" in flat and "reinit | random-prune" in flat


def test_list_shows_models_datasets_criteria(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "list")
    assert code == 0
    for name in ("lenet-300-100", "resnet-20", "vgg-19", "mnist-5k", "cifar-100", "large_final", "movement"):
        assert name in out, name


def test_list_piped_at_80_columns_keeps_every_name_whole():
    """Not a terminal (a pipe, CI, a pytest-xdist worker): rich lays tables out in 80 columns, and the
    names must still come out whole, to be copied into commands."""
    from lth.pruning.actions import KEPT_ACTIONS, PRUNED_ACTIONS
    from lth.pruning.criteria import CRITERIA
    from lth.datasets import DATASETS
    from lth.models import MODELS

    result = subprocess.run([sys.executable, "-m", "lth", "list"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for name in [*MODELS, *DATASETS, *CRITERIA, *KEPT_ACTIONS, *PRUNED_ACTIONS]:
        assert re.search(rf"(^|[\s│|]){re.escape(name)}([\s│|]|$)", result.stdout, re.M), name


@pytest.mark.parametrize(
    "args,message",
    [
        (["find-ticket", "lenet-301", "mnist-5k", "d"], "unknown model 'lenet-301'"),
        (["find-ticket", "lenet-300-100", "mnist6k", "d"], "unknown dataset 'mnist6k'"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--criterion", "biggest"], "unknown criterion 'biggest'"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--duration", "10 epochs"], "bad step '10 epochs'"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--rewind", "soon"], "bad step 'soon'"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--rate", "fc=1.5"], "bad pruning rate fc=1.5"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--rate", "hidden=0.2"], "unknown layer kind in rates 'hidden'"),
        (["find-ticket", "lenet-300-100", "mnist-5k", "d", "--epochs", "2", "--iterations", "5"], "only one of"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(monkeypatch, capsys, args, message):
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind,message", [
    ("lth", "no dataset at [/data/mnist] (a bracketed path)"),
    ("other", "Connection closed by peer [/__w/pytorch/third_party/gloo/pair.cc:561]"),  # torchrun's gloo said this
])
def test_error_text_with_brackets_is_printed_as_it_is(monkeypatch, capsys, kind, message):
    """A message quoting a path or library text in brackets is printed verbatim, not read as rich markup
    (a "[/...]" closing tag used to crash the error line itself)."""
    import lth.cli
    from lth.core.errors import LthError

    def fail():
        raise LthError(message) if kind == "lth" else RuntimeError(message)

    monkeypatch.setattr(lth.cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        lth.cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert message in " ".join(err.split()), err


def test_unknown_model_lists_valid_choices(monkeypatch, capsys):
    _, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-301", "mnist-5k", "d")
    assert "valid choices: conv-2, conv-4, conv-6, lenet-300-100, lenet-5, resnet-20, vgg-19" in err


@pytest.mark.parametrize("option,label,registry", [
    ("--criterion", "criterion", "lth.pruning.criteria:CRITERIA"),
    ("--mask1", "mask-1 action", "lth.pruning.actions:KEPT_ACTIONS"),
    ("--mask0", "mask-0 action", "lth.pruning.actions:PRUNED_ACTIONS"),
    ("--control", "control", "lth.pruning.controls:CONTROLS"),
    ("--optimizer", "optimizer", "lth.training.optimizers:OPTIMIZERS"),
    ("--schedule", "schedule", "lth.pruning.schedule:SCHEDULES"),
])
def test_a_bad_choice_is_one_line_naming_the_valid_ones(monkeypatch, capsys, option, label, registry):
    import importlib

    module, _, name = registry.partition(":")
    valid = sorted(getattr(importlib.import_module(module), name))
    code, out, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", "d", option, "nope")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert f"unknown {label} 'nope'; valid choices: {', '.join(valid)}" in err, err


def test_dataset_dir_that_is_a_file(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "file"
    bad.write_text("not a directory")
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist", str(bad), "--rounds", "1")
    assert code == 2 and str(bad) in err.replace("\n", "")


def test_missing_dataset_offline_names_the_directory(monkeypatch, capsys, tmp_path, offline):
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "fashion-mnist", str(tmp_path),
                           "--rounds", "1")
    assert code == 2 and "FashionMNIST" in err and "Traceback" not in err


def test_find_ticket_end_to_end_on_idx_files_and_resume(monkeypatch, capsys, tmp_path, offline):
    fake_mnist(tmp_path / "data", "MNIST", n_train=200, n_test=20)
    out = tmp_path / "run"
    args = ["find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"), "--iterations", "5",
            "--batch-size", "20", "--device", "cpu", "--out", str(out), "--quiet"]
    code, stdout, _ = run_cli(monkeypatch, capsys, *args, "--rounds", "1")
    assert code == 0 and "Lottery ticket rounds" in stdout
    summary = json.loads((out / "metrics" / "per_round.json").read_text())
    assert [round(summary[r]["weights_remaining"], 3) for r in ("r00", "r01")] == [1.0, 0.8]
    code, stdout, _ = run_cli(monkeypatch, capsys, *args, "--rounds", "2")
    assert code == 0 and stdout.count("already finished") == 2
    code, _, err = run_cli(monkeypatch, capsys, *args, "--rounds", "3", "--lr", "0.5")
    assert code == 2 and "other settings" in err and "train.lr" in err


def test_list_actions(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "list", "actions")
    assert code == 0
    for name in ("reset", "rewind", "reinit", "reshuffle", "signed_constant", "rand_signed_constant", "zero",
                 "freeze_init", "freeze_init_zero_mask", "reinit_trainable"):
        assert name in out, name


def test_learn_supermask_command(monkeypatch, capsys, tmp_path, offline):
    fake_mnist(tmp_path / "data", "MNIST", n_train=200, n_test=20)
    code, out, _ = run_cli(monkeypatch, capsys, "learn-supermask", "lenet-300-100", "mnist", str(tmp_path / "data"),
                           "--iterations", "6", "--batch-size", "20", "--device", "cpu", "--out", str(tmp_path / "sm"))
    assert code == 0 and "Learned supermask" in out
    metrics = json.loads((tmp_path / "sm" / "supermask.json").read_text())
    assert metrics["iterations"] == 6 and metrics["weights"] == "signed_constant"
    code, _, err = run_cli(monkeypatch, capsys, "learn-supermask", "lenet-300-100", "mnist", str(tmp_path / "data"),
                           "--weights", "random")
    assert code == 2 and "unknown supermask weights 'random'" in err


def test_rewind_option_selects_the_rewind_action(monkeypatch, capsys, tmp_path, offline):
    fake_mnist(tmp_path / "data", "MNIST", n_train=200, n_test=20)
    out = tmp_path / "run"
    code, _, _ = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"),
                         "--iterations", "4", "--batch-size", "20", "--rewind", "2it", "--rounds", "1",
                         "--device", "cpu", "--out", str(out), "--quiet")
    assert code == 0
    assert json.loads((out / "settings.json").read_text())["settings"]["mask1_action"] == "rewind"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist", str(tmp_path / "data"),
                           "--rewind", "2it", "--mask1", "reset")
    assert code == 2 and "has no effect with mask1_action 'reset'" in err
