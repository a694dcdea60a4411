"""Nothing lost, nothing misread (issue 29): one convention for fractions of the weights, params checked whole
before a run, no silent overwrite, outputs that follow params, a DVC face and logs that fit, figures for short
runs, and the small things (--version, case slips, missing folders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from lth.core.errors import LthError

REPO = Path(__file__).resolve().parents[1]


# --- one convention for fractions of the weights ------------------------------------------------------------


@pytest.mark.parametrize("given, kept", [("0.05", 0.05), ("5%", 0.05), ("0.05%", 0.0005)])
def test_target_remaining_bare_numbers_are_fractions_and_percent_signs_percentages(given, kept, tmp_path,
                                                                                      monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path / "d"),
                           "--schedule", "oneshot", "--target-remaining", given, "--iterations", "2",
                           "--batch-size", "10", "--device", "cpu", "-q", "--out", str(tmp_path / "run"))
    assert code == 0, err
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())["settings"]
    assert settings["prune"]["target"] == pytest.approx(kept)
    record = json.loads((tmp_path / "run" / "metrics" / "rounds" / "r01.json").read_text())
    assert record["weights_remaining"] == pytest.approx(kept, abs=2e-6)


def test_a_bare_number_above_one_is_an_error_that_suggests_the_percent_form(tmp_path, monkeypatch, capsys):
    for command in (["find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path), "--schedule", "oneshot",
                     "--target-remaining", "5"],
                    ["prune-at-init", "lenet-300-100", "mnist-5k", str(tmp_path), "--remaining", "5"]):
        code, _, err = run_cli(monkeypatch, capsys, *command, "--out", str(tmp_path / "never"))
        assert code == 2 and "a bare number is a fraction of the weights in (0, 1]; for 5 percent write '5%'" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "never").exists()


def test_params_take_the_same_convention():
    from lth.runs.settings import from_dict
    from lth.pruning.at_init import load_settings

    assert from_dict({"prune": {"target": "5%"}}).prune.target == pytest.approx(0.05)
    assert from_dict({"prune": {"target": 0.05}}).prune.target == 0.05
    with pytest.raises(LthError, match="bad prune.target '5'.*write '5%'"):
        from_dict({"prune": {"target": 5}})
    assert load_settings({"remaining": "0.02"}, "prune_at_init").remaining == "0.02"
    with pytest.raises(LthError, match="prune_at_init.remaining: bad remaining '2'"):
        load_settings({"remaining": "2"}, "prune_at_init")


# --- never overwrite a different result silently ------------------------------------------------------------


def test_a_second_learn_supermask_with_other_settings_does_not_destroy_the_first(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sm"
    common = ["learn-supermask", "lenet-300-100", "mnist-5k", str(tmp_path / "d"), "--iterations", "3",
              "--batch-size", "20", "--eval-every", "3it", "--device", "cpu", "--out", str(out)]
    code, _, err = run_cli(monkeypatch, capsys, *common, "--lr", "0.1")
    assert code == 0, err
    first = (out / "supermask.json").read_bytes()
    assert json.loads(first)["made_with"]["supermask"]["lr"] == 0.1  # the result records what made it
    mask = (out / "mask.pt").read_bytes()
    code, _, err = run_cli(monkeypatch, capsys, *common, "--lr", "0.05")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "supermask.json holds a result made with other settings (supermask.lr: 0.1 there, 0.05 now)" in err
    assert "--out" in err and "--force" in err
    assert (out / "supermask.json").read_bytes() == first and (out / "mask.pt").read_bytes() == mask
    code, _, err = run_cli(monkeypatch, capsys, *common, "--lr", "0.1")  # the same settings: a rerun
    assert code == 0, err
    code, _, err = run_cli(monkeypatch, capsys, *common, "--lr", "0.05", "--force")
    assert code == 0, err
    assert json.loads((out / "supermask.json").read_text())["made_with"]["supermask"]["lr"] == 0.05


def test_a_second_transfer_with_another_optimizer_does_not_destroy_the_first(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path / "d"),
                           "--rounds", "1", "--iterations", "4", "--eval-every", "4it", "--batch-size", "20",
                           "--device", "cpu", "-q", "--out", str(run))
    assert code == 0, err
    transfer = ["experiment", "transfer", str(run), "mnist-5k", str(tmp_path / "d"), "--round", "1",
                "--iterations", "4", "--eval-every", "4it", "--device", "cpu"]
    code, _, err = run_cli(monkeypatch, capsys, *transfer, "--optimizer", "sgd", "--lr", "0.01")
    assert code == 0, err
    saved = run / "metrics" / "experiments" / "transfer-r01-mnist-5k.json"
    first = saved.read_bytes()
    assert json.loads(first)["made_with"]["optimizer"] == "sgd"
    code, _, err = run_cli(monkeypatch, capsys, *transfer, "--optimizer", "adam", "--lr", "0.001")
    assert code == 2 and "holds a result made with other settings (lr: 0.01 there, 0.001 now; optimizer: 'sgd' " \
                         "there, 'adam' now): give another --out, or --force to replace it" in err
    assert saved.read_bytes() == first
    other = tmp_path / "adam.json"
    code, _, err = run_cli(monkeypatch, capsys, *transfer, "--optimizer", "adam", "--lr", "0.001", "--out", str(other))
    assert code == 0, err
    assert saved.read_bytes() == first and json.loads(other.read_text())["made_with"]["optimizer"] == "adam"


# --- params.yaml checked whole before anything runs ---------------------------------------------------------


BAD_EXPERIMENTS = [
    (("perturb", "noise"), "gauss", "experiments.perturb.noise: unknown noise 'gauss' (did you mean 'gaussian'?)"),
    (("perturb", "criterion"), "large-final",
     "experiments.perturb.criterion: unknown criterion 'large-final' (did you mean 'large_final'?)"),
    (("combine", "criterion_b"), "large-final",
     "experiments.combine.criterion_b: unknown criterion 'large-final' (did you mean 'large_final'?)"),
    (("combine", "how"), ["union", "xor"], "experiments.combine.how: unknown combination 'xor'"),
    (("transfer", "dataset"), "mnist5k", "experiments.transfer.dataset: unknown dataset 'mnist5k' (did you mean "
                                         "'mnist-5k'?)"),
    (("transfer", "optimizer"), "sdg", "experiments.transfer.optimizer: unknown optimizer 'sdg' (did you mean 'sgd'?)"),
    (("transfer", "duration"), "10 epochs", "experiments.transfer.duration: bad step '10 epochs'"),
    (("removal", "removed"), "zeros", "experiments.removal.removed: unknown removed-weights value 'zeros'"),
    (("removal", "round"), "r00", "experiments.removal.round: 'r00' is not a declared pruned round"),
    (("stability", "rewinds"), ["0it", "500it"],
     "experiments.stability.rewinds[1]: rewind point '500it' is beyond the training length '20it'"),
    (("stability", "pair"), "seed", "experiments.stability.pair: unknown pair 'seed'"),
    (("stability", "trial"), 3, "experiments.stability.trial: 3 is not a trial of the pipeline, which has trials 0..2"),
    (("optimizers", "variants"), {"adam-warmup": {"optimizer": "adam", "warmup": "2ep"}},
     "experiments.optimizers.variants.adam-warmup.warmup: warmup '2ep' is beyond the training length '20it' "
     "(66 iterations per epoch)"),
    (("optimizers", "variants"), {"fast": {"optimizer": "adamw"}},
     "experiments.optimizers.variants.fast.optimizer: unknown optimizer 'adamw'"),
    (("optimizers", "variants"), {"fast": {"optimiser": "adam"}},
     "experiments.optimizers.variants.fast: unknown key 'optimiser' (did you mean 'optimizer'?)"),
    (("magnitude",), {}, "experiments: unknown experiment 'magnitude'"),
]


def _bad_params(tmp_path: Path, keys: tuple, value) -> Path:
    """The project's params.yaml on a 20-iteration training (a tiny pipeline) with one experiments value changed."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["duration"] = "20it"
    for group in params["experiments"].values():
        group.update({k: v for k, v in {"duration": "20it", "rewinds": ["0it", "10it"]}.items() if k in group})
    params["experiments"]["optimizers"]["variants"] = {"adam": {"optimizer": "adam", "warmup": "10it"}}  # 2ep: no fit
    group = params["experiments"]
    for key in keys[:-1]:
        group = group[key]
    group[keys[-1]] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_the_tiny_params_of_these_cases_are_valid(tmp_path, monkeypatch, capsys):
    path = _bad_params(tmp_path, ("perturb", "noise"), "gaussian")
    code, out, err = run_cli(monkeypatch, capsys, "check-params", str(path))
    assert code == 0 and "is valid" in out and "experiments transfer, transfer_domains, combine" in " ".join(out.split()), err


