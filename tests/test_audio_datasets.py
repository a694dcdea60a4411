"""Tests for the sound datasets: log-mel spectrograms, WAV reading, speech-digits (FSDD) on a small tree of generated
WAVs (no download), tts-digits with a stand-in synthesiser, and the real eSpeak NG when it is installed."""

from __future__ import annotations

import math
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from lth.core.errors import LthError
from lth.datasets import DATASETS, load_dataset
from lth.datasets import audio, speech_digits, tts_digits
from lth.datasets.arrays import standardized
from lth.datasets.audio import band_centres, log_mel, read_wav

from conftest import run_cli


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (amplitude * torch.sin(2 * math.pi * frequency * t)).to(torch.float32)


def write_wav(path: Path, channels: np.ndarray, rate: int, width: int = 2) -> None:
    """float samples in [-1, 1], shape (frames, channels), as a PCM WAV of `width` bytes per sample."""
    channels = np.atleast_2d(channels.T).T
    if width == 1:
        data = np.round(channels * 127 + 128).astype(np.uint8)
    else:
        data = np.round(channels * (2 ** (8 * width - 1) - 1)).astype({2: "<i2", 4: "<i4"}[width])
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels.shape[1])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(data.tobytes())


# ----------------------------------------------------------------------------------------------- log_mel


def test_log_mel_shape_dtype_and_determinism() -> None:
    g = torch.Generator().manual_seed(0)
    signal = tone(440, 0.6, 16000) + 0.05 * torch.randn(9600, generator=g)
    spec = log_mel(signal, 16000)
    assert spec.shape == (1, 28, 28) and spec.dtype == torch.float32 and bool(torch.isfinite(spec).all())
    assert torch.equal(spec, log_mel(signal.clone(), 16000))
    # silence is finite (the eps floor), and a too-short or 2-D signal is an error, not a crash
    assert bool(torch.isfinite(log_mel(torch.zeros(8000), 8000)).all())
    with pytest.raises(LthError, match="1-D"):
        log_mel(torch.zeros(2, 100), 8000)


@pytest.mark.parametrize("rate", [16000, 22050])
def test_same_sound_at_other_sample_rates_gives_a_close_spectrogram(rate: int) -> None:
    """Two tones, 0.5 s: the same content at 8 kHz and at `rate` give nearly the same image."""
    def sound(r: int) -> torch.Tensor:
        return tone(500, 0.5, r) + tone(1800, 0.5, r, amplitude=0.25)

    low, high = log_mel(sound(8000), 8000), log_mel(sound(rate), rate)
    assert float((low - high).abs().mean()) < 0.1
    steady = slice(9, 19)  # the sound spans about frames 7..21; away from its edges they agree closely
    assert float((low[0, steady] - high[0, steady]).abs().max()) < 0.5
    assert torch.equal(low[0, steady].argmax(1), high[0, steady].argmax(1))


@pytest.mark.parametrize("band", [3, 12, 25])
def test_a_pure_tone_lands_in_its_mel_band(band: int) -> None:
    frequency = float(band_centres(8000)[band])
    spec = log_mel(tone(frequency, 0.5, 8000), 8000)[0]
    assert int(spec[14].argmax()) == band
    assert float(spec[14, band]) > float(spec[0, band]) + 5  # sound in the middle, silence at the edges


def test_silence_is_trimmed_and_the_word_centred() -> None:
    word = tone(700, 0.3, 8000)
    padded = torch.cat([torch.zeros(4000), word, torch.zeros(800)])
    torch.testing.assert_close(log_mel(padded, 8000), log_mel(word, 8000), atol=1e-3, rtol=0)
    long = tone(700, 1.6, 8000)  # longer than the window: its middle second
    assert bool(torch.isfinite(log_mel(long, 8000)).all())


# ----------------------------------------------------------------------------------------------- read_wav


def test_read_wav_16_bit_stereo_is_averaged(tmp_path: Path) -> None:
    left = np.linspace(-0.5, 0.5, 1000)
    right = np.full(1000, 0.25)
    write_wav(tmp_path / "s.wav", np.stack([left, right], 1), 16000)
    signal, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000 and signal.dtype == torch.float32 and signal.shape == (1000,)
    np.testing.assert_allclose(signal.numpy(), (left + right) / 2, atol=1e-4)


