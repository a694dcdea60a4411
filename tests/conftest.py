"""Shared test helpers: tiny hand-made dataset files (no network), and fixtures that keep tests offline."""

from __future__ import annotations

import os
import pickle
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `python -m lth ARGS` in-process; returns (exit code, stdout, stderr)."""
    from lth.cli import main

    monkeypatch.setattr(sys, "argv", ["lth", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_info:
        main()
    out, err = capsys.readouterr()
    return exit_info.value.code or 0, out, err


def write_idx(path: Path, array: np.ndarray) -> None:
    """A raw (uncompressed) big-endian IDX file, as torchvision's MNIST reads it: 0x0803 images, 0x0801 labels."""
    magic = 0x00000800 | array.ndim
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def fake_mnist(root: Path, folder: str, n_train: int = 30, n_test: int = 10) -> dict[str, np.ndarray]:
    """Tiny MNIST-format files in root/folder/raw; train image i carries its index in pixel (0, 0)."""
    rng = np.random.default_rng(1)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    data = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    data["train_x"][:, 0, 0] = np.arange(n_train)
    write_idx(raw / "train-images-idx3-ubyte", data["train_x"])
    write_idx(raw / "train-labels-idx1-ubyte", data["train_y"])
    write_idx(raw / "t10k-images-idx3-ubyte", data["test_x"])
    write_idx(raw / "t10k-labels-idx1-ubyte", data["test_y"])
    return data