@pytest.mark.parametrize("keys, value, message", BAD_EXPERIMENTS, ids=[" ".join(map(str, c[0])) + f"={c[1]}"
                                                                        for c in BAD_EXPERIMENTS])
def test_check_params_names_the_key_of_every_bad_experiment_value(keys, value, message, tmp_path, monkeypatch,
                                                                   capsys):
    path = _bad_params(tmp_path, keys, value)
    code, out, err = run_cli(monkeypatch, capsys, "check-params", str(path))
    assert code == 2 and f"{path}: {message}" in err and len(err.strip().splitlines()) == 1, err


def test_every_stage_runs_the_same_check_before_training(tmp_path, monkeypatch):
    """`dvc repro` without `lth check-params` fails at its first stage that opens the workspace, not the last."""
    from stages._common import workspace

    _bad_params(tmp_path, ("transfer", "optimizer"), "sdg")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LthError, match=r"experiments.transfer.optimizer: unknown optimizer 'sdg'"):
        workspace()


def test_the_torch_free_settings_name_what_the_experiments_implement():
    from lth.datasets import DATASETS, load_dataset
    from lth.experiments.combine import OPERATIONS
    from lth.experiments.perturb import SAMPLERS
    from lth.experiments.registry import EXPERIMENTS
    from lth.experiments.settings import COMBINATIONS, NOISES, SETTINGS

    assert set(SETTINGS) == set(EXPERIMENTS) and set(SAMPLERS) == set(NOISES) and set(OPERATIONS) == set(COMBINATIONS)
    assert len(load_dataset("mnist-5k", "unused").train_x) == DATASETS["mnist-5k"].train_size == 4000


