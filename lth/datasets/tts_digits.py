"""tts-digits: the words "zero" .. "nine" spoken by eSpeak NG (lth.datasets.espeak), the offline sound dataset:
2,700 clips as 28 x 28 log-mel spectrograms (lth.datasets.audio), the shape of an MNIST digit.

Voices: eSpeak's plain English voice 'en' and 29 of its variants (VARIANTS, files of espeak-ng-data/voices/!v:
the numbered female and male voices f1-f5 and m1-m8, and 16 named ones), each speaking every word at 3 pitches
and 3 rates: 30 voices x 10 words x 9 = 2,700 clips, each with white noise at a seeded signal-to-noise ratio
between -10 and 10 dB (clean, the task is too easy to tell tickets apart). The split is by voice, with one seeded permutation of the
30 voices: 20 for training, 5 for validation and 5 for testing, so validation and test measure how a network
hears voices it never heard (1,800 / 450 / 450 clips). Inputs are standardised with the training split's
statistics; labels are int64 digits.

Built once into DATASET_DIR/tts-digits/tts-digits.pt (atomically, about 10 MB; with the recipe, the eSpeak
version, the voices and the split), read from there afterwards, rebuilt when that file is missing, unreadable
or made by another recipe. A clip depends only on (word, voice, pitch, rate) (see lth.datasets.espeak), so two
builds with the same eSpeak version are bit-identical. The synthesiser is a parameter: tests use a stand-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor

from lth.core.errors import LthError
from lth.datasets.splits import SPLIT_NAMES, SPLIT_SEED, Splits, split_indices

NAME = "tts-digits"
FOLDER = "tts-digits"
FILE = "tts-digits.pt"
RECIPE = "tts-digits-2"
"""Version of the recipe (voices, settings, spectrogram): change it when anything here changes, so files rebuild."""

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VARIANTS = ("Alex", "Alicia", "Andrea", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Michael", "Mike", "Reed",
            "adam", "anika", "aunty", "benjamin", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6",
            "m7", "m8")
"""eSpeak voice variants (files of espeak-ng-data/voices/!v) added to 'en', sorted; a missing one is an error."""

VOICES = ("en", *(f"en+{variant}" for variant in VARIANTS))
PITCHES = (30, 50, 70)
"""eSpeak base pitch, 0..100 (50: the voice's own)."""

RATES = (140, 175, 210)
"""Speaking rate, words per minute (175: eSpeak's default)."""

NOISE_SNR_DB = (-10.0, 10.0)
"""Each clip gets white noise at a signal-to-noise ratio drawn (seeded per clip) from this range, in dB: clean
synthetic speech is too easy (99% on unheard voices), noisy speech is what a recogniser meets."""

NOISE_SEED = 20261207

VOICE_SPLIT = (20, 5, 5)
"""Voices for training, validation and test."""

SIZES = tuple(n * len(WORDS) * len(PITCHES) * len(RATES) for n in VOICE_SPLIT)
"""Train / validation / test clips: (1800, 450, 450)."""

Synthesizer = Callable[[str, str, int, int], tuple[Any, int]]
"""(word, voice, pitch, rate) -> (int16 samples as a numpy array or tensor, or float ones in [-1, 1]; sample rate)."""


def dataset_file(root: Path) -> Path:
    return Path(root) / FOLDER / FILE


def voice_split(seed: int = SPLIT_SEED) -> dict[str, tuple[str, ...]]:
    """The voices of each split: one seeded permutation of VOICES cut into VOICE_SPLIT."""
    parts = split_indices(len(VOICES), VOICE_SPLIT, seed)
    return {split: tuple(VOICES[i] for i in part.tolist()) for split, part in zip(SPLIT_NAMES, parts)}


def recipe() -> dict[str, Any]:
    """What the file is made of: a file whose recipe differs is rebuilt."""
    return {"recipe": RECIPE, "words": list(WORDS), "voices": list(VOICES), "pitches": list(PITCHES),
            "rates": list(RATES), "noise_snr_db": list(NOISE_SNR_DB), "noise_seed": NOISE_SEED, "split": {split: list(voices) for split, voices in voice_split().items()}}


def with_noise(signal: Tensor, index: int) -> Tensor:
    """`signal` plus white noise at the clip's seeded signal-to-noise ratio (NOISE_SNR_DB), float64 arithmetic;
    the same clip index gives the same noise on every machine."""
    generator = torch.Generator().manual_seed(NOISE_SEED + index)
    low, high = NOISE_SNR_DB
    snr = low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))
    noise = torch.randn(signal.shape, generator=generator, dtype=torch.float64)
    clean = signal.to(torch.float64)
    power = clean.square().mean().clamp_min(1e-12)
    return (clean + noise * (power / 10 ** (snr / 10)).sqrt()).to(torch.float32)


