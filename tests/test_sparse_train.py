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
    odd = {**SHAPES, "scale.weight": (300,)}  # a vector: ERK's (sum of dims) / (product) does not apply
    with pytest.raises(LthError, match=r"distribution erk cannot scale layer 'scale.weight' \(weight shape \(300,\)\)"):
        layer_counts(odd, 0.1, "erk")
    assert sum(layer_counts(odd, 0.1, "uniform").values()) == round(0.1 * (sum(math.prod(s) for s in SHAPES.values()) + 300))


def train(methods, **schedule):
    from lth.runs.settings import RunSettings, TrainSettings
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
    from lth.runs.settings import TrainSettings
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
    args = ("sparse-train", "lenet-300-100", "mnist-5k", str(tmp_path), "--method", "static", "--method", "rigl",
            "--remaining", "10%", "--trials", "1", "--iterations", "40", "--eval-every", "20it", "--update-every",
            "10", "--out", "st.json")
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 0, err
    payload = json.loads((tmp_path / "st.json").read_text())
    assert [n["method"] for n in payload["networks"]] == ["static", "rigl"]
    assert payload["networks"][0]["weights_remaining"] == pytest.approx(0.1, abs=1e-5)
    assert "early_stop_test_acc" in payload["networks"][1] and payload["networks"][1]["updates"] == 2
    assert [row["method"] for row in payload["summary"]] == ["static", "rigl"]
    assert payload["summary"][1]["early_stop_test_acc"] == payload["networks"][1]["early_stop_test_acc"]
    details = json.loads((tmp_path / "st.details.json").read_text())["networks"]
    assert len(details[1]["updates"]) == 2 and details[1]["updates"][0]["iteration"] == 10 and details[1]["curve"]
    masks = torch.load(tmp_path / "st.masks.pt", weights_only=True)
    counts = payload["networks"][1]["counts"]
    assert {name: int(masks[f"1.{name}"].sum()) for name in counts} == counts  # the final mask, exact counts
    assert "Sparse training from scratch" in out
    written = (tmp_path / "st.json").stat().st_mtime_ns
    code, out, err = run_cli(monkeypatch, capsys, *args)  # the same settings again: read, not retrained
    assert code == 0 and (tmp_path / "st.json").stat().st_mtime_ns == written and "Sparse training" in out
    for extra, message in ((("--method", "grasp"), "unknown method 'grasp'"),
                           (("--distribution", "erdos"), "unknown distribution 'erdos'"),
                           (("--remaining", "150%"), "remaining '150%'"),
                           (("--nm", "4:4"), "4:4"),
                           (("--nm", "2:3"), "fc1.weight"),  # 784 inputs are not a multiple of 3
                           (("--drop-fraction", "1.5"), "bad drop_fraction 1.5")):
        code, _, err = run_cli(monkeypatch, capsys, "sparse-train", "lenet-300-100", "mnist-5k", str(tmp_path),
                               *extra, "--iterations", "20", "--out", "bad.json")
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, \
            (extra, err)
    assert not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_nm_masks_keep_n_in_every_group_through_the_updates(method):
    from lth.runs.settings import RunSettings, TrainSettings
    from lth.experiments.sparse_train import sparse_train
    from lth.training.sparse import SparseSchedule

    train = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="40it", eval_every="20it")
    settings = RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train)
    entries = sparse_train(settings, tiny_splits(), ["static", method], ["erk"], [0.05],
                           SparseSchedule(update_every=5, drop_fraction=0.3, stop_fraction=0.75), trials=1, nm=(2, 4))
    static, moved = entries
    assert static["distribution"] == "2:4" and static["weights_remaining"] == 0.5
    for entry in entries:
        for name, mask in entry["mask"].items():
            groups = mask.reshape(mask.shape[0], -1, 4).sum(-1)  # 4 consecutive input weights
            assert bool((groups == 2).all()), (entry["method"], name)
    assert len(moved["updates"]) == 5 and moved["updates"][0]["dropped"]["fc1.weight"] > 0
    assert any(not torch.equal(moved["mask"][n], static["mask"][n]) for n in static["mask"])  # it moved


def test_interrupted_sparse_training_resumes_bit_identical(tmp_path):
    import signal

    from lth.core.interrupt import Interrupted, graceful_stop
    from lth.runs.settings import RunSettings, TrainSettings
    from lth.experiments.sparse_train import train_and_save
    from lth.runs.sparse_train import SparseTrainSettings

    train = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="40it", eval_every="10it")
    settings = RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train)
    exp = SparseTrainSettings(methods=("static", "set", "rigl"), remaining=("5%",), trials=1, update_every=5)
    splits = tiny_splits()

    def paths(root):
        return [root / "m.json", root / "d.json", root / "m.pt", root / "ck.pt"]

    straight = train_and_save(settings, splits, exp, exp.methods, *paths(tmp_path / "a"))
    sent = []

    def stop_at_23(iteration, total, point):  # after the update at 20, before the one at 25
        if iteration >= 23 and not sent:
            sent.append(iteration)
            signal.raise_signal(signal.SIGINT)

    with graceful_stop(), pytest.raises(Interrupted):
        train_and_save(settings, splits, exp, exp.methods, *paths(tmp_path / "b"), progress=stop_at_23)
    assert (tmp_path / "b" / "ck.pt").is_file() and not (tmp_path / "b" / "m.json").exists()
    resumed = train_and_save(settings, splits, exp, exp.methods, *paths(tmp_path / "b"))
    assert not (tmp_path / "b" / "ck.pt").exists()
    assert resumed["networks"] == straight["networks"] and resumed["summary"] == straight["summary"]
    assert json.loads((tmp_path / "b" / "d.json").read_text()) == json.loads((tmp_path / "a" / "d.json").read_text())
    a, b = (torch.load(root / "m.pt", weights_only=True) for root in (tmp_path / "a", tmp_path / "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_settings_group_checks():
    from lth.runs.sparse_train import load_settings

    assert load_settings({}, "sparse_train").fractions() == [0.1, 0.035, 0.01]
    assert load_settings({"nm": "2:4"}, "sparse_train").fractions() == [0.5]
    for group, message in (({"methods": ["grow"]}, "unknown method 'grow'"),
                           ({"distributions": ["erk", "erk"]}, "names one twice"),
                           ({"remaining": ["0%"]}, "sparse_train.remaining"),
                           ({"stop_fraction": 0}, "bad stop_fraction 0"),
                           ({"nm": "3:2"}, "3:2"),
                           ({"duration": "ten"}, "ten")):
        with pytest.raises(LthError, match=message):
            load_settings(group, "sparse_train")
