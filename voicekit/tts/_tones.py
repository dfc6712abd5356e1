"""A deterministic stand-in for speech synthesis: one short tone per word."""

from __future__ import annotations

import asyncio
import contextlib
import re
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError
from ..audio._convert import check_rate
from ..ops import stage
from ._speak import check_chunk_ms, speak

__all__ = ["synthesize_tones", "tones"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_BASE_MS, _PER_LETTER_MS, _GAP_MS, _FADE_MS = 60, 10, 40, 5
_AMPLITUDE = 0.3  # about -13 dBFS RMS: plainly "speech" to an energy VAD
_HUM_AMPLITUDE, _HUM_HZ = 0.03, 150.0  # between words: about -33 dBFS, so a VAD hears no pause


def words(text: str) -> list[str]:
    """The words of ``text`` as :func:`tones` sees them (letters and digits, apostrophes kept).

    >>> words("Hello, world! It's 3 o'clock.")
    ['Hello', 'world', "It's", '3', "o'clock"]
    """
    return _WORD.findall(text)


def _tone(word: str, rate: int) -> npt.NDArray[np.float64]:
    letters = sum(ch.isalnum() for ch in word)
    n = round(rate * (_BASE_MS + _PER_LETTER_MS * letters) / 1000)
    freq = 300.0 + 25.0 * (zlib.crc32(word.lower().encode()) % 20)  # 300–775 Hz, stable
    wave = _AMPLITUDE * np.sin(2 * np.pi * freq * np.arange(n) / rate)
    fade = min(n // 2, round(rate * _FADE_MS / 1000))
    if fade:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        wave[:fade] *= ramp
        wave[n - fade :] *= ramp[::-1]
    return wave


def _hum(rate: int) -> npt.NDArray[np.float64]:
    n = round(rate * _GAP_MS / 1000)
    return _HUM_AMPLITUDE * np.sin(2 * np.pi * _HUM_HZ * np.arange(n) / rate)


def synthesize_tones(text: str, *, rate: int = 16000) -> tuple[npt.NDArray[np.int16], int]:
    """The audio :func:`tones` makes for ``text``: per word, a tone of 60 ms + 10 ms per letter
    (its pitch a hash of the word) and then a 40 ms low hum (quiet, but loud enough that a VAD
    hears one stretch of speech per sentence). Deterministic.

    >>> samples, rate = synthesize_tones("Hi there.")
    >>> len(samples) / rate  # (60 + 20 + 40) + (60 + 50 + 40) ms
    0.27
    """
    rate = check_rate(rate)
    gap = _hum(rate)
    parts = [part for word in words(text) for part in (_tone(word, rate), gap)]
    if not parts:
        return np.zeros(0, np.int16), rate
    return np.rint(np.concatenate(parts) * 32767).astype(np.int16), rate


@stage
async def tones(
    source: AsyncIterable[Any],
    /,
    *,
    rate: int = 16000,
    latency: float = 0.0,
    chunk_ms: float = 20,
    pass_text: bool = False,
) -> AsyncIterator[Any]:
    """A stand-in for :func:`~voicekit.tts.piper`: speaks each Sentence as one tone per word.

    The audio is deterministic and its length follows the text (see :func:`synthesize_tones`),
    so tests can check timing and what was heard without a model. ``latency`` seconds pass before
    each sentence's audio, to play a slow synthesiser. Chunks, times, ordering and ``pass_text``
    behave exactly as in :func:`~voicekit.tts.piper`. The energy and WebRTC detectors of
    :mod:`voicekit.vad` hear each sentence as one stretch of speech; Silero does not (tones are
    not speech), so pair tones with ``vad(detector=energy())`` in tests.

    >>> flow = tones(["Hi there.", "Bye."], chunk_ms=100)
    >>> [(c.frames, round(c.t, 2)) for c in asyncio.run(flow.list())]
    [(1600, 0.0), (1600, 0.1), (1120, 0.2), (1600, 0.27), (480, 0.37)]
    """
    rate = check_rate(rate)
    chunk_ms = check_chunk_ms(chunk_ms)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ConfigError(f"tones: latency must be a number of seconds ≥ 0, got {latency!r}")

    async def synth(text: str) -> AsyncIterator[tuple[npt.NDArray[np.int16], int]]:
        if latency:
            await asyncio.sleep(latency)
        samples, _ = synthesize_tones(text, rate=rate)
        if samples.shape[0]:
            yield samples, rate

    spoken = speak(source, synth, chunk_ms=chunk_ms, pass_text=pass_text)
    async with contextlib.aclosing(spoken) as items:
        async for item in items:
            yield item
