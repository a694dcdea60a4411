"""Sparse training from scratch (lth.pruning.distributions, lth.training.sparse, `lth sparse-train`): layer
counts computed independently, exact counts through every update, optimizer moments of changed weights at
zero, SET's random and RigL's gradient growth, no update after the stop, static masks fixed, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli, tiny_splits
from lth.core.errors import LthError
from lth.pruning.distributions import densities, layer_counts

SHAPES = {"fc1.weight": (300, 784), "fc2.weight": (100, 300), "fc3.weight": (10, 100)}


def test_uniform_and_erk_counts_match_an_independent_computation():
    total = sum(math.prod(s) for s in SHAPES.values())
    for fraction in (0.1, 0.035, 0.01):
        uniform = layer_counts(SHAPES, fraction, "uniform")
        assert sum(uniform.values()) == round(fraction * total)
        for name, shape in SHAPES.items():
            assert abs(uniform[name] - fraction * math.prod(shape)) <= 1
    # ERK at 10%, by hand: fc3's scale would exceed density 1, so it is dense and the others share the rest
    raw = {n: sum(s) / math.prod(s) for n, s in SHAPES.items()}
    budget = 0.1 * total
    eps = budget / sum(raw[n] * math.prod(s) for n, s in SHAPES.items())
    assert eps * raw["fc3.weight"] > 1
    eps = (budget - 1000) / (raw["fc1.weight"] * 235200 + raw["fc2.weight"] * 30000)
    erk = layer_counts(SHAPES, 0.1, "erk")
    assert erk["fc3.weight"] == 1000 and sum(erk.values()) == round(budget)
    assert abs(erk["fc1.weight"] - eps * raw["fc1.weight"] * 235200) <= 1
    assert abs(erk["fc2.weight"] - eps * raw["fc2.weight"] * 30000) <= 1
    assert densities(SHAPES, 0.1, "erk")["fc2.weight"] > 0.1 > densities(SHAPES, 0.1, "erk")["fc1.weight"]
    power = densities(SHAPES, 0.1, "erk-power")  # between uniform and ERK
    assert densities(SHAPES, 0.1, "uniform")["fc1.weight"] > power["fc1.weight"] > densities(SHAPES, 0.1, "erk")["fc1.weight"]
    with pytest.raises(LthError, match="unknown distribution 'erdos'"):
        layer_counts(SHAPES, 0.1, "erdos")
    with pytest.raises(LthError, match=r"bad remaining fraction 1.5: it must be in \(0, 1\]"):
        layer_counts(SHAPES, 1.5, "erk")


def train(methods, **schedule):
    from lth.engine.settings import RunSettings, TrainSettings
    from lth.experiments.sparse_train import sparse_train
    from lth.training.sparse import SparseSchedule

    train = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="40it", eval_every="20it")
    settings = RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train)
    return sparse_train(settings, tiny_splits(), methods, ["erk"], [0.05], SparseSchedule(**schedule), trials=2)


def test_exact_counts_updates_until_the_stop_and_static_fixed():
    from lth.experiments.sparse_train import starting_mask

    entries = train(["static", "set", "rigl"], update_every=5, drop_fraction=0.3, stop_fraction=0.75)
    assert [(e["method"], e["trial"]) for e in entries] == [(m, t) for t in (0, 1) for m in ("static", "set", "rigl")]
    counts = entries[0]["counts"]
    for e in entries:
        assert {n: int(m.sum()) for n, m in e["mask"].items()} == counts  # exact, after every update
        assert {n: info["kept"] for n, info in e["layers"].items()} == counts
    static = entries[0]
    assert static["updates"] == []
    from lth.core.seeds import derive_seed

    seed = derive_seed(0, "sparse-train", 0)
    first = starting_mask(SHAPES, counts, derive_seed(seed, "mask", "erk", 0.05))
    assert all(torch.equal(static["mask"][n], first[n]) for n in SHAPES)  # static never moves
    for e in entries[1:3]:
        iterations = [u["iteration"] for u in e["updates"]]
        assert iterations == [5, 10, 15, 20, 25]  # every 5 steps, none at or after 75% of 40
        drops = [u["dropped"]["fc1.weight"] for u in e["updates"]]
        assert drops == sorted(drops, reverse=True) and drops[0] == int(0.3 / 2 * (1 + math.cos(math.pi * 5 / 30))
                                                                        * counts["fc1.weight"])
        assert all(u["grown"] == u["dropped"] for u in e["updates"])
        assert not torch.equal(e["mask"]["fc1.weight"], first["fc1.weight"])  # the mask moved


def one_loop(method: str):
    """A single-network loop after 6 steps of training, and a hook ready to update its mask."""
    from lth.core.masks import apply_mask
    from lth.engine.settings import TrainSettings
    from lth.experiments.sparse_train import starting_mask
    from lth.models import build_model
    from lth.pruning.distributions import layer_counts
    from lth.training.loop import TrainingLoop
    from lth.training.networks import SingleNetwork
    from lth.training.sparse import DynamicSparsity, SparseSchedule

    model = build_model("lenet-300-100", (1, 28, 28), 10, 0)
    counts = layer_counts(SHAPES, 0.05, "uniform")
    mask = starting_mask(SHAPES, counts, 3)
    model.load_state_dict(apply_mask(model.state_dict(), mask))
    settings = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="6it", eval_every="6it")
    loop = TrainingLoop(SingleNetwork(model), [mask], tiny_splits(), settings, [0], hold_pruned=True)
    loop.run([])
    hook = DynamicSparsity(SparseSchedule(update_every=6, drop_fraction=0.5, stop_fraction=1.0),
                           SHAPES, [method], [11])
    loop.total = 100  # as if training went on: the update at step 6 is due
    hook.start(loop)
    return loop, hook, counts


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_an_update_zeroes_changed_weights_moments_and_keeps_counts(method):
    from lth.training.sparse import dense_gradients

    loop, hook, counts = one_loop(method)
    name = "fc1.weight"
    j = hook.index[name]
    before = loop.multipliers[j].clone().bool()
    weight = loop.weights[j]
    values = weight.detach().clone()
    grads = dense_gradients(loop)[j].clone()
    hook.after_step(loop)
    after = loop.multipliers[j].bool()
    assert int(after.sum()) == counts[name]
    dropped, grown = before & ~after, after & ~before
    n = hook.history[0][-1]["dropped"][name]
    assert int(dropped.sum()) == int(grown.sum()) <= n and n == int(0.5 / 2 * (1 + math.cos(math.pi * 6 / 100))
                                                                    * counts[name])
    state = loop.optimizer.state[weight]
    for key in ("exp_avg", "exp_avg_sq"):
        assert bool((state[key][dropped | grown] == 0).all())  # no weight comes back with old momentum
        assert bool((state[key][after & before] != 0).any())  # the others keep theirs
    assert bool((weight[grown] == 0).all()) and bool((weight[dropped] == 0).all())
    # dropped: the n smallest magnitudes among the kept weights
    drop = torch.topk(values.abs().where(before, torch.tensor(math.inf)).view(-1), n, largest=False).indices
    after_drop = before.clone().view(-1)
    after_drop[drop] = False
    assert bool(after.view(-1)[after_drop].all())  # every weight the drop kept is still kept
    if method == "rigl":  # grown: the largest gradient magnitudes among the weights not kept after the drop
        scores = grads.abs().view(-1).where(~after_drop, torch.tensor(-1.0))
        expected = after_drop.clone()
        expected[torch.topk(scores, n).indices] = True
        assert torch.equal(after.view(-1), expected)
    else:  # random: another growth seed grows other weights
        other_loop, other, _ = one_loop("set")
        other.generators = [torch.Generator().manual_seed(12)]
        other.after_step(other_loop)
        assert not torch.equal(other_loop.multipliers[j].bool(), after)


def test_cli_writes_records_and_refuses_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(monkeypatch, capsys, "sparse-train", "lenet-300-100", "mnist-5k", str(tmp_path),
                             "--method", "static", "--method", "rigl", "--remaining", "10%", "--iterations", "40",
                             "--eval-every", "20it", "--update-every", "10", "--out", "st.json")
    assert code == 0, err
    payload = json.loads((tmp_path / "st.json").read_text())
    assert [n["method"] for n in payload["networks"]] == ["static", "rigl"]
    assert payload["networks"][0]["weights_remaining"] == pytest.approx(0.1, abs=1e-5)
    assert "early_stop_test_acc" in payload["networks"][1] and len(payload["networks"][1]["updates"]) == 2
    assert "Sparse training from scratch" in out
    for extra, message in ((("--method", "grasp"), "unknown method 'grasp'"),
                           (("--distribution", "erdos"), "unknown distribution 'erdos'"),
                           (("--remaining", "150%"), "--remaining"),
                           (("--drop-fraction", "1.5"), "bad drop_fraction 1.5")):
        code, _, err = run_cli(monkeypatch, capsys, "sparse-train", "lenet-300-100", "mnist-5k", str(tmp_path),
                               *extra, "--iterations", "20", "--out", "bad.json")
        assert code == 2 and message in err and "Traceback" not in err, (extra, err)
    assert not (tmp_path / "bad.json").exists()
