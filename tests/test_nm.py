"""N:M sparsity masks for IMP rounds (issue 31, item 4): lth.pruning.nm, pruning 'nm', lth compact --nm."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli
from lth.core.errors import LthError
from lth.runs.settings import defaults_for, from_dict, replace
from lth.pruning.nm import check_nm_shapes, group_counts, nm_keep, nm_random, parse_nm
from lth.steps.mask import next_mask as mask_round


def _expected_keep(scores: torch.Tensor, mask: torch.Tensor, keep: int, m: int) -> torch.Tensor:
    """Reference by plain Python loops: per group of m inputs, the `keep` best-scored survivors, lowest index first
    among equal scores."""
    rows = scores.reshape(scores.shape[0], -1).tolist()
    alive = mask.reshape(mask.shape[0], -1).tolist()
    out = [[False] * len(row) for row in rows]
    for r, row in enumerate(rows):
        for start in range(0, len(row), m):
            survivors = [i for i in range(start, start + m) if alive[r][i]]
            for i in sorted(survivors, key=lambda i: (-row[i], i))[:keep]:
                out[r][i] = True
    return torch.tensor(out).reshape(mask.shape)


def _k(rate: float, r: int, n: int = 2, m: int = 4) -> int:
    return max(n, min(m, int(round(m * (1 - rate) ** r))))


# --- the pattern ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, nm", [("2:4", (2, 4)), ("1:8", (1, 8)), (" 3 : 16 ", (3, 16))])
def test_parse_nm(text, nm):
    assert parse_nm(text) == nm


@pytest.mark.parametrize("text, message", [
    ("4:4", "bad N:M '4:4': N must be smaller than M, e.g. 2:4"),
    ("5:4", "N must be smaller than M"),
    ("0:4", "N must be at least 1"),
    ("2-4", "bad N:M '2-4'"),
    ("two:four", "bad N:M 'two:four'"),
    ("", "bad N:M ''"),
])
def test_parse_nm_rejects_bad_text_in_one_line(text, message):
    with pytest.raises(LthError) as error:
        parse_nm(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_nm_keep_by_hand():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3, -1.0, -2.0, 4.0, 4.0],
                           [7.0, 7.0, 7.0, 7.0, 0.0, 1.0, 2.0, 3.0]])
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 7] = False  # the best of its group, but already pruned
    kept = nm_keep(scores, mask, 2, 4)
    assert kept.tolist() == [[False, True, True, False, False, False, True, True],
                             [True, True, False, False, False, True, True, False]]


@pytest.mark.parametrize("shape, keep, m", [((6, 16), 2, 4), ((5, 24), 3, 8), ((4, 4, 2, 2), 1, 4), ((3, 12), 4, 4)])
def test_nm_keep_matches_the_reference_and_respects_the_mask(shape, keep, m):
    g = torch.Generator().manual_seed(7)
    scores = torch.randint(0, 4, shape, generator=g).float()  # many ties
    mask = torch.rand(shape, generator=g) < 0.7
    kept = nm_keep(scores, mask, keep, m)
    assert kept.dtype == torch.bool and kept.shape == mask.shape
    assert torch.equal(kept, _expected_keep(scores, mask, keep, m))
    assert not (kept & ~mask).any()  # never revives a pruned weight
    assert torch.equal(group_counts(kept, m), group_counts(mask, m).clamp(max=keep))
    full = nm_keep(scores, torch.ones(shape, dtype=torch.bool), keep, m)
    assert (group_counts(full, m) == keep).all()


def test_nm_keep_on_a_conv_groups_the_flattened_inputs():
    scores = torch.arange(2 * 2 * 2 * 2, dtype=torch.float).reshape(2, 2, 2, 2)  # (out, in, kh, kw): 8 inputs
    kept = nm_keep(scores, torch.ones_like(scores, dtype=torch.bool), 1, 4)
    assert kept.flatten(1).tolist() == [[False, False, False, True, False, False, False, True]] * 2


def test_nm_random_exact_and_seeded():
    shape = (7, 3, 2, 2)
    a = nm_random(shape, 2, 4, torch.Generator().manual_seed(1))
    b = nm_random(shape, 2, 4, torch.Generator().manual_seed(1))
    c = nm_random(shape, 2, 4, torch.Generator().manual_seed(2))
    assert a.shape == shape and a.dtype == torch.bool
    assert (group_counts(a, 4) == 2).all() and group_counts(a, 4).shape == (7, 3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (group_counts(nm_random((4, 16), 3, 8, torch.Generator().manual_seed(0)), 8) == 3).all()


def test_check_nm_shapes_names_the_layer():
    check_nm_shapes({"fc1.weight": (300, 784), "conv.weight": (8, 3, 2, 2)}, 4)
    with pytest.raises(LthError, match=r"layer 'conv.weight' has input size 27 .*not a multiple of 4"):
        check_nm_shapes({"fc1.weight": (300, 784), "conv.weight": (8, 3, 3, 3), "fc2.weight": (10, 30)}, 4)
    with pytest.raises(LthError, match="layer 'fc1.weight' has input size 784"):
        check_nm_shapes({"fc1.weight": (300, 784)}, 3)


# --- pruning 'nm' in a round ---------------------------------------------------------------------------


def _lenet():
    from lth.core.masks import ones_mask
    from lth.models import build_model
    from lth.pruning.criteria import score_layers

    model = build_model("lenet-300-100", (1, 28, 28), 10, 0)
    kinds = model.prunable_layers()
    scores = score_layers("large_final", model.state_dict(), model.state_dict(), list(kinds), 1)
    return kinds, scores, ones_mask(model, kinds)


def test_mask_rounds_tighten_to_n_of_m():
    kinds, scores, mask = _lenet()
    settings = replace(defaults_for("lenet-300-100"), pruning="nm", prune__nm="2:4",
                       prune__rates={"fc": 0.2, "output": 0.0}).validate()
    for r in (1, 2, 3, 4):
        mask = mask_round(settings, scores, mask, kinds, r)
        for name in ("fc1.weight", "fc2.weight"):
            assert (group_counts(mask[name], 4) == _k(0.2, r)).all(), (name, r)
        assert mask["fc3.weight"].all()  # rate 0: untouched
    assert _k(0.2, 3) == 2  # the pattern reached 2:4 and stays there
    halves = mask_round(replace(settings, prune__nm="1:2"), scores, mask, kinds, 30)  # 2:4 -> 1:2, any N:M
    assert torch.equal(group_counts(halves["fc2.weight"], 2), group_counts(mask["fc2.weight"], 2).clamp(max=1))
    assert not (halves["fc2.weight"] & ~mask["fc2.weight"]).any()


def test_oneshot_goes_straight_to_n_of_m():
    kinds, scores, mask = _lenet()
    settings = replace(defaults_for("lenet-300-100"), pruning="nm", prune__nm="1:4", prune__schedule="oneshot")
    new = mask_round(settings.validate(), scores, mask, kinds, 1)
    assert all((group_counts(new[name], 4) == 1).all() for name in kinds)


def test_nm_settings():
    base = defaults_for("lenet-300-100", "mnist-5k")
    assert base.prune.nm == "2:4" and "nm" in base.to_dict()["prune"]
    assert replace(base, prune__nm="2:4").fingerprint() == base.fingerprint()  # the default changes nothing
    assert replace(base, pruning="nm", prune__nm="1:4").fingerprint() != replace(base, pruning="nm").fingerprint()
    with pytest.raises(LthError, match="bad N:M '4:4'"):
        replace(base, pruning="nm", prune__nm="4:4").validate()
    with pytest.raises(LthError, match="N:M pruning ranks weights within groups.*'global'"):
        replace(defaults_for("resnet-20"), pruning="nm").validate()
    with pytest.raises(LthError, match=r"bad prune.nm 124: write the N:M pattern in quotes"):
        from_dict({"pruning": "nm", "prune": {"nm": 124}})  # YAML's reading of an unquoted 2:4
    assert from_dict({"pruning": "nm", "prune": {"nm": "1:4"}}).prune.nm == "1:4"


# --- end to end ----------------------------------------------------------------------------------------

RUN = ["--pruning", "nm", "--nm", "2:4", "--rate", "fc=0.3", "--rate", "output=0.3", "--iterations", "10",
       "--batch-size", "20", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def nm_run(tmp_path_factory):
    """A LeNet-300-100 ticket on mnist-5k pruned 2 rounds with --pruning nm: 3 of 4 kept, then 2 of 4."""
    import sys

    from lth.cli import main

    out = tmp_path_factory.mktemp("nm") / "run"
    argv = sys.argv
    sys.argv = ["lth", "find-ticket", "lenet-300-100", "mnist-5k", str(out.parent), *RUN, "--rounds", "2",
                "--out", str(out)]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = argv
    assert not exit_info.value.code
    return out


def test_find_ticket_nm_saves_k_of_m_masks(nm_run):
    assert [_k(0.3, r) for r in (1, 2)] == [3, 2]
    for r in (1, 2):
        mask = torch.load(nm_run / f"data/rounds/r{r:02d}/mask/trial-0.pt", weights_only=True)["tensors"]
        for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
            assert (group_counts(mask[name], 4) == _k(0.3, r)).all(), (name, r)
    final = torch.load(nm_run / "data/rounds/r02/final/trial-0.pt", weights_only=True)["tensors"]
    assert not final["fc1.weight"][~mask["fc1.weight"]].any()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU message; the CUDA branch is tested below")
def test_compact_nm_on_cpu_checks_the_pattern_and_says_a_gpu_is_needed(nm_run, monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "compact", str(nm_run), "--nm")
    assert code == 0, err
    out = " ".join(out.split())  # rich wraps lines at the terminal's width
    assert "r02 trial 0: at most 2 of every 4 consecutive inputs kept in fc1.weight, fc2.weight, fc3.weight" in out
    assert "semi-structured speed-up needs a CUDA GPU" in out
    code, _, err = run_cli(monkeypatch, capsys, "compact", str(nm_run), "--nm", "--round", "1")
    assert code == 2 and "Traceback" not in err
    err = " ".join(err.split())
    assert "layer 'fc1.weight' is not 2:4 sparse: row 0 keeps 3 of its inputs 0..3" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compact_nm_on_cuda_times_both_or_says_why_not(nm_run, monkeypatch, capsys):
    from lth.compact.semi_structured import nm_rounds, semi_structured_speed

    rows = nm_rounds(nm_run, batch_size=256)
    row = rows[0]
    assert row["cuda"] and row["round"] == 2
    assert "speedup" in row or row["reason"]  # LeNet's 300 x 784 is no multiple of 32 rows: may not convert
    if "speedup" in row:
        assert row["dense_ms"] > 0 and row["sparse_ms"] > 0 and row["max_abs_diff"] < 0.1
    code, out, _ = run_cli(monkeypatch, capsys, "compact", str(nm_run), "--nm")
    assert code == 0 and "2:4 semi-structured vs dense masked network" in out
    if "speedup" not in row:  # (a timed ratio near 1 may fall either way between two runs)
        assert f"r02 trial 0: no speed-up: {row['reason']}"[:60] in out.replace("\n", " ")
    # a shape the kernels take: 2:4 weights of 512 x 1024
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 512))
    with torch.no_grad():
        for i in (1, 3):
            w = net[i].weight
            w.mul_(nm_random(tuple(w.shape), 2, 4, torch.Generator().manual_seed(i)))
    info = semi_structured_speed(net.eval(), ["1.weight", "3.weight"], (1024,), 1024)
    assert "reason" in info or info["speedup"] > 1
    if info.get("converted"):
        assert info["converted"] == ["1.weight", "3.weight"]


@pytest.mark.parametrize("extra, message", [
    (["--pruning", "nm", "--nm", "4:4"], "bad N:M '4:4': N must be smaller than M, e.g. 2:4"),
    (["--pruning", "nm", "--nm", "2:3"], "layer 'fc1.weight' has input size 784"),
    (["--pruning", "nm", "--nm", "x"], "bad N:M 'x'"),
    (["--nm", "2:4"], "add --pruning nm"),
])
def test_cli_bad_nm_exits_2_with_one_line(extra, message, monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "find-ticket", "lenet-300-100", "mnist-5k", str(tmp_path),
                           "--iterations", "2", "--rounds", "1", "--device", "cpu", "--quiet",
                           "--out", str(tmp_path / "run"), *extra)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "data").exists()


def test_global_nm_is_refused_in_the_mask_function():
    from lth.pruning.prune import GRANULARITIES

    kinds, scores, mask = _lenet()
    with pytest.raises(LthError, match="N:M pruning is per group"):
        GRANULARITIES["nm"].next_mask(scores, mask, kinds, {"fc": 0.2}, "global", 1, 0, None, nm=(2, 4))
    with pytest.raises(LthError, match="layer 'fc1.weight' has input size 784.*multiple of 5"):
        GRANULARITIES["nm"].next_mask(scores, mask, kinds, {"fc": 0.2}, "layerwise", 1, 0, None, nm=(2, 5))


def test_params_yaml_reads_an_unquoted_nm_as_dvc_writes_it(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with YAML 1.2 (ruamel), which leaves 2:4 unquoted; lth reads it as
    the string it is, not YAML 1.1's base-60 number 124."""
    from lth.runs.params import read_yaml

    path = tmp_path / "params.yaml"
    path.write_text("prune:\n  nm: 2:4\nsparse_train:\n  nm: 1:4\nseed: 7\ntrain: {lr: 0.0012}\n")
    data = read_yaml(path)
    assert data["prune"]["nm"] == "2:4" and data["sparse_train"]["nm"] == "1:4"
    assert data["seed"] == 7 and data["train"]["lr"] == 0.0012