def clip_spectrogram(synthesize: Synthesizer, word: str, voice: str, pitch: int, rate: int,
                     index: Optional[int] = None) -> Tensor:
    """The (1, 28, 28) log-mel spectrogram of one synthesised clip (with its noise when `index` is given)."""
    from lth.datasets.audio import log_mel

    samples, sample_rate = synthesize(word, voice, pitch, rate)
    signal = torch.as_tensor(samples)
    where = f"the synthesiser's clip of '{word}' (voice {voice}, pitch {pitch}, rate {rate})"
    if signal.dim() != 1 or signal.numel() == 0:
        raise LthError(f"{where} is empty or not 1-D (shape {tuple(signal.shape)})")
    if signal.dtype == torch.int16:
        signal = signal.to(torch.float32) / 32768.0
    elif not signal.is_floating_point():
        raise LthError(f"{where} has {signal.dtype} samples; expected int16 or float")
    if index is not None:
        signal = with_noise(signal, index)
    return log_mel(signal, int(sample_rate))


def synthesize_all(synthesize: Synthesizer) -> tuple[Tensor, Tensor, list[str]]:
    """Spectrograms (N, 1, 28, 28), digit labels and the voice of every clip, in a fixed order (voice, word,
    pitch, rate)."""
    check = getattr(synthesize, "check_voice", None)
    if check is not None:  # fail on a missing variant before minutes of synthesis
        for voice in VOICES:
            check(voice)
    x, y, voices = [], [], []
    for voice in VOICES:
        for digit, word in enumerate(WORDS):
            for pitch in PITCHES:
                for rate in RATES:
                    x.append(clip_spectrogram(synthesize, word, voice, pitch, rate, index=len(x)))
                    y.append(digit)
                    voices.append(voice)
    return torch.stack(x), torch.tensor(y, dtype=torch.int64), voices


def build_tts_digits(root: Path, synthesize: Optional[Synthesizer] = None) -> Path:
    """Synthesise every clip, split by voice, standardise, and write the dataset file (atomically); its path."""
    from lth.core import files
    from lth.datasets.arrays import standardized
    from lth.datasets.vision import prepare_root

    prepare_root(Path(root))
    if synthesize is None:
        from lth.datasets.espeak import Espeak

        synthesize = Espeak()
    x, y, voices = synthesize_all(synthesize)
    split = voice_split()
    rows = {name: torch.tensor([i for i, v in enumerate(voices) if v in split[name]], dtype=torch.int64)
            for name in SPLIT_NAMES}
    inputs = standardized([x[rows[name]] for name in SPLIT_NAMES])
    tensors = {}
    for name, inp in zip(SPLIT_NAMES, inputs):
        tensors[f"{name}_x"], tensors[f"{name}_y"] = inp, y[rows[name]]
    splits = Splits(name=NAME, num_outputs=len(WORDS), augment=False, **tensors)
    meta = {**recipe(), "synthesizer": str(getattr(synthesize, "version", type(synthesize).__name__))}
    path = dataset_file(root)
    files.save_torch(path, {"meta": meta, "splits": splits.state()})
    return path


def read_tts_digits(path: Path) -> Optional[tuple[Splits, dict[str, Any]]]:
    """The splits and meta data of a dataset file made by this recipe; None when it is missing, unreadable or
    made otherwise (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        meta = data["meta"]
        if {key: meta[key] for key in recipe()} != recipe():
            return None
        return Splits.from_state(data["splits"]), meta
    except Exception:  # noqa: BLE001 - a damaged or foreign file is rebuilt, never trusted
        return None


def load_tts_digits(root: Path, synthesize: Optional[Synthesizer] = None) -> Splits:
    """tts-digits from DATASET_DIR/tts-digits/tts-digits.pt, built there first when missing."""
    path = dataset_file(root)
    found = read_tts_digits(path)
    if found is None:
        build_tts_digits(root, synthesize)
        found = read_tts_digits(path)
        if found is None:
            raise LthError(f"dataset '{NAME}': {path} was written but cannot be read back")
    return found[0]
