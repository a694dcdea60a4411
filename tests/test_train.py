"""The trainer: masks stay exact through every optimizer step, seeding, rewind capture, schedules."""

from __future__ import annotations

import pytest
import torch

from conftest import random_mask, tiny_splits
from lth.models import build_model
from lth.runs.settings import TrainSettings
from lth.training.loop import lr_factor, train


@pytest.mark.parametrize(
    "settings",
    [
        TrainSettings(optimizer="adam", lr=1e-2, batch_size=20, duration="30it", weight_decay=1e-3),
        TrainSettings(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, batch_size=20, duration="30it",
                      weight_decay=1e-3),
        TrainSettings(optimizer="radam", lr=1e-2, batch_size=20, duration="30it"),
    ],
    ids=["adam", "sgd-nesterov", "radam"],
)
def test_pruned_weights_stay_exactly_zero_through_every_step(settings, monkeypatch):
    import lth.training.loop as T

    splits = tiny_splits()
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    mask = random_mask(model, keep=0.3)
    params = dict(model.named_parameters())
    checks = []

    def spy(all_params, train_settings, *rest):
        optimizer = real(all_params, train_settings, *rest)
        # runs right after every optimizer.step(): pruned weights must already be zero there
        optimizer.register_step_post_hook(
            lambda *_: checks.append(all(bool((params[n][~m] == 0).all()) for n, m in mask.items()))
        )
        return optimizer

    real = T.make_optimizer
    monkeypatch.setattr(T, "make_optimizer", spy)
    result = train(model, mask, splits, settings, seed=0)
    assert len(checks) == 30 and all(checks), "a pruned weight was nonzero after some optimizer step"
    for name, m in mask.items():
        assert (result.state[name][~m] == 0).all(), f"{name}: a pruned weight is nonzero after training"
        assert (result.state[name][m] != 0).float().mean() > 0.99, f"{name}: kept weights were zeroed"
        assert not torch.equal(result.state[name][m], theta0[name][m]), f"{name}: kept weights did not train"


def test_adam_moments_of_pruned_weights_stay_zero(monkeypatch):
    import lth.training.loop as T

    captured = {}
    real = T.make_optimizer

    def spy(params, settings, *rest):
        captured["opt"] = real(params, settings, *rest)
        captured["params"] = params
        return captured["opt"]

    monkeypatch.setattr(T, "make_optimizer", spy)
    splits = tiny_splits()
    model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
    mask = random_mask(model, keep=0.3)
    train(model, mask, splits, TrainSettings(batch_size=20, duration="25it"), seed=0)
    names = {id(p): n for n, p in model.named_parameters()}
    checked = 0
    for p in captured["params"]:
        name = names[id(p)]
        if name in mask:
            state = captured["opt"].state[p]
            assert (state["exp_avg"][~mask[name]] == 0).all() and (state["exp_avg_sq"][~mask[name]] == 0).all()
            assert (p[~mask[name]] == 0).all()
            checked += 1
    assert checked == 3


def test_training_is_seeded_and_learns():
    splits = tiny_splits()
    settings = TrainSettings(batch_size=20, duration="3ep", eval_every="6it")
    runs = []
    for seed in (0, 0, 1):
        model = build_model("lenet-300-100", (1, 28, 28), 10, seed=0)
        mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
        runs.append(train(model, mask, splits, settings, seed=seed))
    assert all(torch.equal(runs[0].state[k], runs[1].state[k]) for k in runs[0].state)
    assert not torch.equal(runs[0].state["fc1.weight"], runs[2].state["fc1.weight"])  # data order follows the seed
    curve = runs[0].curve
    assert [p["iteration"] for p in curve] == [0, 6, 12, 18]
    assert curve[-1]["train_loss"] < curve[1]["train_loss"]
    assert runs[0].early_stop["val_loss"] == min(p["val_loss"] for p in curve)


def test_a_run_stopped_at_k_equals_the_first_k_steps_of_a_longer_run():
    """Why the rewind point θk is its own short training (lth.steps.rewind_point): the state after k steps
    of the dense run equals a k-step run. Seen here through a hook that snapshots the longer run at step k."""
    from lth.training.hooks import Hook
    from lth.training.loop import run_training
    from lth.training.networks import SingleNetwork

    class Snapshot(Hook):
        def __init__(self, at):
            self.at, self.state = at, None

        def after_step(self, loop):
            if loop.iteration == self.at:
                self.state = loop.nets.state(0)

    splits = tiny_splits()
    build = lambda: build_model("lenet-300-100", (1, 28, 28), 10, seed=0)  # noqa: E731
    model = build()
    mask = random_mask(model, keep=0.5)
    snapshot = Snapshot(7)
    run_training(SingleNetwork(model), [mask], splits, TrainSettings(batch_size=20, duration="20it"), [0],
                 hooks=[snapshot])
    short = train(build(), mask, splits, TrainSettings(batch_size=20, duration="7it"), seed=0)
    for name in short.state:
        assert torch.equal(snapshot.state[name], short.state[name]), name


def test_lr_schedule_warmup_and_milestones():
    assert lr_factor(0, 10, [], 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, [], 0.1) == pytest.approx(1.0)
    assert lr_factor(50, 10, [40, 60], 0.1) == pytest.approx(0.1)
    assert lr_factor(60, 10, [40, 60], 0.1) == pytest.approx(0.01)


def test_cifar_shaped_conv_training_with_augmentation():
    splits = tiny_splits(n_train=40, n_eval=10, shape=(3, 32, 32), augment=True)
    model = build_model("conv-2", (3, 32, 32), 10, seed=0)
    mask = random_mask(model, keep=0.5)
    result = train(model, mask, splits, TrainSettings(batch_size=10, duration="4it"), seed=0)
    for name, m in mask.items():
        assert (result.state[name][~m] == 0).all()
