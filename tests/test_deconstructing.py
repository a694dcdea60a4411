"""Zhou et al.'s generalised round: every mask-1 / mask-0 action, gradient criteria, frozen weights, supermasks."""

from __future__ import annotations

import pytest
import torch

from conftest import RunFiles, tiny_splits
from lth.core import files
from lth.pruning.actions import KEPT_ACTIONS, PRUNED_ACTIONS, rewind_state
from lth.pruning.criteria import score_layers
from lth.core.errors import LthError
from lth.models import build_model
from lth.steps.rounds import run_rounds
from lth.steps.mask import next_mask as mask_round
from lth.runs.settings import TrainSettings, defaults_for, replace
from lth.training.supermask import SupermaskSettings, frozen_weights, learn_supermask
from lth.training.loop import train

INIT = torch.tensor([0.5, -0.4, 0.3, -0.2, 0.1, -0.6])
REWIND = torch.tensor([0.55, -0.45, 0.35, -0.25, 0.15, -0.65])
FINAL = torch.tensor([0.9, -0.1, -0.3, -0.5, 0.05, -0.7])
FRESH = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
MASK = torch.tensor([True, True, False, False, True, False])


def act(kept="reset", pruned="zero", seed=0):
    state = rewind_state({"w": REWIND, "b": torch.tensor([7.0])}, {"w": INIT}, {"w": FINAL}, {"w": MASK},
                         kept, pruned, fresh={"w": FRESH}, seed=seed)
    return state["w"]


def test_kept_actions_give_exact_weights():
    std = float(INIT.std())
    assert act("reset").tolist() == pytest.approx([0.5, -0.4, 0, 0, 0.1, 0])
    assert act("rewind").tolist() == pytest.approx([0.55, -0.45, 0, 0, 0.15, 0])
    assert act("reinit").tolist() == pytest.approx([1.0, 2.0, 0, 0, 5.0, 0])
    assert act("signed_constant").tolist() == pytest.approx([std, -std, 0, 0, std, 0])
    shuffled = act("reshuffle")
    assert sorted(shuffled[MASK].tolist()) == sorted(INIT[MASK].tolist()) and (shuffled[~MASK] == 0).all()
    assert any(not torch.equal(act("reshuffle", seed=s)[MASK], INIT[MASK]) for s in range(10))
    signs = act("rand_signed_constant")
    assert signs[MASK].abs().tolist() == pytest.approx([std] * 3) and (signs[~MASK] == 0).all()
    assert torch.equal(signs, act("rand_signed_constant")), "seeded"


def test_pruned_actions_give_exact_weights():
    assert act(pruned="zero")[~MASK].tolist() == [0, 0, 0]
    assert act(pruned="freeze_init")[~MASK].tolist() == pytest.approx([0.3, -0.2, -0.6])
    # moved toward zero: |final| < |init| -> 0; positions 2 (0.3 -> -0.3: equal, not toward), 3 (grew), 5 (grew)
    moved = torch.tensor([0.5, -0.4, 0.3, -0.2, 0.1, -0.6])
    final = torch.tensor([0.5, -0.4, 0.1, -0.5, 0.1, -0.01])
    state = rewind_state({"w": moved}, {"w": moved}, {"w": final}, {"w": MASK}, "reset", "freeze_init_zero_mask")
    assert state["w"][~MASK].tolist() == pytest.approx([0.0, -0.2, 0.0])
    assert act(pruned="reinit_trainable")[~MASK].tolist() == [3.0, 4.0, 6.0]
    assert PRUNED_ACTIONS["reinit_trainable"].frozen is False and PRUNED_ACTIONS["freeze_init"].frozen


def test_unknown_actions_name_valid_choices():
    with pytest.raises(LthError, match="unknown mask-1 action 'keep'.*rand_signed_constant, reinit, reset"):
        act("keep")
    with pytest.raises(LthError, match="unknown mask-0 action 'drop'.*freeze_init"):
        act(pruned="drop")


def test_frozen_weights_stay_at_theta0_through_adam():
    splits = tiny_splits()
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=g) < 0.4 for n, p in model.named_parameters() if n.endswith("weight")}
    result = train(model, mask, splits, TrainSettings(batch_size=20, duration="15it", weight_decay=1e-3), seed=0,
                   hold_pruned=True)
    for name, m in mask.items():
        assert torch.equal(result.state[name][~m], theta0[name][~m]), f"{name}: frozen weights moved"
        assert not torch.equal(result.state[name][m], theta0[name][m])


