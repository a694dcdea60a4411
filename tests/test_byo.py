"""Bring your own model, data and task: a researcher's nn.Module, arrays and regression targets, through the CLI,
the DVC pipeline and the Python API, and every way they can be wrong."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run_cli
from lth.core import files
from lth.core.errors import LthError
from test_pipeline import ran, sh, tiny_project

NETS = textwrap.dedent('''
    """A researcher's models: an MLP with its own layer names and a small conv net, neither from lth."""
    import math

    from torch import nn


    class MLP(nn.Module):
        def __init__(self, input_shape, num_outputs):
            super().__init__()
            self.flat = nn.Flatten()
            self.encoder = nn.Linear(math.prod(input_shape), 48)
            self.mixer = nn.Linear(48, 24)
            self.readout = nn.Linear(24, num_outputs)

        def forward(self, x):
            return self.readout(self.mixer(self.encoder(self.flat(x)).relu()).relu())


    def small_conv(input_shape, num_outputs):
        return nn.Sequential(nn.Conv2d(input_shape[0], 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                             nn.Linear(72, 16), nn.ReLU(), nn.Linear(16, num_outputs))


    class Residual(nn.Module):
        def __init__(self, input_shape, num_outputs):
            super().__init__()
            self.a = nn.Linear(math.prod(input_shape), 16)
            self.b = nn.Linear(16, 16)
            self.out = nn.Linear(16, num_outputs)

        def forward(self, x):
            h = self.a(x.flatten(1)).relu()
            return self.out(h + self.b(h).relu())
''')


def write_nets(folder: Path) -> Path:
    (folder / "nets.py").write_text(NETS)
    return folder / "nets.py"


def kept_counts(mask: dict) -> dict[str, int]:
    return {name: int(m.sum()) for name, m in mask.items()}


def expected_counts(shapes: dict[str, tuple[int, ...]], kinds: dict[str, str], r: int) -> dict[str, int]:
    """Frankle & Carbin's generic rates for a user model: conv 10%, fc 20%, output 10% per round, layerwise."""
    rates = {"conv": 0.1, "fc": 0.2, "output": 0.1}
    return {name: round(math.prod(shapes[name]) * (1 - rates[kinds[name]]) ** r) for name in kinds}


# --- the CLI and the pipeline on a model of the researcher's own file -----------------------------------------


@pytest.mark.heavy
def test_own_models_in_cli_and_dvc_give_identical_masks_and_edits_rerun_exactly_their_stages(tmp_path, monkeypatch,
                                                                                             capsys):
    root = tiny_project(tmp_path / "project", rounds=2, controls=[])
    write_nets(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(model="nets.py:MLP", sources={"model": "nets.py", "dataset": "lth/datasets"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "my own model")
    first = sh(root, "dvc", "repro", "summary")
    assert {"prepare", "init", "train_dense", "train@r02", "summary"} <= ran(first)

    monkeypatch.chdir(root)  # the CLI names the model as params.yaml does, relative to the folder it runs in
    for model, out in (("nets.py:MLP", "cli-mlp"), ("nets.py:small_conv", "cli-conv")):
        code, _, stderr = run_cli(monkeypatch, capsys, "find-ticket", model, "mnist-5k", str(tmp_path / "data"),
                                  "--rounds", "2", "--iterations", "40", "--eval-every", "10it", "--device", "cpu",
                                  "-q", "--out", str(tmp_path / out))
        assert code == 0, stderr
    from lth.runs.run import open_results

    for out, model in (("cli-mlp", "nets.py:MLP"), ("cli-conv", "nets.py:small_conv")):
        run = open_results(tmp_path / out)
        assert run.settings.model == model
        for r in (1, 2):  # exact per-layer sparsity, layers found by walking the module
            mask = run.mask(run.layout.round_dir(f"r{r:02d}", "mask"), 0)
            assert kept_counts(mask) == expected_counts(run.shapes, run.kinds, r), (model, r)
            final = run.weights(run.layout.round_dir(f"r{r:02d}", "final"), 0)
            assert all(not final[k][~m].any() for k, m in mask.items())  # pruned weights stayed exactly zero
    assert open_results(tmp_path / "cli-mlp").kinds == {"encoder.weight": "fc", "mixer.weight": "fc",
                                                        "readout.weight": "output"}
    assert list(open_results(tmp_path / "cli-conv").kinds.values()) == ["conv", "conv", "fc", "output"]

    for r in ("r00", "r01", "r02"):  # the pipeline computed bit for bit what the CLI computed
        ours = files.load_tensors(root / "data" / "rounds" / r / "mask" / "trial-0.pt", "mask")
        theirs = files.load_tensors(tmp_path / "cli-mlp" / "data" / "rounds" / r / "mask" / "trial-0.pt", "mask")
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), r

    # an edit of the model's file: dvc status names every stage that builds the model, and only those
    (root / "nets.py").write_text(NETS + "\n# a change\n")
    status = json.loads(sh(root, "dvc", "status", "--json"))
    named = {stage for stage, changes in status.items()
             if any("nets.py" in change.get("changed deps", {}) for change in changes if isinstance(change, dict))}
    ran_before = ran(first)
    assert named & ran_before == {"init", "rewind_point", "train_dense", "score@r01", "mask@r01", "rewind@r01",
                                  "train@r01", "score@r02", "mask@r02", "rewind@r02", "train@r02"}, status
    assert not named & {"code", "prepare", "early_bird", "summary", "report"}
    again = ran(sh(root, "dvc", "repro", "summary"))
    assert "init" in again and not again & {"code", "prepare", "early_bird"}

    # an edit of an lth file the model does not use reruns nothing of it (the code fingerprints), and a file the
    # model imports but sources.model does not cover is refused before any stage runs
    (root / "helpers.py").write_text("WIDTH = 48\n")
    (root / "nets.py").write_text("import helpers\n" + NETS)
    code, _, stderr = run_cli(monkeypatch, capsys, "check-params")
    assert code == 2 and "uses helpers.py, which sources.model ('nets.py') does not cover" in stderr, stderr


@pytest.mark.heavy
def test_a_data_file_is_a_dep_of_prepare_and_replacing_it_reruns_the_stages_that_read_data(tmp_path):
    root = tiny_project(tmp_path / "project", rounds=1, controls=[])
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 12)).astype("float32"), rng.integers(0, 3, 300)
    (root / "data").mkdir(exist_ok=True)
    np.savez(root / "data" / "mine.npz", x_train=x[:200], y_train=y[:200], x_test=x[200:], y_test=y[200:])
    write_nets(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params.update(model="nets.py:MLP", dataset="data/mine.npz",
                  sources={"model": "nets.py", "dataset": "data/mine.npz"})
    params["train"].update(batch_size=20)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "my own data")
    assert {"prepare", "init", "train@r01"} <= ran(sh(root, "dvc", "repro", "summary"))
    spec = json.loads((root / "data" / "prepared" / "spec.json").read_text())
    assert spec == {"dataset": "data/mine.npz", "task": "classification", "input_shape": [12], "num_outputs": 3,
                    "test_size": 100}

    np.savez(root / "data" / "mine.npz", x_train=x[:200] + 1, y_train=y[:200], x_test=x[200:], y_test=y[200:])
    status = json.loads(sh(root, "dvc", "status", "--json"))
    assert {stage for stage, changes in status.items() if any(
        "data/mine.npz" in c.get("changed deps", {}) for c in changes if isinstance(c, dict))} == {
        "prepare", "exp_transfer", "exp_transfer_domains"}  # the stages that may read it (a transfer target may be it)
    again = ran(sh(root, "dvc", "repro", "summary"))
    assert {"prepare", "train_dense", "train@r01", "summary"} <= again
    assert not again & {"code", "init", "early_bird"}  # θ0 does not read the data: its stage reuses its result


# --- regression ------------------------------------------------------------------------------------------------


def regression_arrays(n: int = 900, seed: int = 0) -> dict[str, np.ndarray]:
    """A smooth regression task with two targets: y = tanh(x W1) W2 + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype("float32")
    hidden = np.tanh(x @ rng.normal(size=(8, 6)))
    y = (hidden @ rng.normal(size=(6, 2)) + 0.05 * rng.normal(size=(n, 2))).astype("float32")
    cut = n * 7 // 9
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def test_a_regression_file_trains_with_mse_beats_the_mean_and_the_report_plots_rmse(tmp_path, monkeypatch, capsys):
    arrays = regression_arrays()
    np.savez(tmp_path / "reg.npz", **arrays)
    write_nets(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "find-ticket", "nets.py:MLP", "reg.npz", "--rounds", "2",
                                   "--epochs", "20", "--eval-every", "2ep", "--device", "cpu", "-q", "--out", "run")
    assert code == 0, stderr
    assert "regression" in stdout and "test RMSE" in stdout
    record = json.loads((tmp_path / "run" / "metrics" / "rounds" / "r02.json").read_text())
    assert record["task"] == "regression"
    ticket = record["networks"][0]
    mean_rmse = float(np.sqrt(((arrays["y_test"] - arrays["y_train"].mean(0)) ** 2).mean()))
    assert ticket["early_stop_test_rmse"] < 0.5 * mean_rmse, (ticket["early_stop_test_rmse"], mean_rmse)  # beats the mean
    assert 0.5 < ticket["early_stop_test_r2"] <= 1
    assert {"end_test_rmse", "end_test_r2", "start_test_rmse", "early_stop_val_loss"} <= set(ticket)
    summary = json.loads((tmp_path / "run" / "metrics" / "summary.json").read_text())
    assert "early_stop_test_rmse" in summary["sparsest_matching"]
    # lower is better: the best round has the lowest RMSE
    rmse = {r["round"]: r["networks"][0]["early_stop_test_rmse"] for r in
            (json.loads((tmp_path / "run" / "metrics" / "rounds" / f"r0{i}.json").read_text()) for i in range(3))}
    assert summary["best"]["round"] == min(rmse, key=lambda r: (rmse[r], -r))

    code, _, stderr = run_cli(monkeypatch, capsys, "report", "run", "--out", "report")
    assert code == 0, stderr
    table = (tmp_path / "report" / "summary.csv").read_text().splitlines()[0]
    assert "ticket_early_stop_test_rmse" in table and "acc" not in table
    assert "RMSE vs weights remaining" in (tmp_path / "report" / "report.md").read_text()
    assert (tmp_path / "report" / "by_sparsity.png").read_bytes()[:4] == b"\x89PNG"


def test_task_inference_and_choice():
    from lth.datasets import with_task
    from lth.datasets.arrays import from_arrays

    arrays = {"x_train": np.zeros((20, 3)), "y_train": np.arange(20) % 4, "x_test": np.ones((5, 3)),
              "y_test": np.arange(5) % 4}
    classes = from_arrays("ints", arrays)
    assert classes.task == "classification" and classes.num_outputs == 4 and classes.train_y.dtype == torch.int64
    assert len(classes.val_x) == 2 and len(classes.train_x) == 18  # a seeded 10% hold-out of train
    numbers = from_arrays("ints", arrays, task="regression")
    assert numbers.task == "regression" and numbers.train_y.shape == (18, 1) and numbers.num_outputs == 1
    assert with_task(classes, "regression").train_y.dtype == torch.float32
    floats = from_arrays("floats", {**arrays, "y_train": arrays["y_train"].astype("float32"),
                                    "y_test": arrays["y_test"].astype("float32")})
    assert floats.task == "regression"
    raw = from_arrays("raw", {**arrays, "normalize": np.array(False)})
    assert torch.equal(raw.test_x, torch.ones(5, 3))  # the file said not to normalise


def test_inputs_are_standardised_with_training_statistics_per_feature_or_channel():
    from lth.datasets.arrays import from_arrays

    rng = np.random.default_rng(3)
    x = rng.normal(loc=5, scale=3, size=(50, 2, 4)).astype("float32")
    x[:, 1] *= 10
    splits = from_arrays("seq", {"x_train": x[:40], "y_train": np.zeros(40, int), "x_val": x[40:45],
                                 "y_val": np.zeros(5, int), "x_test": x[45:], "y_test": np.zeros(5, int)})
    train = splits.train_x.double()
    assert torch.allclose(train.mean(dim=(0, 2)), torch.zeros(2, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(dim=(0, 2), unbiased=False), torch.ones(2, dtype=torch.float64), atol=1e-4)
    mean, std = x[:40].mean(axis=(0, 2)), x[:40].std(axis=(0, 2))  # test data use the training statistics
    assert torch.allclose(splits.test_x, torch.from_numpy((x[45:] - mean[None, :, None]) / std[None, :, None]),
                          atol=1e-4)


# --- structured pruning and compaction of a model that is not lth's ---------------------------------------------


def test_structured_pruning_and_compaction_of_an_own_chain_and_a_clear_no_for_a_residual(tmp_path, monkeypatch,
                                                                                          capsys):
    write_nets(tmp_path)
    monkeypatch.chdir(tmp_path)
    base = ["find-ticket", "--rounds", "1", "--iterations", "12", "--eval-every", "6it", "--device", "cpu", "-q",
            "--pruning", "structured"]
    code, _, stderr = run_cli(monkeypatch, capsys, base[0], "nets.py:small_conv", "mnist-5k", str(tmp_path / "d"),
                              *base[1:], "--out", "conv")
    assert code == 0, stderr
    from lth.compact.runner import compact_rounds

    _, rows = compact_rounds(tmp_path / "conv")
    assert rows[1]["check"]["outputs_match"] and rows[1]["params"]["compact"] < rows[0]["params"]["compact"]
    code, _, stderr = run_cli(monkeypatch, capsys, base[0], "nets.py:Residual", "mnist-5k", str(tmp_path / "d"),
                              *base[1:], "--out", "residual")
    assert code == 2 and "structured pruning works on a chain of Linear/Conv layers" in stderr, stderr
    assert "feeds 2 operations (b (Linear), add): a branch" in stderr and len(stderr.strip().splitlines()) == 1


# --- the Python API -------------------------------------------------------------------------------------------


def make_mlp(input_shape, num_outputs):
    """A model given to the API as a callable."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 16), nn.ReLU(), nn.Linear(16, num_outputs))


make_mlp.lth_defaults = {"rates": {"fc": 0.5}, "duration": "30it"}


def test_api_with_a_callable_and_arrays_then_load_run(tmp_path, monkeypatch):
    import lth
    import lth.datasets
    import lth.models

    monkeypatch.setattr(lth.models, "MODELS", dict(lth.models.MODELS))  # what the API registers stays in this test
    monkeypatch.setattr(lth.datasets, "DATASETS", dict(lth.datasets.DATASETS))

    arrays = regression_arrays(300, seed=1)
    records = lth.find_ticket(make_mlp, arrays, rounds=2, out=tmp_path / "run", trials=2, controls=["reinit"],
                              train={"eval_every": "10it", "batch_size": 20})
    assert [r["round"] for r in records] == [0, 1, 2] and records[0]["task"] == "regression"
    assert records[1]["weights_remaining"] == round((round(0.5 * 8 * 16) + round(0.9 * 16 * 2)) / (8 * 16 + 16 * 2), 6)
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())["settings"]
    assert settings["model"] == "test_byo:make_mlp" and settings["dataset"].startswith("arrays-")
    assert settings["train"]["duration"] == "30it"  # the callable's own defaults

    run = lth.load_run(tmp_path / "run")
    assert run.task == "regression" and len(run.records) == 3
    assert set(run.rounds["arm"]) == {"ticket", "reinit"} and "early_stop_test_rmse_mean" in run.rounds
    assert len(run.networks) == 2 + 2 * 2 * 2 and {"iteration", "test_rmse", "val_loss"} <= set(run.curves)
    mask = run.mask("r02", trial=1)
    assert kept_counts(mask) == {"1.weight": round(128 * 0.25), "3.weight": round(32 * 0.81)}
    net = run.network(2, trial=1)
    assert not net[1].weight[~mask["1.weight"]].any() and bool(net[1].weight[mask["1.weight"]].all())
    again = lth.find_ticket(make_mlp, arrays, rounds=2, out=tmp_path / "run", trials=2, controls=["reinit"],
                            train={"eval_every": "10it", "batch_size": 20})
    assert again == records  # a finished run: read back, not recomputed


def test_importing_lth_loads_no_torch():
    import subprocess
    import sys

    code = "import sys, lth; assert 'torch' not in sys.modules and 'find_ticket' in dir(lth)"
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- bad input: one line, exit 2, nothing written -----------------------------------------------------------


BAD_NETS = textwrap.dedent('''
    from torch import nn

    NOT_CALLABLE = 3

    def raises(input_shape, num_outputs):
        raise ValueError("width must be even")

    def not_a_module(input_shape, num_outputs):
        return "a string"

    def nothing_to_prune(input_shape, num_outputs):
        return nn.Sequential(nn.Flatten(), nn.ReLU())

    def wrong_outputs(input_shape, num_outputs):
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))
''')


@pytest.mark.parametrize("model, dataset, extra, message", [
    ("no_such_module:make", "mnist-5k", [], "no module named 'no_such_module'"),
    ("missing.py:make", "mnist-5k", [], "no file missing.py"),
    ("bad.py:absent", "mnist-5k", [], "bad.py has no attribute 'absent'; it defines: not_a_module"),
    ("bad.py:NOT_CALLABLE", "mnist-5k", [], "'NOT_CALLABLE' is a int, not a callable"),
    ("bad.py:raises", "mnist-5k", [], "model 'bad.py:raises' raised ValueError: width must be even"),
    ("bad.py:not_a_module", "mnist-5k", [], "returned a str, not a torch.nn.Module"),
    ("bad.py:nothing_to_prune", "mnist-5k", [], "has no prunable layer"),
    ("bad.py:wrong_outputs", "mnist-5k", [], "gives outputs of shape (7,) for mnist-5k's 1x28x28 inputs, expected (10,)"),
    ("lenet-300-100", "no_y_test.npz", [], "has no y_test"),
    ("lenet-300-100", "floats.npz", ["--task", "classification"], "float labels"),
    ("lenet-300-100", "nan.npz", [], "x_train holds 1 NaN or infinite value(s) (first in example 3)"),
    ("lenet-300-100", "lengths.npz", [], "x_train has 40 examples but y_train has 39"),
    ("lenet-300-100", "absent.npz", [], "dataset file absent.npz does not exist"),
    ("lenet-300-100", "mnist_5k", [], "unknown dataset 'mnist_5k' (did you mean 'mnist-5k'?)"),
    ("lenet-3000", "mnist-5k", [], "unknown model 'lenet-3000'"),
])
def test_bad_models_and_data_are_one_line_exit_2_and_write_nothing(model, dataset, extra, message, tmp_path,
                                                                      monkeypatch, capsys):
    (tmp_path / "bad.py").write_text(BAD_NETS)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 1, 28, 28)).astype("float32"), rng.integers(0, 10, 40)
    np.savez(tmp_path / "no_y_test.npz", x_train=x, y_train=y, x_test=x)
    np.savez(tmp_path / "floats.npz", x_train=x, y_train=y.astype("float32"), x_test=x, y_test=y.astype("float32"))
    bad = x.copy()
    bad[3, 0, 2, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x_train=bad, y_train=y, x_test=x, y_test=y)
    np.savez(tmp_path / "lengths.npz", x_train=x, y_train=y[:39], x_test=x, y_test=y)
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_cli(monkeypatch, capsys, "find-ticket", model, dataset, "--rounds", "1", "--iterations",
                              "4", "--batch-size", "10", "--device", "cpu", "-q", *extra, "--out", "out")
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr and not (tmp_path / "out").exists()


def test_own_defaults_and_model_errors_in_settings_name_the_key(tmp_path, monkeypatch):
    from lth.runs.settings import from_dict

    (tmp_path / "own.py").write_text(textwrap.dedent('''
        from torch import nn

        def make(input_shape, num_outputs):
            return nn.Sequential(nn.Flatten(), nn.Linear(4, num_outputs))

        make.lth_defaults = {"optimizer": "sgd", "lr": 0.05, "rates": {"fc": 0.3}}

        def typo(input_shape, num_outputs):
            return make(input_shape, num_outputs)

        typo.lth_defaults = {"learning_rate": 0.05}
    '''))
    monkeypatch.chdir(tmp_path)
    settings = from_dict({"model": "own.py:make"})
    assert (settings.train.optimizer, settings.train.lr, settings.prune.rates["output"]) == ("sgd", 0.05, 0.1)
    with pytest.raises(LthError, match="unknown key.*learning_rate.*valid keys: optimizer"):
        from_dict({"model": "own.py:typo"})
    with pytest.raises(LthError, match="bad model 'own.py:'"):
        from_dict({"model": "own.py:"})


# --- fingerprints that survive growth ------------------------------------------------------------------------


def test_fingerprints_hash_only_settings_that_differ_from_their_defaults_and_old_runs_stay_readable(tmp_path):
    import hashlib

    from conftest import tiny_splits
    from lth.runs.settings import RunSettings, defaults_for, replace
    from lth.steps.rounds import run_rounds

    plain = RunSettings()
    assert plain.fingerprint() == "2-" + hashlib.sha256(b"{}").hexdigest()[:16]  # nothing differs: nothing hashed
    changed = replace(plain, seed=3, train__lr=0.01)
    assert changed.fingerprint() == "2-" + hashlib.sha256(json.dumps(
        {"seed": 3, "train.lr": 0.01}, sort_keys=True).encode()).hexdigest()[:16]
    assert replace(plain, task="regression").fingerprint() != plain.fingerprint()

    # a run directory an earlier lth wrote (version-1 fingerprints in settings.json and every tensor file) goes on
    settings = replace(defaults_for("lenet-300-100", "mnist-5k"), train__duration="12it", train__eval_every="6it")
    current, legacy = settings.fingerprints()
    assert legacy == hashlib.sha256(json.dumps({k: v for k, v in settings.to_dict().items() if k != "task"},
                                               sort_keys=True).encode()).hexdigest()[:16]
    splits = tiny_splits()
    old, fresh = tmp_path / "old", tmp_path / "fresh"
    run_rounds(settings, 1, old, splits)
    for path in old.rglob("trial-*.pt"):  # as version 1 wrote them
        payload = torch.load(path, weights_only=True)
        payload["meta"]["settings"] = legacy
        files.save_torch(path, payload)
    recorded = json.loads((old / "settings.json").read_text())
    (old / "settings.json").write_text(json.dumps({**recorded, "fingerprint": legacy}))
    run_rounds(settings, 2, old, splits)  # extends the old run
    run_rounds(settings, 2, fresh, splits)
    assert json.loads((old / "settings.json").read_text())["fingerprint"] == current
    for r in ("r01", "r02"):
        a = files.load_tensors(old / "data" / "rounds" / r / "mask" / "trial-0.pt", "mask")
        b = files.load_tensors(fresh / "data" / "rounds" / r / "mask" / "trial-0.pt", "mask")
        assert all(torch.equal(a[k], b[k]) for k in a), r
    shutil.rmtree(fresh)
    with pytest.raises(LthError, match="settings fingerprint"):  # a file of another run is still refused
        payload = torch.load(old / "data" / "init" / "theta0" / "trial-0.pt", weights_only=True)
        payload["meta"]["settings"] = "2-0000000000000000"
        files.save_torch(old / "data" / "init" / "theta0" / "trial-0.pt", payload)
        from lth.runs.run import open_results

        run = open_results(old)
        run.weights(run.layout.theta0, 0)


# --- every tool on a regression task -------------------------------------------------------------------------


def test_criteria_at_init_stability_removal_compaction_and_perturbation_all_work_for_regression(tmp_path):
    from lth.compact.measure import compare_outputs
    from lth.compact.surgery import compact_network, masked_network
    from lth.datasets.arrays import from_arrays
    from lth.runs.run import open_results
    from lth.runs.settings import defaults_for, replace
    from lth.experiments.perturb import PerturbSettings, perturb_experiment
    from lth.experiments.prune_at_init import prune_and_train
    from lth.experiments.removal import remove_tickets
    from lth.experiments.stability import instability, stability_record
    from lth.steps.rounds import run_rounds

    splits = from_arrays("reg", regression_arrays(400, seed=2))
    assert splits.task == "regression" and splits.input_shape == (8,) and splits.num_outputs == 2
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__duration="12it", train__eval_every="6it",
                   train__batch_size=30)
    for criterion in ("snip", "grad", "relevance"):  # gradient and relevance criteria ask the task for the loss
        records = run_rounds(replace(base, criterion=criterion), 1, tmp_path / criterion, splits)
        assert records[1]["task"] == "regression" and records[1]["networks"][0]["early_stop_test_rmse"] > 0
    for method in ("snip", "grasp"):
        result = prune_and_train(base, splits, method, 0.2, ["shuffle"])
        assert result["task"] == "regression" and {"ticket", "shuffle"} == {n["arm"] for n in result["networks"]}
        assert result["weights_remaining"] == pytest.approx(0.2, abs=1e-5)

    run = open_results(tmp_path / "grad")
    ticket = run.ticket("r01")
    rewinds = instability(ticket, splits, ["0it"], points=3)
    record = stability_record(ticket, 1, 0, "data-order", rewinds, splits.task)
    assert record["error"] == "rmse" and record["threshold"] is None and len(rewinds[0]["test_rmse"]) == 3
    assert rewinds[0]["barrier"] >= 0 and set(rewinds[0]) >= {"end_test_rmse", "end_test_r2"}

    removal = remove_tickets(ticket, splits, max_tickets=2, margin=0.5, duration="6it", eval_every="6it")
    assert removal["threshold"] == pytest.approx(removal["dense"]["early_stop_test_rmse"] + 0.5)  # lower is better

    masked = masked_network("lenet-300-100", (8,), 2, ticket.final, ticket.mask)
    compact, _ = compact_network(masked, (8,))
    check = compare_outputs(masked, compact, splits.test_x, splits.test_y, "regression")
    assert check["outputs_match"] and check["masked"]["end_test_rmse"] == pytest.approx(
        check["compact"]["end_test_rmse"], rel=1e-4)

    perturbed = perturb_experiment("lenet-300-100", ticket.init, splits, base.train, PerturbSettings(fraction=0.3), 0)
    assert {"end_test_rmse", "early_stop_test_r2"} <= set(perturbed["plain"])


def test_package_module_references_for_model_and_data_and_their_sources(tmp_path, monkeypatch, capsys):
    """`package.module:callable` names a model or a dataset loader importable from the current folder; in a
    workspace, the sources DVC watches must cover the package's files."""
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS)
    (package / "data.py").write_text(textwrap.dedent('''
        import numpy as np

        def load(root):
            """Given DATASET_DIR; returns the arrays."""
            rng = np.random.default_rng(7)
            x = rng.normal(size=(120, 3, 5)).astype("float32")
            y = rng.integers(0, 4, 120)
            return {"x_train": x[:100], "y_train": y[:100], "x_test": x[100:], "y_test": y[100:]}
    '''))
    monkeypatch.chdir(tmp_path)
    code, stdout, stderr = run_cli(monkeypatch, capsys, "find-ticket", "mypkg.nets:MLP", "mypkg.data:load", "--rounds",
                                   "1", "--iterations", "6", "--batch-size", "30", "--device", "cpu", "-q")
    assert code == 0, stderr
    out = tmp_path / "runs" / "mypkg.nets-MLP-mypkg.data-load-large_final-seed0"
    spec = json.loads((out / "data" / "prepared" / "spec.json").read_text())
    assert spec == {"dataset": "mypkg.data:load", "task": "classification", "input_shape": [3, 5], "num_outputs": 4,
                    "test_size": 20}

    from lth.runs.params import load_params

    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params.update(model="mypkg.nets:MLP", dataset="mypkg.data:load", sources={"model": "mypkg", "dataset": "mypkg"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_params(tmp_path / "params.yaml").sources.dataset == "mypkg"
    params["sources"]["model"] = "mypkg/nets.py"  # importing mypkg.nets runs mypkg/__init__.py too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LthError, match=r"model 'mypkg.nets:MLP' uses mypkg/__init__.py, which sources.model"):
        load_params(tmp_path / "params.yaml")
    params["sources"]["model"] = "mypkg"
    params["sources"]["dataset"] = "mypkg/nets.py"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(LthError, match=r"dataset 'mypkg.data:load' uses mypkg/data.py, which sources.dataset"):
        load_params(tmp_path / "params.yaml")
