"""Effective sparsity (lth.pruning.effective, `lth effective-sparsity`): hand-built masks with cut-off units,
a conv map flattened into a Linear, a model that is not a chain, and the command on a real tiny run."""

from __future__ import annotations

import io

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import run_cli
from lth.core.errors import LthError
from lth.pruning.effective import effective_masks, model_chain


def test_a_neuron_without_inputs_or_without_outputs_cuts_off_its_other_side():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    chain = model_chain(model)
    assert chain == ["0.weight", "2.weight"]
    first = torch.tensor([[1, 1, 0, 0],    # hidden 0: fed and read: connected
                          [0, 0, 0, 0],    # hidden 1: nothing comes in
                          [1, 0, 1, 1]], dtype=torch.bool)  # hidden 2: nothing goes out (see below)
    second = torch.tensor([[1, 1, 0],      # output 0 reads hidden 0 and the dead hidden 1
                           [1, 1, 0]], dtype=torch.bool)
    found = effective_masks({"0.weight": first, "2.weight": second}, chain)
    assert found.kept == {"0.weight": 5, "2.weight": 4}
    # hidden 2's three incoming weights lead nowhere; hidden 1's two outgoing weights carry nothing
    assert found.effective == {"0.weight": 2, "2.weight": 2}
    assert torch.equal(found.masks["0.weight"], torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]).bool())
    assert torch.equal(found.masks["2.weight"], torch.tensor([[1, 0, 0], [1, 0, 0]]).bool())
    assert found.disconnected_units == {"0.weight": 2, "2.weight": 0}
    assert found.remaining == pytest.approx(9 / 18) and found.effective_remaining == pytest.approx(4 / 18)
    dense = {"0.weight": torch.ones(3, 4, dtype=torch.bool), "2.weight": torch.ones(2, 3, dtype=torch.bool)}
    assert effective_masks(dense, chain).effective_remaining == 1.0  # nothing pruned: everything effective


def test_a_dead_conv_channel_cuts_off_its_flattened_columns():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))  # 4x4 in -> 2x2x2
    chain = model_chain(model)
    conv = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    conv[1] = False  # channel 1 gets no input
    linear = torch.ones(3, 8, dtype=torch.bool)
    found = effective_masks({chain[0]: conv, chain[1]: linear}, chain)
    assert found.effective[chain[0]] == 9 and found.effective[chain[1]] == 12  # columns 4..7 read channel 1
    assert bool(found.masks[chain[1]][:, :4].all()) and not bool(found.masks[chain[1]][:, 4:].any())
    assert found.disconnected_units[chain[0]] == 1


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(x + self.a(x))


def test_a_model_that_is_not_a_chain_is_not_computed_clearly():
    with pytest.raises(LthError, match="effective sparsity is not computed: .*chain of Linear/Conv layers.*a branch"):
        model_chain(Residual())


def test_the_command_on_a_run(tmp_path, monkeypatch, capsys):
    from conftest import tiny_splits
    from lth.engine.settings import RunSettings, TrainSettings, replace
    from lth.steps.rounds import find_ticket

    train = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="8it", eval_every="4it")
    settings = replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train, trials=2),
                       prune__schedule="oneshot", prune__target=0.01)
    find_ticket(settings, 1, tmp_path / "run", tiny_splits())
    code, out, err = run_cli(monkeypatch, capsys, "effective-sparsity", str(tmp_path / "run"), "--csv")
    assert code == 0, err
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == 2 * 2 * 3 and set(frame["layer"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert (frame["effective"] <= frame["kept"]).all() and (frame["kept"] <= frame["total"]).all()
    sparse = frame[frame["round"] == 1]
    assert sparse["effective"].sum() < sparse["kept"].sum()  # at 1% of the weights, some are cut off
    assert (frame[frame["round"] == 0]["effective"] == frame[frame["round"] == 0]["total"]).all()
    code, out, err = run_cli(monkeypatch, capsys, "effective-sparsity", str(tmp_path / "run"))
    assert code == 0 and "% effective" in out and "r01" in out, err
    code, _, err = run_cli(monkeypatch, capsys, "effective-sparsity", str(tmp_path / "nothing"))
    assert code == 2 and "nothing" in err