def test_gradient_criteria():
    w_init = torch.tensor([1.0, 1.0, 1.0, 1.0])
    grads = {"w": torch.tensor([0.1, -3.0, 0.5, 0.0])}
    start = {"w": torch.tensor([2.0, 0.1, 1.0, 5.0])}
    snip = score_layers("snip", {"w": w_init}, {"w": w_init}, ["w"], 0, start=start, grads=grads)["w"]
    assert snip.tolist() == pytest.approx([0.2, 0.3, 0.5, 0.0])
    grad = score_layers("grad", {"w": w_init}, {"w": w_init}, ["w"], 0, grads=grads)["w"]
    assert grad.argsort(descending=True).tolist()[0] == 1
    with pytest.raises(ValueError, match="needs loss gradients"):
        score_layers("snip", {"w": w_init}, {"w": w_init}, ["w"], 0)


def small(**changes):
    base = replace(defaults_for("lenet-300-100", "mnist-5k"), train__batch_size=20, train__duration="6it",
                   train__eval_every="3it")
    return replace(base, **changes)


@pytest.mark.parametrize("criterion", ["snip", "grad", "movement", "large_final_same_sign"])
def test_runner_with_other_criteria_keeps_exact_sparsity(tmp_path, criterion):
    records = run_rounds(small(criterion=criterion), 2, tmp_path, tiny_splits())
    assert [round(r["weights_remaining"], 4) for r in records] == [1.0, 0.8004, 0.6406]
    assert all(0 <= n["start_test_acc"] <= 1 for r in records for n in r["networks"])


def test_freeze_init_run_keeps_pruned_weights_at_theta0(tmp_path):
    run_rounds(small(mask0_action="freeze_init"), 1, tmp_path, tiny_splits())
    layout = RunFiles(tmp_path)
    init = files.load_tensors(layout.init(0), "weights")
    final = files.load_tensors(layout.final(0, 1), "weights")
    mask = files.load_tensors(layout.mask(0, 1), "mask")
    for name, m in mask.items():
        assert torch.equal(final[name][~m], init[name][~m])


def test_reinit_trainable_keeps_changing_instead_of_shrinking(tmp_path):
    records = run_rounds(small(mask0_action="reinit_trainable"), 2, tmp_path, tiny_splits())
    assert [round(r["weights_remaining"], 4) for r in records] == [1.0, 0.8004, 0.8004]
    layout = RunFiles(tmp_path)
    final = files.load_tensors(layout.final(0, 1), "weights")
    start = files.load_tensors(layout.start(0, 1), "weights")
    mask = files.load_tensors(layout.mask(0, 1), "mask")
    assert (final["fc1.weight"][~mask["fc1.weight"]] != start["fc1.weight"][~mask["fc1.weight"]]).any(), \
        "re-initialised weights must be trainable"
    second = files.load_tensors(layout.mask(0, 2), "mask")
    assert not torch.equal(second["fc1.weight"], mask["fc1.weight"])
    assert (second["fc1.weight"] & ~mask["fc1.weight"]).any(), "a reselected mask may bring weights back"


def test_reselection_rate_is_constant():
    settings = small(mask0_action="reinit_trainable")
    mask = {"w": torch.zeros(100, dtype=torch.bool)}
    scores = {"w": torch.arange(100.0)}
    new = mask_round(settings, scores, mask, {"w": "fc"}, next_round=5)
    assert int(new["w"].sum()) == 80 and new["w"][20:].all()


def test_rewind_step_needs_the_rewind_action():
    with pytest.raises(LthError, match="rewind step '4it' has no effect with mask1_action 'reset'"):
        small(rewind="4it").validate()
    small(rewind="4it", mask1_action="rewind").validate()


def test_supermask_learns_and_reports_sparsity():
    splits = tiny_splits(n_train=200, n_eval=40)
    settings = SupermaskSettings(duration="20it", batch_size=20, eval_every="10it", lr=0.1)
    result = learn_supermask("lenet-300-100", splits, settings, seed=0)
    m = result["metrics"]
    assert 0 <= m["end_test_acc_sampled"] <= 1 and 0 < m["expected_weights_remaining"] < 1
    assert m["weights_remaining"] == pytest.approx(
        sum(int(v.sum()) for v in result["mask"].values()) / sum(v.numel() for v in result["mask"].values()), abs=1e-6)
    assert [p["iteration"] for p in result["curve"]] == [0, 10, 20]  # the training loop's own curve
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    constant = frozen_weights(state, ["fc1.weight"], "signed_constant")["fc1.weight"]
    assert constant.abs().unique().numel() == 1 and torch.equal(torch.sign(constant), torch.sign(state["fc1.weight"]))
    with pytest.raises(LthError, match="unknown supermask weights 'random'"):
        SupermaskSettings(weights="random").validate()


def test_every_action_is_listed_with_a_description():
    for action in [*KEPT_ACTIONS.values(), *PRUNED_ACTIONS.values()]:
        assert action.description
