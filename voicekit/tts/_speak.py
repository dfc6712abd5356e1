"""The body shared by TTS stages: text in, evenly cut audio chunks out, one sentence ahead."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .._compute import settle
from .._errors import ConfigError
from .._unicode import speakable
from ..events import AudioChunk, Sentence

Synth = Callable[[str], AsyncIterator[tuple[npt.NDArray[np.int16], int]]]
"""Speaks one text: yields pieces of mono int16 audio and their rate, in order."""

_ITEM, _AUDIO, _END, _ERROR = range(4)


def text_of(item: Any) -> str | None:
    """The text to speak in ``item``, or None if it is not something to speak."""
    if isinstance(item, Sentence):
        return item.text
    if isinstance(item, str):
        return item
    return None


def check_chunk_ms(chunk_ms: object) -> float:
    if (
        isinstance(chunk_ms, bool)
        or not isinstance(chunk_ms, int | float)
        or not math.isfinite(chunk_ms)
        or not 1 <= chunk_ms <= 1000
    ):
        raise ConfigError(
            f"chunk_ms must be a number of milliseconds in [1, 1000], got {chunk_ms!r}"
        )
    return float(chunk_ms)


async def speak(
    source: AsyncIterable[Any], synth: Synth, *, chunk_ms: float, pass_text: bool
) -> AsyncGenerator[Any, None]:
    """Speak every :class:`Sentence` (or ``str``) of ``source``; pass other items through.

    The text is made :func:`~voicekit._unicode.speakable` first (valid Unicode, no NUL or other
    control characters); a sentence with nothing left to say gives no audio.

    Audio comes out in chunks of ``chunk_ms`` (the last of a sentence may be shorter) whose ``t``
    runs on from one sentence to the next. With ``pass_text`` each Sentence follows its audio.
    Synthesis runs one step ahead of the consumer, in a task: while the consumer plays out one
    sentence's chunks, the next sentence is being synthesised, so playback has no gaps.
    Order is kept: an item never overtakes audio of a sentence that came before it.
    """
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue(maxsize=1)

    async def produce() -> None:
        try:
            async for item in source:
                text = text_of(item)
                if text is None:
                    await queue.put((_ITEM, item))
                    continue
                text = speakable(text)  # no NUL, no lone surrogate: engines choke on them
                if text.strip():
                    async for piece in synth(text):
                        await queue.put((_AUDIO, piece))
                if pass_text:
                    await queue.put((_ITEM, item))
        except Exception as exc:
            await queue.put((_ERROR, exc))
        else:
            await queue.put((_END, None))

    producer = asyncio.ensure_future(produce())
    base = 0.0  # seconds of audio before the current rate began
    made = 0  # samples made at the current rate
    rate = 0
    try:
        while True:
            kind, payload = await queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise payload
            if kind == _ITEM:
                yield payload
                continue
            samples, piece_rate = payload
            if piece_rate != rate:
                base += made / rate if rate else 0.0
                rate, made = piece_rate, 0
            size = max(1, round(rate * chunk_ms / 1000.0))
            for start in range(0, samples.shape[0], size):
                chunk = AudioChunk(samples[start : start + size], rate, base + made / rate)
                made += chunk.frames
                yield chunk
    finally:
        await settle(producer)
