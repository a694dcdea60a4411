"""Sound as images: a WAV file read with the standard library, and a spoken word as a 28 x 28 log-mel spectrogram.

The spectrogram has the shape of an MNIST digit, (1, 28, 28), so a ticket found on MNIST applies as is: rows
are time (28 frames over one second), columns frequency (28 mel bands from 0 Hz to 4 kHz). Everything is in
hertz and seconds, never in samples, so a clip recorded at 8, 16 or 22.05 kHz gives nearly the same image:
bands stop at 4 kHz (what an 8 kHz recording holds) and frames are a fixed fraction of a second. Pure torch:
no torchaudio or librosa to install, and bit-identical results on the CPU.
"""

from __future__ import annotations

import wave
from pathlib import Path

import torch
from torch import Tensor

from lth.core.errors import LthError, one_line

FRAMES = 28
"""Spectrogram rows: frames in the one-second window."""

BANDS = 28
"""Spectrogram columns: triangular mel bands."""

WINDOW_SECONDS = 1.0
"""The speech is centred in (or cropped to) this window: a spoken digit lasts well under a second."""

MAX_HZ = 4000.0
"""Top of the highest band: the Nyquist frequency of 8 kHz recordings, so every sample rate sees the same bands."""

SILENCE_RATIO = 0.01
"""A 10 ms stretch is silence when its RMS is below this fraction of the loudest stretch's (-40 dB)."""

LOG_EPS = 1e-6
"""Added to the band power before the log: a floor at -60 dB of a full-scale tone, so digital silence (the zero
padding) stays finite and does not dwarf the speech."""

_WIDTHS = {2: "<i2", 4: "<i4"}


def read_wav(path: str | Path) -> tuple[Tensor, int]:
    """A PCM WAV file (8-, 16-, 24- or 32-bit; channels averaged) as float32 mono samples in [-1, 1] and its
    sample rate. An empty, truncated or non-PCM file is an LthError naming it."""
    import numpy as np  # lazy: only the sound datasets read WAVs

    path = Path(path)
    try:
        with wave.open(str(path), "rb") as handle:
            channels, width, rate = handle.getnchannels(), handle.getsampwidth(), handle.getframerate()
            frames = handle.getnframes()
            data = handle.readframes(frames)
    except FileNotFoundError:
        raise LthError(f"sound file {path} does not exist") from None
    except (wave.Error, EOFError, OSError, ValueError) as exc:  # not RIFF/WAVE, empty, an unknown format
        raise LthError(f"cannot read sound file {path}: not a PCM WAV file ({one_line(exc)})") from None
    if width not in (1, 2, 3, 4):
        raise LthError(f"sound file {path}: {8 * width}-bit samples; expected 8-, 16-, 24- or 32-bit PCM")
    if channels < 1 or rate < 1:
        raise LthError(f"sound file {path}: {channels} channel(s) at {rate} Hz; not a valid WAV header")
    expected = frames * channels * width
    if len(data) < expected:
        raise LthError(f"sound file {path} is truncated: its header promises {frames} frames, it holds "
                       f"{len(data) // (channels * width)}")
    if frames == 0:
        raise LthError(f"sound file {path} holds no samples")
    raw = np.frombuffer(data[:expected], dtype=np.uint8)
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        samples = (raw.astype(np.float64) - 128.0) / 128.0
    elif width == 3:  # 24-bit: sign-extend three little-endian bytes
        b = raw.reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        samples = np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)
    else:
        samples = np.frombuffer(raw.tobytes(), dtype=_WIDTHS[width]).astype(np.float64) / float(1 << (8 * width - 1))
    mono = samples.reshape(frames, channels).mean(axis=1)
    return torch.from_numpy(mono).clamp_(-1.0, 1.0).to(torch.float32), rate


