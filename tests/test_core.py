"""Steps, settings validation, criteria, pruning schedules and rewinding actions: the pure pieces."""

from __future__ import annotations

import pytest
import torch

from lth.pruning.actions import rewind_state
from lth.pruning.criteria import CRITERIA, score_layers
from lth.core.errors import LthError
from lth.pruning.prune import next_mask
from lth.pruning.ranking import kept_after
from lth.runs.settings import RunSettings, defaults_for, from_dict, replace
from lth.core.durations import Step


# --- steps -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,epochs,its", [("50ep", 50, 0), ("1000it", 0, 1000), ("2ep100it", 2, 100), (7, 0, 7)])
def test_step_parse(text, epochs, its):
    step = Step.parse(text)
    assert (step.epochs, step.iterations) == (epochs, its)
    assert step.to_iterations(66) == epochs * 66 + its
    assert Step.parse(str(step)) == step


@pytest.mark.parametrize("bad", ["", "ep", "10", "5 epochs", "-3it", "1.5ep", "it10", True, -1])
def test_step_parse_rejects(bad):
    with pytest.raises(LthError, match="bad step"):
        Step.parse(bad)


# --- settings ----------------------------------------------------------------------------------------------


def test_defaults_follow_the_paper():
    s = defaults_for("lenet-300-100", "mnist-5k")
    assert (s.train.optimizer, s.train.lr, s.train.batch_size, s.train.duration) == ("adam", 1.2e-3, 60, "50ep")
    assert s.prune.rates == {"conv": 0.0, "fc": 0.2, "output": 0.1}
    assert defaults_for("resnet-20").prune.method == "global"


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(model="lenet-301"), "unknown model 'lenet-301'.*lenet-300-100"),
        (dict(dataset="mnist5k"), "unknown dataset 'mnist5k'.*did you mean 'mnist-5k'"),
        (dict(criterion="large-final"), "unknown criterion 'large-final'.*large_final"),
        (dict(train__optimizer="adamw"), "unknown optimizer 'adamw'.*adam, radam, sgd"),
        (dict(train__lr=0.0), "bad lr"),
        (dict(train__batch_size=0), "bad batch_size"),
        (dict(train__duration="fifty"), "bad step 'fifty'"),
        (dict(rewind="3 epochs"), "bad step '3 epochs'"),
        (dict(prune__rates={"conv": 0.1, "fc": 1.0, "output": 0.1}), r"bad pruning rate fc=1.0.*\[0, 1\)"),
        (dict(prune__rates={"conv": 0.1, "fc": -0.1, "output": 0.1}), "bad pruning rate fc=-0.1"),
        (dict(prune__method="global"), "global pruning needs one rate"),
        (dict(prune__method="random"), "unknown pruning method 'random'"),
    ],
)
def test_validate_names_the_bad_value(change, message):
    with pytest.raises(LthError, match=message):
        replace(defaults_for("lenet-300-100", "mnist-5k"), **change).validate()


def test_from_dict_rejects_unknown_keys_and_types():
    with pytest.raises(LthError, match="unknown key 'critrion'.*did you mean 'criterion'"):
        from_dict({"critrion": "movement"})
    with pytest.raises(LthError, match="train.batch_size: expected an integer"):
        from_dict({"train": {"batch_size": "sixty"}})
    s = from_dict({"model": "conv-2", "criterion": "movement", "train": {"lr": 1e-3}, "prune": {"rates": {"fc": 0.3}}})
    assert s.train.lr == 1e-3 and s.train.batch_size == 60 and s.prune.rates == {"conv": 0.1, "fc": 0.3, "output": 0.1}


def test_fingerprint_ignores_nothing_that_matters():
    a = defaults_for("lenet-300-100", "mnist-5k")
    assert a.fingerprint() == defaults_for("lenet-300-100", "mnist-5k").fingerprint()
    assert a.fingerprint() != replace(a, train__lr=1e-3).fingerprint()
    assert a.fingerprint() != replace(a, seed=1).fingerprint()


# --- criteria ----------------------------------------------------------------------------------------------


def test_criteria_rank_a_hand_built_layer():
    w_init = torch.tensor([0.5, -0.5, 0.1, -0.1])
    w_final = torch.tensor([0.2, 0.9, -0.3, -0.05])
    s = lambda name: score_layers(name, {"w": w_init}, {"w": w_final}, ["w"], seed=0)["w"]  # noqa: E731
    assert s("large_final").argsort(descending=True).tolist() == [1, 2, 0, 3]
    assert s("small_final").argsort(descending=True).tolist() == [3, 0, 2, 1]
    assert torch.allclose(s("magnitude_increase"), torch.tensor([-0.3, 0.4, 0.2, -0.05]))
    assert torch.allclose(s("movement"), torch.tensor([0.3, 1.4, 0.4, 0.05]))
    same = s("large_final_same_sign")  # same sign: 0 (+,+) and 3 (-,-)
    assert set(same.argsort(descending=True)[:2].tolist()) == {0, 3}
    assert torch.equal(s("random"), s("random"))  # seeded


