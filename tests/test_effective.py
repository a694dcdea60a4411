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
    from lth.runs.settings import RunSettings, TrainSettings, replace
    from lth.steps.rounds import run_rounds

    train = TrainSettings(optimizer="adam", lr=1e-3, batch_size=20, duration="8it", eval_every="4it")
    settings = replace(RunSettings(model="lenet-300-100", dataset="mnist-5k", train=train, trials=2),
                       prune__schedule="oneshot", prune__target=0.01)
    run_rounds(settings, 1, tmp_path / "run", tiny_splits())
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


def test_every_record_carries_effective_sparsity_and_the_report_can_plot_it(tmp_path):
    """IMP rounds, pruning at init and sparse training record effective_remaining (equal to effective_masks of
    the network's mask), per layer too; a model that is not a chain says why instead; `lth report --x-axis
    effective` draws on it, and the sparse-training section lines the methods up with the tickets."""
    from conftest import tiny_splits
    from lth.core import files
    from lth.runs.layout import Layout
    from lth.runs.settings import defaults_for, replace
    from lth.experiments.prune_at_init import prune_and_train
    from lth.experiments.sparse_train import train_and_save
    from lth.report import make_report
    from lth.steps.rounds import run_rounds
    from lth.runs.sparse_train import SparseTrainSettings

    settings = replace(defaults_for("lenet-300-100", "mnist-5k"), trials=2, controls=("reinit",),
                       train__duration="12it", train__eval_every="6it", train__batch_size=20,
                       prune__rates={"fc": 0.9, "output": 0.5})
    splits = tiny_splits()
    records = run_rounds(settings, 2, tmp_path / "run", splits)
    chain = ["fc1.weight", "fc2.weight", "fc3.weight"]
    layout = Layout(tmp_path / "run")
    for record in records:
        for net in record["networks"]:
            if net["arm"] != "ticket":
                continue
            mask = files.load_tensors(layout.trial_file(layout.round_dir(f"r{record['round']:02d}", "mask"),
                                                        net["trial"]), "mask")
            expected = effective_masks(mask, chain)
            assert net["effective_remaining"] == round(expected.effective_remaining, 6)
            assert net["disconnected_units"] == sum(expected.disconnected_units.values())
            assert net["layers"]["fc1.weight"]["effective_remaining"] == round(
                expected.effective["fc1.weight"] / expected.total["fc1.weight"], 6)
    assert records[-1]["networks"][0]["effective_remaining"] <= records[-1]["networks"][0]["weights_remaining"]

    at_init = prune_and_train(replace(settings, trials=1), splits, "random", 0.05)
    assert 0 < at_init["networks"][0]["effective_remaining"] <= at_init["networks"][0]["weights_remaining"]

    exp = SparseTrainSettings(methods=("static", "rigl"), remaining=("20%", "5%"), trials=2, update_every=4)
    out = layout.sparse_train_dir
    metrics = train_and_save(settings, splits, exp, exp.methods, out / "st.json", tmp_path / "d.json",
                             tmp_path / "m.pt", tmp_path / "ck.pt")
    assert all(0 < n["effective_remaining"] <= n["weights_remaining"] for n in metrics["networks"])

    class Branchy(nn.Module):  # a residual connection: not a chain
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.b(x + self.a(x))

    from lth.pruning.effective import effective_fields

    with pytest.raises(LthError) as err:
        model_chain(Branchy())
    fields = effective_fields({"a.weight": torch.ones(4, 4, dtype=torch.bool)}, str(err.value))
    assert fields["effective_remaining"] is None and "not computed" in fields["effective_not_computed"]

    make_report([str(tmp_path / "run")], tmp_path / "report", x_axis="effective")
    report = tmp_path / "report"
    assert (report / "sparse_train.png").is_file() and (report / "by_sparsity.png").is_file()
    matched = pd.read_csv(report / "sparse_vs_tickets.csv")
    assert list(matched["weights_remaining"]) == pytest.approx([0.2, 0.05], abs=1e-4)
    assert {"static", "rigl", "IMP ticket", "IMP reinit", "best"} <= set(matched.columns)
    assert "effective weights remaining" in (report / "report.md").read_text()
    arms = pd.read_csv(report / "arms.csv")
    assert arms["effective_remaining"].notna().all()
    with pytest.raises(LthError, match="unknown x axis 'pixels'"):
        make_report([str(tmp_path / "run")], tmp_path / "report2", x_axis="pixels")
