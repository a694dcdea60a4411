"""speech-digits: the Free Spoken Digit Dataset (FSDD), 3,000 real recordings of the digits 0-9 (6 speakers x 10
digits x 50, 8 kHz WAV) as 28 x 28 log-mel spectrograms (lth.datasets.audio), so an MNIST LeNet ticket applies.

Read from DATASET_DIR/free-spoken-digit-dataset/recordings/{digit}_{speaker}_{index}.wav; when that folder is
missing, FSDD's v1.0.10 archive is downloaded from GitHub and only its recordings are moved into place. The
split follows FSDD's own convention: recordings 0-4 of every speaker and digit are the test set, 5-9 the
validation set, the rest (10-49) the training set: 2,400 / 300 / 300. The spectrograms are cached beside the
recordings (keyed by the recipe version and the recordings' names and sizes), so later loads skip the audio.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from lth.core.errors import LthError, one_line
from lth.datasets.splits import SPLIT_NAMES, Splits
from lth.datasets.vision import prepare_root

NAME = "speech-digits"
FOLDER = "free-spoken-digit-dataset"
"""Under DATASET_DIR: the recordings are in FOLDER/recordings, the spectrogram cache in FOLDER/CACHE_FILE."""

URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
ARCHIVE_FOLDER = "free-spoken-digit-dataset-1.0.10"
"""The folder the archive unpacks to."""

CACHE_FILE = "lth-spectrograms.pt"
RECIPE = "fsdd-logmel-1"
"""Version of the spectrogram recipe (lth.datasets.audio): change it when the recipe changes, so caches rebuild."""

SIZES = (2_400, 300, 300)
"""Train / validation / test clips of the full dataset."""

INDICES = {"train": "10 and up", "val": "5-9", "test": "0-4"}
"""Which recording indices make each split (`split_of`), for error messages."""

_FILE_NAME = re.compile(r"(\d)_([A-Za-z0-9-]+)_(\d+)\.wav")


def split_of(index: int) -> str:
    """FSDD's convention: recordings 0-4 (of each speaker and digit) test, 5-9 validation, the rest train."""
    return "test" if index < 5 else "val" if index < 10 else "train"


def recordings_dir(root: Path) -> Path:
    return Path(root) / FOLDER / "recordings"


def ensure_recordings(root: Path) -> Path:
    """The recordings folder under root, downloaded (and moved into place whole) when missing."""
    where = recordings_dir(root)
    if where.is_dir():
        return where
    prepare_root(Path(root))
    try:
        download(Path(root), where)
    except Exception as exc:  # offline, GitHub down, a bad archive: all mean the same to the user
        raise LthError(f"dataset '{NAME}': recordings not found in '{where}' and could not be downloaded "
                       f"({one_line(exc)})") from exc
    return where


def download(root: Path, where: Path) -> None:
    """Download and unpack FSDD into a temporary folder under root, then rename its recordings to `where`: an
    interrupted download never leaves a half-filled recordings folder."""
    from torchvision.datasets.utils import download_and_extract_archive  # lazy: importing torchvision is slow

    scratch = Path(tempfile.mkdtemp(prefix=".fsdd-download-", dir=root))
    try:
        download_and_extract_archive(URL, download_root=str(scratch), filename=f"{ARCHIVE_FOLDER}.tar.gz",
                                     remove_finished=True)
        unpacked = scratch / ARCHIVE_FOLDER / "recordings"
        if not unpacked.is_dir():
            raise FileNotFoundError(f"the archive has no {ARCHIVE_FOLDER}/recordings folder")
        where.parent.mkdir(parents=True, exist_ok=True)
        unpacked.rename(where)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def list_recordings(where: Path) -> list[tuple[Path, int, str, int]]:
    """(path, digit, speaker, index) of every recording, sorted by file name; a WAV named otherwise is an error."""
    found = []
    for path in sorted(where.glob("*.wav")):
        match = _FILE_NAME.fullmatch(path.name)
        if match is None:
            raise LthError(f"dataset '{NAME}': unexpected file {path}: FSDD recordings are named "
                           "DIGIT_SPEAKER_INDEX.wav")
        found.append((path, int(match[1]), match[2], int(match[3])))
    if not found:
        raise LthError(f"dataset '{NAME}': no recordings (*.wav) in '{where}'")
    return found


def spectrograms(recordings: list[tuple[Path, int, str, int]], cache: Path) -> tuple[Tensor, Tensor]:
    """(N, 1, 28, 28) float32 log-mel spectrograms and int64 digits of the recordings, from the cache when it was
    made by this recipe from these files; otherwise computed and cached (atomically; a dataset folder that cannot
    be written to only costs the cache)."""
    from lth.core import files
    from lth.datasets.audio import log_mel, read_wav

    key = {"recipe": RECIPE, "files": [f"{path.name}:{path.stat().st_size}" for path, *_ in recordings]}
    cached = _read_cache(cache)
    if cached is not None and cached.get("key") == key:
        return cached["x"], cached["y"]
    x = torch.stack([log_mel(*read_wav(path)) for path, *_ in recordings])
    y = torch.tensor([digit for _, digit, _, _ in recordings], dtype=torch.int64)
    try:
        files.save_torch(cache, {"key": key, "x": x, "y": y})
    except LthError:
        pass
    return x, y


def _read_cache(cache: Path) -> dict | None:
    """The cache's contents, or None when it is missing, unreadable or not in the expected form (then rebuilt)."""
    if not cache.is_file():
        return None
    try:
        data = torch.load(cache, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None
    if not (isinstance(data, dict) and isinstance(data.get("x"), Tensor) and isinstance(data.get("y"), Tensor)
            and data["x"].shape[1:] == (1, 28, 28) and data["x"].dtype == torch.float32
            and data["y"].shape == (data["x"].shape[0],)):
        return None
    return data


def load_speech_digits(root: Path) -> Splits:
    """FSDD as Splits: spectrograms standardised with the training split's statistics, int64 digit labels."""
    from lth.datasets.arrays import standardized

    where = ensure_recordings(Path(root))
    recordings = list_recordings(where)
    x, y = spectrograms(recordings, where.parent / CACHE_FILE)
    split = [split_of(index) for *_, index in recordings]
    parts = {}
    for name in SPLIT_NAMES:
        rows = torch.tensor([i for i, s in enumerate(split) if s == name], dtype=torch.int64)
        if rows.numel() == 0:
            raise LthError(f"dataset '{NAME}': no {name} recordings (index {INDICES[name]}) in '{where}'")
        parts[name] = (x[rows], y[rows])
    inputs = standardized([parts[name][0] for name in SPLIT_NAMES])
    tensors = {}
    for name, inp in zip(SPLIT_NAMES, inputs):
        tensors[f"{name}_x"], tensors[f"{name}_y"] = inp, parts[name][1]
    return Splits(name=NAME, num_outputs=10, augment=False, **tensors)