def fake_cifar(root: Path, hundred: bool) -> dict[str, np.ndarray]:
    """Tiny CIFAR pickles laid out as torchvision 0.29's cifar.py reads them (rows: 1024 R, 1024 G, 1024 B)."""
    rng = np.random.default_rng(2)
    classes = 100 if hundred else 10
    label_key = "fine_labels" if hundred else "labels"
    train_x = rng.integers(0, 256, (20, 3 * 32 * 32), dtype=np.uint8)
    train_x[:, 0] = np.arange(20)
    train_y = rng.integers(0, classes, 20)
    test_x = rng.integers(0, 256, (6, 3 * 32 * 32), dtype=np.uint8)
    test_y = rng.integers(0, classes, 6)

    def dump(path: Path, obj: dict) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f)

    if hundred:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        dump(folder / "train", {"data": train_x, label_key: train_y.tolist()})
        dump(folder / "test", {"data": test_x, label_key: test_y.tolist()})
        dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(classes)]})
    else:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        for b in range(5):  # data_batch_1..5, four images each
            rows = slice(4 * b, 4 * b + 4)
            dump(folder / f"data_batch_{b + 1}", {"data": train_x[rows], label_key: train_y[rows].tolist()})
        dump(folder / "test_batch", {"data": test_x, label_key: test_y.tolist()})
        dump(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(classes)]})
    return {
        "train_x": train_x.reshape(-1, 3, 32, 32),
        "train_y": train_y,
        "test_x": test_x.reshape(-1, 3, 32, 32),
        "test_y": test_y,
    }


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's CIFAR classes compare every file's md5 with the real archive's; our fake files cannot
    match, so the check is replaced by a plain "does the file exist" (it is used for data and meta files)."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every download path raises as it would without a network, so no test can touch the internet."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist
    import torchvision.datasets.utils as utils

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network disabled in tests")

    for module in (mnist, cifar, utils):
        monkeypatch.setattr(module, "download_and_extract_archive", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def random_mask(model, keep: float = 0.5, seed: int = 0):
    """A seeded random mask over the model's prunable layers, keeping about `keep` of each."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < keep for n, p in model.named_parameters()
            if n in model.prunable_layers()}


def tiny_splits(n_train: int = 120, n_eval: int = 40, shape: tuple[int, int, int] = (1, 28, 28), classes: int = 10,
                augment: bool = False):
    """A small random dataset (already normalised tensors) for exercising training mechanics quickly."""
    import torch

    from lth.datasets import Splits

    g = torch.Generator().manual_seed(123)
    make = lambda n: (torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g))  # noqa: E731
    (tx, ty), (vx, vy), (sx, sy) = make(n_train), make(n_eval), make(n_eval)
    return Splits("tiny", tx, ty, vx, vy, sx, sy, classes, augment)


class RunFiles:
    """Test shorthand for a run's files by trial and round number (lth.runs.layout.Layout spells rNN)."""

    def __init__(self, root):
        from lth.runs.layout import Layout

        self.layout = Layout(Path(root))
        self.root = self.layout.root

    def _file(self, artifact: str, trial: int, r: int) -> Path:
        return self.layout.trial_file(self.layout.round_dir(f"r{r:02d}", artifact), trial)

    def mask(self, trial: int, r: int) -> Path:
        return self._file("mask", trial, r)

    def start(self, trial: int, r: int) -> Path:
        return self._file("start", trial, r)

    def final(self, trial: int, r: int) -> Path:
        return self._file("final", trial, r)

    def init(self, trial: int) -> Path:
        return self.layout.trial_file(self.layout.theta0, trial)

    def rewind(self, trial: int) -> Path:
        return self.layout.trial_file(self.layout.rewind_point, trial)

    def round_metrics(self, r: int) -> Path:
        return self.layout.round_metrics(f"r{r:02d}")

    def checkpoint(self, r: int) -> Path:
        return self.layout.checkpoint(f"r{r:02d}")


@pytest.fixture(scope="session")
def tiny_repro(tmp_path_factory) -> Path:
    """The tiny DVC project (test_pipeline.tiny_project: 2 rounds, 3 trials) after its first `dvc repro`, made once per
    test session and shared by the xdist workers (a lock: the first worker makes it, the others wait for it);
    `repro_copy` gives each test its own copy to change. Its folder holds `first-repro.txt`, DVC's output."""
    from test_pipeline import sh, tiny_project

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's folder, above each worker's own
    made = shared / "tiny-repro"
    with FileLock(str(shared / "tiny-repro.lock")):
        if not (made / "done").is_file():
            root = tiny_project(made / "project", trials=3)  # the default's trials, batched
            (made / "first-repro.txt").write_text(sh(root, "dvc", "repro"))
            sh(root, "git", "add", "-A")
            sh(root, "git", "commit", "-qm", "baseline results")
            (made / "done").write_text("")
    return made


def repro_copy(tiny_repro: Path, where: Path) -> Path:
    """A copy of the reproduced tiny project (git history, DVC cache and outputs) at `where`, to change freely."""
    import shutil

    shutil.copytree(tiny_repro / "project", where, symlinks=True)
    return where


def pytest_configure(config) -> None:
    """Under xdist (`-n 2`), one compute thread per process: each worker and each stage process it starts would
    otherwise run an OpenMP team as large as the machine, and two or three such teams spinning on two cores
    made the suite 1.7x slower (8 min 35 s against 4 min 57 s). Set in the controller, before the workers
    start, so they and their subprocesses inherit it; an OMP_NUM_THREADS of your own is kept. Results do not
    depend on it (the golden test passes with either)."""
    workers = getattr(config.option, "numprocesses", None)
    if workers not in (None, 0, 1) and not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(items: list) -> None:
    """Longest first, so two xdist workers end together: the test that makes `tiny_repro` leads (the other
    worker meanwhile runs the rest), then the tests marked heavy; the other `tiny_repro` users come half-way
    through the rest, when the shared project is ready (it takes about 45 s), so no worker waits for it."""
    repro = [item for item in items if "tiny_repro" in getattr(item, "fixturenames", ())]
    heavy = [item for item in items if item.get_closest_marker("heavy") and item not in repro]
    rest = [item for item in items if item not in repro and item not in heavy]
    half = len(rest) // 2
    items[:] = repro[:1] + heavy + rest[:half] + repro[1:] + rest[half:]