@pytest.mark.parametrize(("width", "atol"), [(1, 2e-2), (4, 1e-6)])
def test_read_wav_8_and_32_bit(tmp_path: Path, width: int, atol: float) -> None:
    samples = np.sin(np.linspace(0, 20, 800)) * 0.9
    write_wav(tmp_path / "m.wav", samples[:, None], 8000, width=width)
    signal, rate = read_wav(tmp_path / "m.wav")
    assert rate == 8000 and float(signal.abs().max()) <= 1.0
    np.testing.assert_allclose(signal.numpy(), samples, atol=atol)


@pytest.mark.parametrize("kind", ["empty", "not-wav", "truncated", "no-samples", "missing"])
def test_bad_wav_is_one_line_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-wav":
        path.write_bytes(b"ID3\x03 this is an mp3, honestly" * 10)
    elif kind == "truncated":
        write_wav(path, np.zeros((4000, 1)), 8000)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "no-samples":
        write_wav(path, np.zeros((0, 1)), 8000)
    with pytest.raises(LthError) as info:
        read_wav(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------------- speech-digits


DIGITS, SPEAKERS, INDICES = (0, 1, 2), ("jackson", "theo"), (0, 4, 7, 12, 30)
# per digit and speaker: 2 test (0-4), 1 validation (5-9), 2 train (10+)


def fake_fsdd(root: Path) -> Path:
    """A tiny FSDD tree: every digit a tone of its own pitch, every speaker a little louder or softer."""
    where = root / "free-spoken-digit-dataset" / "recordings"
    for digit in DIGITS:
        for s, speaker in enumerate(SPEAKERS):
            for index in INDICES:
                sound = tone(300 + 500 * digit, 0.25 + 0.01 * index, 8000, amplitude=0.3 + 0.2 * s)
                write_wav(where / f"{digit}_{speaker}_{index}.wav", sound.numpy()[:, None], 8000)
    return where


def test_speech_digits_split_sizes_and_labels(tmp_path: Path) -> None:
    fake_fsdd(tmp_path)
    splits = load_dataset("speech-digits", tmp_path)
    per_cell = len(DIGITS) * len(SPEAKERS)
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (2 * per_cell, per_cell, 2 * per_cell)
    assert splits.name == "speech-digits" and splits.task == "classification" and splits.num_outputs == 10
    assert splits.input_shape == (1, 28, 28) == DATASETS["speech-digits"].input_shape
    for split, count in (("train", 4), ("val", 2), ("test", 4)):
        y = getattr(splits, f"{split}_y")
        assert y.dtype == torch.int64 and y.bincount(minlength=3)[:3].tolist() == [count] * 3
    assert abs(float(splits.train_x.mean())) < 1e-4 and abs(float(splits.train_x.std(unbiased=False)) - 1) < 1e-4
    assert (tmp_path / "free-spoken-digit-dataset" / speech_digits.CACHE_FILE).is_file()
    # the images are those of the recipe: the test clips are the index 0-4 recordings, in file-name order
    files = sorted((tmp_path / "free-spoken-digit-dataset" / "recordings").glob("*.wav"))
    raw = {f.name: log_mel(*read_wav(f)) for f in files}
    split = {f.name: speech_digits.split_of(int(f.stem.split("_")[2])) for f in files}
    expected = standardized([torch.stack([raw[n] for n in sorted(raw) if split[n] == s])
                             for s in ("train", "val", "test")])
    assert torch.equal(expected[2], splits.test_x) and torch.equal(expected[0], splits.train_x)


def test_speech_digits_cache_is_used_and_rebuilt_when_files_change(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    where = fake_fsdd(tmp_path)
    first = load_dataset("speech-digits", tmp_path)

    def no_reading(path: Path) -> None:
        raise AssertionError(f"read {path} although the cache matches")

    monkeypatch.setattr(audio, "read_wav", no_reading)
    again = load_dataset("speech-digits", tmp_path)
    assert torch.equal(again.train_x, first.train_x) and torch.equal(again.test_y, first.test_y)
    monkeypatch.undo()
    write_wav(where / "2_theo_45.wav", tone(1300, 0.3, 8000).numpy()[:, None], 8000)  # another recording
    grown = load_dataset("speech-digits", tmp_path)
    assert len(grown.train_y) == len(first.train_y) + 1
    (where.parent / speech_digits.CACHE_FILE).write_bytes(b"garbage")  # a damaged cache is rebuilt
    assert torch.equal(load_dataset("speech-digits", tmp_path).train_x, grown.train_x)


def test_speech_digits_missing_and_download_failing(tmp_path: Path, offline: None) -> None:
    with pytest.raises(LthError) as info:
        load_dataset("speech-digits", tmp_path / "data")
    message = str(info.value)
    assert str(tmp_path / "data" / "free-spoken-digit-dataset" / "recordings") in message
    assert "could not be downloaded" in message and "\n" not in message
    assert [p.name for p in (tmp_path / "data").iterdir()] == []  # no half-downloaded leftovers


def test_speech_digits_download_moves_the_recordings_into_place(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as utils

    calls = []

    def fake_download(url: str, download_root: str, filename: str, remove_finished: bool) -> None:
        calls.append(url)
        fake_fsdd(Path(download_root) / "unpacked")
        (Path(download_root) / "unpacked" / "free-spoken-digit-dataset").rename(
            Path(download_root) / speech_digits.ARCHIVE_FOLDER)

    monkeypatch.setattr(utils, "download_and_extract_archive", fake_download)
    splits = load_dataset("speech-digits", tmp_path)
    assert calls == [speech_digits.URL] and len(splits.val_y) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free-spoken-digit-dataset"]


def test_speech_digits_unexpected_file_name(tmp_path: Path) -> None:
    where = fake_fsdd(tmp_path)
    write_wav(where / "seven.wav", np.zeros((100, 1)), 8000)
    with pytest.raises(LthError, match="seven.wav"):
        load_dataset("speech-digits", tmp_path)


# ----------------------------------------------------------------------------------------------- tts-digits


class StandIn:
    """A synthesiser without eSpeak: a tone whose pitch says the digit and (a little) the voice; counts its calls."""

    version = "stand-in 1"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, int]] = []

    def __call__(self, word: str, voice: str, pitch: int, rate: int) -> tuple[np.ndarray, int]:
        self.calls.append((word, voice, pitch, rate))
        digit = tts_digits.WORDS.index(word)
        frequency = 250 + 300 * digit + 3 * tts_digits.VOICES.index(voice) + pitch
        seconds = 60.0 / rate
        return (tone(frequency, seconds, 8000).numpy() * 32767).astype(np.int16), 8000


@pytest.fixture
def small_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """One pitch and one rate: 300 clips, so a build takes a fraction of a second."""
    monkeypatch.setattr(tts_digits, "PITCHES", (50,))
    monkeypatch.setattr(tts_digits, "RATES", (175,))


def test_tts_digits_built_with_a_stand_in(tmp_path: Path, small_recipe: None) -> None:
    stand_in = StandIn()
    splits = tts_digits.load_tts_digits(tmp_path, stand_in)
    assert len(stand_in.calls) == 300 == len(set(stand_in.calls))
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (200, 50, 50)
    for split, y in (("train", splits.train_y), ("val", splits.val_y), ("test", splits.test_y)):
        assert y.dtype == torch.int64 and y.bincount().tolist() == [len(y) // 10] * 10, split
    path = tmp_path / "tts-digits" / "tts-digits.pt"
    meta = torch.load(path, weights_only=True)["meta"]
    voices = meta["split"]
    assert [len(voices[s]) for s in ("train", "val", "test")] == [20, 5, 5]
    assert sorted(voices["train"] + voices["val"] + voices["test"]) == sorted(tts_digits.VOICES)
    assert meta["synthesizer"] == "stand-in 1" and meta["voices"] == list(tts_digits.VOICES)
    # each split holds exactly the clips of its own voices, standardised with the training split's statistics
    x, y, clip_voices = tts_digits.synthesize_all(StandIn())
    rows = {s: [i for i, v in enumerate(clip_voices) if v in voices[s]] for s in ("train", "val", "test")}
    expected = standardized([x[rows[s]] for s in ("train", "val", "test")])
    for s, want in zip(("train", "val", "test"), expected):
        assert torch.equal(getattr(splits, f"{s}_x"), want) and torch.equal(getattr(splits, f"{s}_y"), y[rows[s]])


def test_tts_digits_reloaded_without_synthesising_and_deterministic(tmp_path: Path, small_recipe: None,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    first = tts_digits.load_tts_digits(tmp_path / "a", StandIn())

    def refuses(*args: object) -> None:
        raise AssertionError("synthesised although the file exists")

    again = tts_digits.load_tts_digits(tmp_path / "a", refuses)
    other = tts_digits.load_tts_digits(tmp_path / "b", StandIn())
    for key in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(again, key), getattr(first, key)), key
        assert torch.equal(getattr(other, key), getattr(first, key)), key
    # a file of another recipe is rebuilt
    stand_in = StandIn()
    monkeypatch.setattr(tts_digits, "RATES", (170,))
    tts_digits.load_tts_digits(tmp_path / "a", stand_in)
    assert len(stand_in.calls) == 300


def test_tts_digits_through_load_dataset_and_the_cli(tmp_path: Path, small_recipe: None,
                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from lth.datasets import espeak

    monkeypatch.setattr(espeak, "Espeak", StandIn)
    code, out, err = run_cli(monkeypatch, capsys, "datasets", "build", "tts-digits", str(tmp_path))
    assert code == 0, err
    assert str(tmp_path / "tts-digits" / "tts-digits.pt") in out and "train 200, val 50, test 50" in out
    splits = load_dataset("tts-digits", tmp_path)
    assert splits.num_outputs == 10 and splits.input_shape == (1, 28, 28)


def test_missing_espeak_is_one_line_with_the_install_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    from lth.datasets import espeak

    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # `import espeakng_loader` raises ImportError
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(LthError) as info:
        load_dataset("tts-digits", tmp_path)
    message = str(info.value)
    assert espeak.INSTALL_HINT in message and "pip install espeakng-loader" in message and "\n" not in message
    assert not (tmp_path / "tts-digits" / "tts-digits.pt").exists()


# ----------------------------------------------------------------------------------------------- real eSpeak NG


@pytest.fixture(scope="module")
def espeak_ng():
    pytest.importorskip("espeakng_loader")
    from lth.datasets.espeak import Espeak

    return Espeak()


def test_espeak_speaks_seven_the_same_way_every_time(espeak_ng) -> None:
    samples, rate = espeak_ng("seven", "en", 50, 175)
    assert rate == 22050 and samples.dtype == np.int16
    assert len(samples) > 0.2 * rate and int(np.abs(samples).max()) > 3000  # half a second of loud speech
    espeak_ng("three", "en+m3", 70, 210)  # whatever was spoken before does not matter
    again, _ = espeak_ng("seven", "en", 50, 175)
    assert np.array_equal(samples, again)
    spec = tts_digits.clip_spectrogram(espeak_ng, "seven", "en", 50, 175)
    assert spec.shape == (1, 28, 28) and float(spec.max() - spec.min()) > 5


def test_espeak_breath_noise_is_seeded(espeak_ng) -> None:
    """eSpeak seeds its noise generator with the clock: a breathy voice a second later is still identical."""
    first, _ = espeak_ng("three", "en+f2", 50, 175)
    time.sleep(1.05)
    second, _ = espeak_ng("three", "en+f2", 50, 175)
    assert np.array_equal(first, second)


def test_voice_list_is_documented_and_sorted() -> None:
    assert tts_digits.VOICES[0] == "en" and list(tts_digits.VARIANTS) == sorted(tts_digits.VARIANTS)
    assert len(tts_digits.VOICES) == sum(tts_digits.VOICE_SPLIT) == 30 and tts_digits.SIZES == (1800, 450, 450)
    assert DATASETS["tts-digits"].train_size == tts_digits.SIZES[0]
    assert DATASETS["speech-digits"].train_size == speech_digits.SIZES[0]


def test_espeak_has_every_voice_and_names_a_missing_one(espeak_ng) -> None:
    for voice in tts_digits.VOICES:
        espeak_ng.check_voice(voice)
    with pytest.raises(LthError, match="'Nobody'"):
        espeak_ng.check_voice("en+Nobody")


def test_espeak_held_by_someone_else_cannot_be_reset(espeak_ng) -> None:
    """Another handle on the library keeps it loaded: its state would leak between clips, so that is an error."""
    import ctypes

    from lth.datasets.espeak import Espeak, _unload_function

    held = ctypes.CDLL(espeak_ng.library)
    try:
        with pytest.raises(LthError, match="stays loaded"):
            Espeak(espeak_ng.library, espeak_ng.data)
    finally:
        _unload_function()(held._handle)
    Espeak(espeak_ng.library, espeak_ng.data)


def test_tts_noise_is_seeded_per_clip_and_within_its_snr_range() -> None:
    clean = tone(440.0, 0.5, 22050)
    noisy = tts_digits.with_noise(clean, 7)
    assert torch.equal(noisy, tts_digits.with_noise(clean, 7))  # the same clip: the same noise
    assert not torch.equal(noisy, tts_digits.with_noise(clean, 8))
    for index in range(20):
        noise = tts_digits.with_noise(clean, index).double() - clean.double()
        snr = 10 * math.log10(clean.double().square().mean() / noise.square().mean())
        low, high = tts_digits.NOISE_SNR_DB
        assert low - 0.5 <= snr <= high + 0.5, (index, snr)