def test_every_criterion_scores_every_weight():
    w = torch.randn(5, 7)
    for name in CRITERIA:
        scores = score_layers(name, {"w": w}, {"w": w * 1.5 + 0.1}, ["w"], seed=1, start={"w": w},
                              grads={"w": torch.randn(5, 7)})["w"]
        assert scores.shape == w.shape and torch.isfinite(scores).all(), name


# --- pruning -----------------------------------------------------------------------------------------------


def test_layerwise_pruning_keeps_exact_counts_and_only_survivors():
    torch.manual_seed(0)
    mask = {"a": torch.ones(40, 25, dtype=torch.bool), "out": torch.ones(10, 10, dtype=torch.bool)}
    kinds, rates = {"a": "fc", "out": "output"}, {"fc": 0.2, "output": 0.1, "conv": 0.0}
    for r in range(1, 8):
        scores = {k: torch.randn(v.shape) for k, v in mask.items()}
        new = next_mask(scores, mask, kinds, rates, "layerwise", r, seed=0)
        assert int(new["a"].sum()) == round(1000 * 0.8**r) == kept_after(1000, 0.2, r)
        assert int(new["out"].sum()) == round(100 * 0.9**r)
        assert not (new["a"] & ~mask["a"]).any(), "a pruned weight came back"
        mask = new


def test_pruning_removes_the_lowest_scores_and_breaks_ties_by_seed():
    mask = {"w": torch.ones(10, dtype=torch.bool)}
    scores = {"w": torch.arange(10.0)}
    new = next_mask(scores, mask, {"w": "fc"}, {"fc": 0.2}, "layerwise", 1, seed=0)
    assert new["w"].tolist() == [False, False] + [True] * 8
    ties = {"w": torch.zeros(10)}
    picks = {tuple(next_mask(ties, mask, {"w": "fc"}, {"fc": 0.5}, "layerwise", 1, seed=s)["w"].tolist()) for s in range(6)}
    assert len(picks) > 1, "ties must be broken by a seeded random order, not by index"
    again = next_mask(ties, mask, {"w": "fc"}, {"fc": 0.5}, "layerwise", 1, seed=3)["w"]
    assert torch.equal(again, next_mask(ties, mask, {"w": "fc"}, {"fc": 0.5}, "layerwise", 1, seed=3)["w"])


def test_global_pruning_ranks_across_layers():
    mask = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool), "o": torch.ones(2, dtype=torch.bool)}
    scores = {"a": torch.tensor([1.0, 2, 3, 4]), "b": torch.tensor([10.0, 20, 30, 40]), "o": torch.zeros(2)}
    kinds = {"a": "conv", "b": "conv", "o": "output"}
    new = next_mask(scores, mask, kinds, {"conv": 0.5, "output": 0.0}, "global", 1, seed=0)
    assert new["a"].sum() == 0 and new["b"].all() and new["o"].all()


# --- actions -----------------------------------------------------------------------------------------------


def test_rewind_restores_survivors_and_zeroes_the_rest():
    init = {"w": torch.tensor([1.0, 2, 3, 4]), "b": torch.tensor([0.5])}
    point = {"w": torch.tensor([1.5, 2.5, 3.5, 4.5]), "b": torch.tensor([0.7])}
    final = {"w": torch.tensor([9.0, 9, 9, 9]), "b": torch.tensor([9.0])}
    mask = {"w": torch.tensor([True, False, True, False])}
    assert rewind_state(point, init, final, mask)["w"].tolist() == [1.0, 0.0, 3.0, 0.0]  # reset: θ0
    state = rewind_state(point, init, final, mask, kept="rewind")
    assert state["w"].tolist() == [1.5, 0.0, 3.5, 0.0]  # rewind: θk
    assert torch.equal(state["b"], point["b"])  # biases are never pruned and go back to the rewind point
    with pytest.raises(LthError, match="unknown mask-1 action"):
        rewind_state(point, init, final, mask, kept="bogus")


def test_run_settings_round_trip_through_dict():
    s = replace(RunSettings(), train__milestones=("1ep", "2ep"))
    assert from_dict(s.to_dict()) == s
