"""eSpeak NG, the open-source speech synthesiser, through ctypes: a word spoken by a voice as 16-bit samples.

The library comes from the `espeakng-loader` wheel (library and voice data inside it), else from a system
install (`apt install espeak-ng`). Two things would make a clip differ from one synthesis to the next, and both
are undone here, so a clip depends only on (word, voice, pitch, rate) and the eSpeak version:
- eSpeak keeps state between utterances (its pitch flutter, gain control and wave phase run on from one word
  into the next), so the same word spoken twice in one process comes out different: each clip gets a freshly
  loaded library (unloaded with dlclose and loaded again, which resets every static variable);
- the breath noise of the breathy voices (f2, f3, Alicia, ...) comes from a random generator that eSpeak seeds
  with the clock (1.52) or libc's rand() (older versions): both are seeded with RANDOM_SEED before each clip.
Not thread-safe: one Espeak speaks at a time in a process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from pathlib import Path
from typing import Any, Optional

from lth.core.errors import LthError

INSTALL_HINT = "pip install espeakng-loader, or apt install espeak-ng"

AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: samples come to the callback, no audio device, no thread
INITIALIZE_DONT_EXIT = 0x8000  # without it a missing data folder makes eSpeak call exit(1)
POS_CHARACTER = 1
PARAMETER_RATE = 1  # words per minute, 80..450
PARAMETER_PITCH = 3  # 0..100, 50 normal

RANDOM_SEED = 1

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def find_espeak() -> tuple[str, Optional[str]]:
    """(library, voice-data folder or None for the library's own default): the espeakng-loader wheel's, else a
    system libespeak-ng; neither is one LthError saying how to install it."""
    try:
        import espeakng_loader
    except ImportError:
        pass
    else:
        return str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path())
    found = ctypes.util.find_library("espeak-ng")
    if found is None:
        raise LthError(f"the eSpeak NG speech synthesiser is not installed (tts-digits needs it): {INSTALL_HINT}")
    return found, None


def _seed_libc() -> None:
    try:
        ctypes.CDLL(None).srand(RANDOM_SEED)
    except (OSError, AttributeError, TypeError):  # no C library to reach this way (Windows): nothing to seed
        pass


def _unload_function() -> Any:
    import _ctypes

    return getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")


def _mapped_espeak() -> set[str]:
    """The libespeak-ng files mapped into this process (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return set()
    return {line.split()[-1] for line in text.splitlines() if "libespeak-ng" in line and "/" in line}


class Espeak:
    """A synthesiser for lth.datasets.tts_digits: `espeak(word, voice, pitch, rate)` -> (int16 numpy samples,
    sample rate). `voice` is 'en' or 'en+VARIANT', a variant being a file of the voice data's voices/!v folder."""

    def __init__(self, library: Optional[str] = None, data: Optional[str] = None) -> None:
        if library is None:
            library, data = find_espeak()
        self.library, self.data = library, data
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._collect)  # kept alive here: eSpeak calls it during every clip
        lib, self.sample_rate = self._open()
        try:
            self.version, data_dir = self._info(lib)
            ours = {path for path in _mapped_espeak() if self._is_ours(path)}
        finally:
            self._close(lib)
        if ours & _mapped_espeak():
            raise LthError(f"libespeak-ng ({library}) stays loaded after it is closed (another module of this "
                           "process holds it), so eSpeak's state cannot be reset between clips and they would not "
                           "be reproducible: build tts-digits in a fresh process (python -m lth datasets build "
                           "tts-digits DIR)")
        self.variants_dir = Path(data_dir) / "voices" / "!v"
        self.variants = frozenset(os.listdir(self.variants_dir)) if self.variants_dir.is_dir() else frozenset()

    def _is_ours(self, mapped: str) -> bool:
        """Whether a mapped file is this library: the same file, or for a bare name ('libespeak-ng.so.1', found on
        the system's search path) a file of that name."""
        if "/" in self.library:
            return os.path.realpath(mapped) == os.path.realpath(self.library)
        return Path(mapped).name.startswith(self.library)

    def _collect(self, wav: Any, count: int, events: Any) -> int:
        if wav and count > 0:
            self._chunks.append(ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short)))
        return 0  # 0: go on synthesising

    def _open(self) -> tuple[Any, int]:
        """The library, freshly loaded and initialised for synchronous synthesis; and its sample rate."""
        try:
            lib = ctypes.CDLL(self.library)
        except OSError as exc:
            raise LthError(f"cannot load the eSpeak NG library {self.library} ({exc}); {INSTALL_HINT}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        data = self.data.encode() if self.data is not None else None
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data, INITIALIZE_DONT_EXIT)
        if rate <= 0:
            self._close(lib)
            where = self.data or "its default voice-data folder"
            raise LthError(f"eSpeak NG ({self.library}) cannot start: no voice data in {where}; {INSTALL_HINT}")
        lib.espeak_SetSynthCallback(self._callback)
        if hasattr(lib, "espeak_ng_SetRandSeed"):  # eSpeak NG 1.52+: its own generator, seeded with the time
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_ng_SetRandSeed(RANDOM_SEED)
        _seed_libc()  # before 1.52: libc's rand()
        return lib, int(rate)

    def _close(self, lib: Any) -> None:
        lib.espeak_Terminate()
        handle = lib._handle
        del lib
        _unload_function()(handle)

    @staticmethod
    def _info(lib: Any) -> tuple[str, str]:
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        path = ctypes.c_char_p()
        version = lib.espeak_Info(ctypes.byref(path))
        return (version or b"unknown").decode(), (path.value or b"").decode()

    def check_voice(self, voice: str) -> None:
        """An LthError naming `voice` when its variant is not in the voice data (eSpeak would fall back silently)."""
        _, plus, variant = voice.partition("+")
        if plus and variant not in self.variants:
            raise LthError(f"eSpeak NG voice variant '{variant}' (of voice '{voice}') is not in {self.variants_dir}")

    def __call__(self, word: str, voice: str, pitch: int, rate: int) -> tuple[Any, int]:
        import numpy as np  # lazy, like every heavy import of lth.datasets

        self.check_voice(voice)
        lib, sample_rate = self._open()
        self._chunks = []
        try:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise LthError(f"eSpeak NG has no voice '{voice}'")
            lib.espeak_SetParameter(PARAMETER_RATE, int(rate), 0)
            lib.espeak_SetParameter(PARAMETER_PITCH, int(pitch), 0)
            text = word.encode()
            status = lib.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, 0, None, None)
            if status != 0 or lib.espeak_Synchronize() != 0:
                raise LthError(f"eSpeak NG failed to speak '{word}' with voice '{voice}' (error {status})")
        finally:
            self._close(lib)
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16).copy()
        self._chunks = []
        return samples, sample_rate
