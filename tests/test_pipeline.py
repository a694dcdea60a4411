"""The DVC pipeline end to end in a temporary git + DVC repository, plus params.yaml validation."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import repro_copy

from lth.core.errors import LthError
from lth.runs.params import load_params, parse_rounds, rounds_yaml

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "DVC_NO_ANALYTICS": "1", "PYTHONPATH": ""}


def sh(cwd: Path, *cmd: str) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tiny_project(root: Path, rounds: int = 2, **changes) -> Path:
    """A git + DVC clone of the project with a small params.yaml (same pipeline, fewer rounds and steps)."""
    root.mkdir(parents=True)
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", "lth", "stages"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, root / name)
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache", "config.local"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["rounds"] = rounds_yaml(rounds)
    params["train"].update(duration="40it", eval_every="10it")
    params["supermask"].update(duration="20it", eval_every="10it")
    for group in params["experiments"].values():  # the research experiment stages: on the last round, briefly
        group.update({k: v for k, v in {"round": f"r{rounds:02d}", "duration": "20it", "eval_every": "10it"}.items()
                      if k in group})
    params["experiments"]["removal"]["max_tickets"] = 2
    params["experiments"]["optimizers"].update(rounds=1, variants={"radam-no-warmup": {"optimizer": "radam"}})
    params["prune_at_init"].update(methods=["snip", "synflow"], synflow_rounds=10)
    params["sparse_train"].update(methods=["static", "rigl"], remaining=["10%"], trials=1, duration="20it",
                                  update_every=5)
    params["experiments"]["stability"].update(rewinds=["0it", "20it"], points=5)
    params["experiments"]["transfer_domains"].update(rounds=sorted({"r01", f"r{rounds:02d}"}))
    params["device"] = "cpu"
    params["trials"] = 1  # the default's 3 trials train as one batched step; one keeps these tests quick
    params.update(changes)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, "git", "init", "-q")
    sh(root, "git", "config", "user.name", "lth tests")
    sh(root, "git", "config", "user.email", "tests@lth.invalid")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "tiny lth project")
    return root


def test_pipeline_first_repro_runs_every_stage_and_equals_the_cli_runner(tiny_repro, tmp_path):
    """The shared first repro (3 trials, both controls): every stage ran, and the CLI runner gives the same."""
    first = (tiny_repro / "first-repro.txt").read_text()
    root = repro_copy(tiny_repro, tmp_path / "project")
    assert {"exp_transfer", "exp_transfer_domains", "exp_combine", "exp_removal", "exp_optimizers", "exp_perturb", "exp_stability",
            "code", "prepare", "init", "rewind_point", "early_bird", "train_dense", "score@r01", "mask@r01", "rewind@r01", "train@r01",
            "score@r02", "mask@r02", "rewind@r02", "train@r02", "supermask", "summary", "report",
            "prune_at_init@snip", "prune_at_init@synflow", "sparse_train@static", "sparse_train@rigl"} == ran(first)
    for r in ("r00", "r01", "r02"):
        for name in ("start", "mask", "final"):
            assert (root / "data" / "rounds" / r / name / "trial-0.pt").is_file(), (r, name)
        assert json.loads((root / "metrics" / "rounds" / f"{r}.json").read_text())["round"] == int(r[1:])
    headline = json.loads((root / "metrics" / "summary.json").read_text())
    assert set(headline) == {"best", "sparsest_matching", "dense", "last", "matching"} and headline["last"]["round"] == 2
    assert headline["matching"]["test_examples"] == 500 and "trials" in headline["last"]
    summary = json.loads((root / "metrics" / "per_round.json").read_text())
    assert summary["r01"]["weights_remaining"] == pytest.approx((0.8 * 265200 + 900) / 266200, abs=1e-6)
    assert {"r00", "r01", "r02"} == set(summary)
    assert {"reinit", "random-prune"} <= set(summary["r01"]) and "reinit" not in summary["r00"]
    supermask = json.loads((root / "metrics" / "supermask.json").read_text())
    assert 0 < supermask["weights_remaining"] < 1 and 0 <= supermask["end_test_acc_sampled"] <= 1
    record = json.loads((root / "metrics" / "rounds" / "r01.json").read_text())
    assert [n["arm"] for n in record["networks"]] == ["ticket", "reinit", "random-prune"] * 3

    # three trials and both controls: every round's 9 networks trained together by the train stages, each
    # trial with its own θ0 and masks; the CLI's one-process runner computes bit-for-bit the same
    from conftest import RunFiles
    from lth.core import files
    from lth.datasets import load_dataset
    from lth.steps.rounds import run_rounds

    settings = load_params(root / "params.yaml").settings
    assert settings.trials == 3 and settings.controls == ("reinit", "random-prune")
    cli = RunFiles(tmp_path / "cli")
    run_rounds(settings, 2, cli.root, load_dataset("mnist-5k", tmp_path))
    for i, r in enumerate(("r00", "r01", "r02")):
        record = json.loads((root / "metrics" / "rounds" / f"{r}.json").read_text())
        arms = ["ticket"] if i == 0 else ["ticket", "reinit", "random-prune"]
        assert sorted((n["trial"], n["arm"]) for n in record["networks"]) == sorted(
            (t, a) for t in range(3) for a in arms), r
        masks = []
        for t in range(3):
            ours = {}
            for name, kind, path in (("mask", "mask", cli.mask(t, i)), ("final", "weights", cli.final(t, i))):
                ours[name] = files.load_tensors(root / "data" / "rounds" / r / name / f"trial-{t}.pt", kind)
                theirs = files.load_tensors(path, kind)
                assert all(torch.equal(ours[name][k], theirs[k]) for k in ours[name]), (r, name, t)
            mask, final = ours["mask"], ours["final"]
            assert all(torch.count_nonzero(final[k][~mask[k].bool()]) == 0 for k in mask), (r, t)
            kept = sum(int(m.sum()) for m in mask.values())
            expected = {"r00": 266200, "r01": 0.8 * 265200 + 0.9 * 1000, "r02": 0.64 * 265200 + 0.81 * 1000}[r]
            assert kept == pytest.approx(expected, abs=2), (r, t)
            masks.append(mask)
        if i > 0:
            assert not torch.equal(masks[0]["fc1.weight"], masks[1]["fc1.weight"]), "each trial its own mask"
    tickets = [n["end_test_acc"] for n in record["networks"] if n["arm"] == "ticket"]  # r02's
    assert summary["r02"]["end_test_acc"] == pytest.approx(sum(tickets) / 3)
    assert {"reinit", "random-prune"} <= set(summary["r02"])

    # nothing changed: nothing runs
    assert ran(sh(root, "dvc", "repro")) == set()


def test_pipeline_other_criteria_rerun_what_they_change_and_experiments_compare(tiny_repro, tmp_path):
    """`dvc exp run -S criterion=...` reruns the rounds but not the dense round; the experiments side by side
    (exp-table, the README's recipes, the report over every experiment). The exp runs target the summary:
    the experiment stages downstream of the rounds are shown rerunning in the other tests."""
    from lth.core import files

    root = repro_copy(tiny_repro, tmp_path / "project")
    mask_file = lambda r: root / "data" / "rounds" / r / "mask" / "trial-0.pt"  # noqa: E731
    baseline_masks = {r: mask_file(r).read_bytes() for r in ("r01", "r02")}

    # another criterion: the dense round does not depend on it and comes from DVC's cache
    movement = sh(root, "dvc", "exp", "run", "-S", "criterion=movement", "summary")
    assert "Stage 'train_dense' didn't change, skipping" in movement
    assert {"prepare", "init", "rewind_point", "train_dense"}.isdisjoint(ran(movement))
    assert {"score@r01", "mask@r01", "train@r02", "summary"} <= ran(movement)
    for r, before in baseline_masks.items():
        assert mask_file(r).read_bytes() != before, f"{r}: same mask for movement"
    diff = json.loads(sh(root, "dvc", "metrics", "diff", "--json"))
    changed = diff["metrics/per_round.json"]
    assert any(key.startswith(("r01.", "r02.")) for key in changed), changed
    assert not any(key.startswith("r00.") for key in changed), "the dense round must not change"
    assert not any(key.startswith("dense.") for key in diff.get("metrics/summary.json", {})), "nor the headline's"
    text = sh(root, "dvc", "metrics", "diff")
    assert "metrics/per_round.json" in text and "r01.end_test_loss" in text

    # Zhou et al.'s signed constant on top: only the rewind and later stages re-run
    signed = sh(root, "dvc", "exp", "run", "-S", "criterion=movement", "-S", "mask1_action=signed_constant", "summary")
    assert {"score@r01", "mask@r01", "train_dense"}.isdisjoint(ran(signed)) and "rewind@r01" in ran(signed)
    start = files.load_tensors(root / "data" / "rounds" / "r01" / "start" / "trial-0.pt", "weights")
    assert start["fc1.weight"][start["fc1.weight"] != 0].abs().unique().numel() == 1
    more = sh(root, "dvc", "exp", "run", "-S", "+rounds.r03.prev=r02", "summary")
    assert {"score@r03", "mask@r03", "rewind@r03", "train@r03", "summary"} == ran(more)

    # the experiments side by side in 80 columns, piped as into a log
    table = subprocess.run([sys.executable, "-m", "lth", "exp-table"], cwd=root, capture_output=True, text=True,
                           env={**ENV, "COLUMNS": "80"})
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "rounds=3" in table.stdout
    for word in ("criterion=movement", "mask1_action=signed_constant", "criterion=large_final"):  # never broken
        assert any(word in line for line in lines), (word, table.stdout)
    # the README's DVC recipes: 80 columns, and the headline metrics in them (a full `dvc exp show` is "…")
    recipes = [line.split("  #")[0].strip() for line in (REPO / "README.md").read_text().splitlines()
               if line.startswith(("dvc exp show --no-pager", "dvc metrics diff --targets"))]
    assert len(recipes) == 3, recipes
    for recipe in recipes:
        shown = subprocess.run(shlex.split(recipe), cwd=root, capture_output=True, text=True,
                               env={**ENV, "COLUMNS": "80"})
        lines = shown.stdout.splitlines()
        assert shown.returncode == 0 and lines and max(map(len, lines)) <= 80, (recipe, shown.stdout, shown.stderr)
        assert re.search(r"\b0\.\d{3}", shown.stdout) and "…" not in shown.stdout, (recipe, shown.stdout)
        if "exp show" in recipe:
            assert "movement" in shown.stdout and "large_final" in shown.stdout, shown.stdout
        else:
            assert "last.early_stop_test_acc" in shown.stdout, shown.stdout
    frame = pd.read_csv(io.StringIO(sh(root, sys.executable, "-m", "lth", "exp-table", "--csv")))
    assert any("mask1_action=signed_constant" in p for p in frame["params that differ"]), frame.to_string()
    assert any("rounds=3" in p for p in frame["params that differ"]), frame.to_string()
    for column in ("best", "sparsest matching", "last round"):  # accuracy @ weights remaining, each
        assert frame[column].str.fullmatch(r"\d+\.\d% @ \d+\.\d%").all(), frame[column]

    # the report compares the experiments, read through dvc.api, labelled by the params that differ
    sh(root, sys.executable, "-m", "lth", "report", "--all-experiments", "--out", "compare")
    compare = pd.read_csv(root / "compare" / "summary.csv")
    labels = set(compare["run"])
    assert any("criterion=movement" in label and "mask1_action=signed_constant" in label for label in labels), labels
    assert any("criterion=large_final" in label for label in labels), labels
    assert compare.groupby("run")["round"].max().max() == 3  # the experiment with the added round
    assert (compare.loc[compare["round"] == 0, "ticket_early_stop_test_acc"].nunique()) == 1  # every experiment shares the dense round


def test_pipeline_added_round_and_other_groups_rerun_exactly_their_stages(tiny_repro, tmp_path):
    """One more round, another transfer curve, pruning at init and sparse training at other targets, early-bird,
    then fewer rounds again: each `dvc exp run` runs exactly the stages whose params or inputs changed."""
    root = repro_copy(tiny_repro, tmp_path / "project")

    # one more round: only its four stages (and the summary) run
    more = sh(root, "dvc", "exp", "run", "-S", "+rounds.r03.prev=r02")
    # (and the transfer curve, which depends on the whole data/rounds: DVC cannot list the rounds params.yaml names)
    assert ran(more) == {"score@r03", "mask@r03", "rewind@r03", "train@r03", "summary", "report", "exp_transfer_domains"}
    assert "r03" in json.loads((root / "metrics" / "per_round.json").read_text())
    plots = sh(root, "dvc", "plots", "show", "--json")
    assert "Test accuracy vs weights remaining" in plots and "Per-layer weights remaining" in plots
    assert (root / "report" / "by_sparsity.png").is_file() and (root / "report" / "masks.png").is_file()

    # the transfer curve with other settings: only its stage and the report run
    curve = sh(root, "dvc", "exp", "run", "-S", "experiments.transfer_domains.trials=1")
    assert ran(curve) == {"exp_transfer_domains", "report"}
    domains = json.loads((root / "metrics" / "experiments" / "transfer_domains.json").read_text())["targets"]
    assert set(domains) == {"tts-digits", "mnist-5k-rotation"} and domains["mnist-5k-rotation"]["metric"] == "rmse"
    assert list(domains["tts-digits"]["rounds"]) == ["r01", "r02"] and domains["tts-digits"]["trials"] == 1
    assert (root / "report" / "transfer.png").is_file() and (root / "report" / "transfer.csv").is_file()

    # pruning at init to another target: only its stages (and the report, which shows them) run
    sparser = sh(root, "dvc", "exp", "run", "-S", "prune_at_init.remaining=2%")
    assert ran(sparser) == {"prune_at_init@snip", "prune_at_init@synflow", "report"}
    for method in ("snip", "synflow"):
        result = json.loads((root / "metrics" / "prune_at_init" / f"{method}.json").read_text())["results"][0]
        assert result["weights_remaining"] == pytest.approx(0.02, abs=1e-5)
        assert [n["arm"] for n in result["networks"]] == ["ticket", "shuffle", "reinit"] * 3  # 3 trials
    diff = json.loads(sh(root, "dvc", "metrics", "diff", "--json"))["metrics/prune_at_init/snip.json"]
    assert diff["headline.2%.weights_remaining"]["new"] == pytest.approx(0.02, abs=1e-5)
    assert {"headline.2%.ticket_early_stop_test_acc", "headline.2%.shuffle_early_stop_test_acc",
            "headline.2%.reinit_early_stop_test_acc"} <= set(diff)
    assert (root / "report" / "prune_at_init.png").is_file()

    # sparse training at another fraction: only its stages and the report run; metrics diff sees the summary
    sparse = sh(root, "dvc", "exp", "run", "-S", "sparse_train.remaining=[5%]")
    assert ran(sparse) == {"sparse_train@static", "sparse_train@rigl", "report"}
    for method in ("static", "rigl"):
        result = json.loads((root / "metrics" / "sparse_train" / f"{method}.json").read_text())
        assert [row["weights_remaining"] for row in result["summary"]] == [pytest.approx(0.05, abs=1e-5)]
        assert result["networks"][0]["effective_remaining"] <= result["networks"][0]["weights_remaining"]
        assert (root / "data" / "sparse_train" / f"{method}.pt").is_file()
    updates = json.loads((root / "data" / "sparse_train" / "rigl.json").read_text())["networks"][0]["updates"]
    assert [u["iteration"] for u in updates] == [5, 10]  # every 5 steps, none after 75% of 20
    diff = json.loads(sh(root, "dvc", "metrics", "diff", "--json"))["metrics/sparse_train/rigl.json"]
    assert diff["headline.rigl erk 5%.weights_remaining"]["new"] == pytest.approx(0.05, abs=1e-5)
    assert "headline.rigl erk 5%.early_stop_test_acc" in diff
    assert (root / "report" / "sparse_train.png").is_file() and (root / "report" / "sparse_vs_tickets.csv").is_file()

    # fewer rounds again (3 -> 2): the results of r03 leave the workspace, and DVC sees nothing to do
    from lth.runs.params import read_yaml

    params = read_yaml(root / "params.yaml")  # as DVC wrote it (YAML 1.2: prune.nm 2:4 unquoted, not 124)
    params["rounds"] = rounds_yaml(2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shrunk = sh(root, "dvc", "repro")
    assert {"summary", "report"} <= ran(shrunk) and "rounds no longer declared in params.yaml: r03" in shrunk
    assert not (root / "metrics" / "rounds" / "r03.json").exists() and not (root / "data" / "rounds" / "r03").exists()
    assert "r03" not in json.loads((root / "metrics" / "per_round.json").read_text())
    assert ran(sh(root, "dvc", "repro")) == set() and "up to date" in sh(root, "dvc", "status")

    # early-bird on: every train stage reruns, the dense round included (its checks now draw masks; other
    # settings reach the dense round only through data/early_bird.json, unchanged until now)
    early = sh(root, "dvc", "exp", "run", "-S", "prune.early_bird=true", "summary")
    assert {"early_bird", "train_dense", "train@r01", "train@r02"} <= ran(early)
    dense = json.loads((root / "metrics" / "rounds" / "r00.json").read_text())["networks"][0]
    assert dense["early_bird"]["distances"], dense["early_bird"]
    compute = json.loads((root / "metrics" / "per_round.json").read_text())["r02"]["compute"]
    assert compute["to_ticket_iterations"] < compute["total_iterations"]


def test_params_yaml_of_the_project_is_valid_and_declares_20_rounds():
    params = load_params(REPO / "params.yaml")
    assert params.settings.model == "lenet-300-100" and params.settings.dataset == "mnist-5k"
    assert list(params.rounds) == [f"r{i:02d}" for i in range(1, 21)]
    assert params.settings.criterion == "large_final"


@pytest.mark.parametrize(
    "text,message",
    [
        ("model: [unclosed", "not valid YAML at line 1"),
        ("criterion: biggest\n", "unknown criterion 'biggest'"),
        ("train: {lr: fast}\n", "train.lr: expected a number"),
        ("trian: {lr: 0.1}\n", "unknown key 'trian' (did you mean 'train'?)"),
        ("rounds: {r01: {prev: r00}, r03: {prev: r01}}\n", "r03: prev must be r02"),
        ("rounds: {r02: {prev: r01}}\n", "previous round 'r01' is not declared"),
        ("rounds: {round1: {prev: r00}}\n", "bad round name 'round1'"),
        ("rounds: 5\n", "rounds: 5 is not a chain of rounds; DVC's foreach needs each round declared"),
        ("rounds: {r01: {prev: r00}}\nexperiments: {removal: {round: r05}}\n",
         "experiments.removal.round is 'r05', which is not a declared round; declared: r00, r01"),
    ],
)
def test_malformed_params_are_clear_errors(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(LthError, match=re.escape(message)):
        load_params(tmp_path / "params.yaml")


def test_stage_with_bad_params_exits_2_without_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("model: lenet-3000\n")
    env = {**ENV, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "stages.score", "--round", "r01"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown model 'lenet-3000'" in result.stderr and "Traceback" not in result.stderr


def test_rounds_chain_helpers():
    assert parse_rounds(rounds_yaml(3)) == {"r01": "r00", "r02": "r01", "r03": "r02"}
    assert parse_rounds(None) == {}