# --- figures for short runs ---------------------------------------------------------------------------------


def test_a_two_round_run_labels_every_round_and_shows_whole_curves(tmp_path):
    from lth.report import figures, tables
    from lth.report.sources import from_results
    from lth.steps.rounds import run_rounds
    from lth.runs.settings import defaults_for, replace
    from lth.tasks import get_task
    from conftest import tiny_splits

    assert figures.weight_ticks([100, 80, 64]) == [100, 80, 64]  # every round of a short run
    many = [100 * 0.8 ** i for i in range(21)]
    assert len(figures.weight_ticks(many)) <= 12 and 100 in figures.weight_ticks(many)

    settings = replace(defaults_for("lenet-300-100", "mnist-5k"), train__duration="12it", train__eval_every="4it",
                       train__batch_size=20, prune__rates={"fc": 0.2, "output": 0.2})
    run_rounds(settings.validate(), 2, tmp_path / "run", tiny_splits(n_train=120, n_eval=40))
    run = from_results(tmp_path / "run")
    task = get_task("classification")
    arms = tables.arm_frame(tables.network_frame([run]), task)
    figure = figures.metric_figure(arms, tables.dense_reference(arms), task)
    labels = [label.get_text() for ax in figure.axes for label in ax.get_xticklabels()]
    assert {"100", "80", "64"} <= set(labels), labels

    curves = figures.learning_curve_figure(run, [0, 1, 2])
    ax = curves.axes[0]
    low, high = ax.get_ylim()
    drawn = [y for line in ax.get_lines() for y in line.get_ydata()]
    assert drawn and low < min(drawn) and max(drawn) < high  # the dense curve's first point included


# --- the small things ---------------------------------------------------------------------------------------


def test_version_case_slips_and_missing_places(tmp_path, monkeypatch, capsys):
    from importlib.metadata import version

    code, out, _ = run_cli(monkeypatch, capsys, "--version")
    assert code == 0 and out.strip() == f"lth {version('lth')}"
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path),
                           "--optimizer", "SGD")
    assert code == 2 and "unknown optimizer 'SGD' (did you mean 'sgd'?)" in err
    code, _, err = run_cli(monkeypatch, capsys, "report", "runs/does-not-exist")
    assert code == 2 and err.startswith("error: runs/does-not-exist does not exist") and "SCM" not in err
    assert len(err.strip().splitlines()) == 1
    monkeypatch.chdir(tmp_path)  # no git repository here or above
    code, _, err = run_cli(monkeypatch, capsys, "exp-table")
    assert code == 2 and "is not in a git repository, where DVC keeps its experiments" in err and "SCM" not in err