def hz_to_mel(hz: Tensor) -> Tensor:
    """The HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: Tensor) -> Tensor:
    return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)


def band_edges(sample_rate: int) -> Tensor:
    """The BANDS + 2 corner frequencies (Hz, float64) of the triangular bands, equally spaced in mel from 0 Hz to
    min(MAX_HZ, sample_rate / 2): band k rises from edge k to its centre, edge k + 1, and falls to edge k + 2."""
    top = min(MAX_HZ, sample_rate / 2.0)
    mels = torch.linspace(0.0, float(hz_to_mel(torch.tensor(top, dtype=torch.float64))), BANDS + 2,
                          dtype=torch.float64)
    return mel_to_hz(mels)


def mel_filterbank(sample_rate: int, n_fft: int) -> Tensor:
    """(n_fft // 2 + 1, BANDS) float64 weights: each band a triangle over the FFT bins' frequencies, peak 1."""
    edges = band_edges(sample_rate)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    low, centre, high = edges[:-2], edges[1:-1], edges[2:]
    rising = (freqs[:, None] - low) / (centre - low)
    falling = (high - freqs[:, None]) / (high - centre)
    return torch.minimum(rising, falling).clamp_min(0.0)


def frame_sizes(sample_rate: int) -> tuple[int, int]:
    """(hop, window) in samples: 28 frames of 2 hops each, overlapping by half, fill one second at any rate."""
    hop = int(sample_rate * WINDOW_SECONDS) // (FRAMES + 1)
    return hop, 2 * hop


def trim_silence(signal: Tensor, sample_rate: int) -> Tensor:
    """`signal` without its leading and trailing silence (10 ms stretches below SILENCE_RATIO of the loudest
    one's RMS): the word, wherever it was in the recording. A silent clip comes back as it is."""
    step = max(1, sample_rate // 100)
    if signal.numel() < step:
        return signal
    usable = signal[: signal.numel() // step * step].to(torch.float64)
    rms = usable.view(-1, step).square().mean(1).sqrt()
    peak = float(rms.max())
    if peak == 0.0:
        return signal
    loud = (rms >= SILENCE_RATIO * peak).nonzero().flatten()
    start, stop = int(loud[0]) * step, min(signal.numel(), (int(loud[-1]) + 1) * step)
    return signal[start:stop]


def fit_window(signal: Tensor, length: int) -> Tensor:
    """`signal` centred in `length` samples: zero-padded on both sides, or its middle cut out when longer."""
    n = signal.numel()
    if n >= length:
        start = (n - length) // 2
        return signal[start:start + length]
    before = (length - n) // 2
    return torch.nn.functional.pad(signal, (before, length - n - before))


def log_mel(signal: Tensor, sample_rate: int) -> Tensor:
    """A (1, 28, 28) float32 log-mel spectrogram of a spoken word: rows time, columns mel bands.

    The word (silence trimmed, DC removed, peak scaled to 1: the recording's gain says nothing about the word) is
    centred in one second; Hann-windowed frames of 2/29 s, hop 1/29 s, give 28 rows; the power spectrum is scaled
    by the window's sum squared (a tone's peak then has the same height at every sample rate), summed in 28
    triangular HTK-mel bands up to 4 kHz, and logged (+ LOG_EPS). Computed in float64, returned as float32.
    """
    if signal.dim() != 1 or signal.numel() == 0:
        raise LthError(f"log_mel: expected a non-empty 1-D signal, got shape {tuple(signal.shape)}")
    if not isinstance(sample_rate, int) or sample_rate < 2 * (FRAMES + 1):
        raise LthError(f"log_mel: sample rate {sample_rate!r} Hz is too low (or not an integer)")
    x = trim_silence(signal.detach().cpu().to(torch.float64), sample_rate)
    x = x - x.mean()
    peak = float(x.abs().max())
    if peak > 0.0:
        x = x / peak
    x = fit_window(x, int(sample_rate * WINDOW_SECONDS))
    hop, window_length = frame_sizes(sample_rate)
    window = torch.hann_window(window_length, periodic=True, dtype=torch.float64)
    spectrum = torch.stft(x, n_fft=window_length, hop_length=hop, win_length=window_length, window=window,
                          center=False, return_complex=True)  # (bins, frames)
    power = spectrum.abs().square() / float(window.sum()) ** 2
    mel = power[:, :FRAMES].T @ mel_filterbank(sample_rate, window_length)  # (frames, bands)
    return torch.log(mel + LOG_EPS).to(torch.float32).unsqueeze(0)


def band_centres(sample_rate: int) -> Tensor:
    """The centre frequency (Hz) of each mel band, for reading a spectrogram's columns."""
    return band_edges(sample_rate)[1:-1]

