"""A scripted speech recogniser for tests and teaching: no model, deterministic text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ConfigError
from ..ops import stage
from ._utterances import (
    MAX_UTTERANCE,
    RATE,
    check_max_utterance,
    check_pre_roll,
    recognize_utterances,
)

__all__ = ["fake"]

Script = Iterable[str] | Callable[[npt.NDArray[np.int16], int], str]


@stage
async def fake(
    source: AsyncIterable[Any],
    /,
    *,
    transcripts: Script,
    latency: float = 0.0,
    pre_roll: float = 0.5,
    pass_audio: bool = False,
    max_utterance: float = MAX_UTTERANCE,
) -> AsyncIterator[Any]:
    """A stand-in for :func:`~voicekit.stt.whisper` that "recognises" scripted text.

    It cuts utterances exactly as :func:`whisper` does (at :class:`SpeechStopped`, at the end
    of a stream that stops mid-utterance, and every ``max_utterance`` seconds of an utterance
    that goes on; never audio without a :class:`SpeechStarted`) and answers the *n*-th one with
    ``transcripts[n]``, after ``latency`` seconds (to play a slow recogniser); an empty text (and
    every utterance once the script is used up) yields a :class:`~voicekit.events.NoWords`, as a
    real recogniser does for a cough. ``transcripts`` may instead be a function
    ``f(samples, rate) -> str`` of the utterance's audio (int16 at 16 kHz). Markers pass
    through; audio only with ``pass_audio``.

    >>> from voicekit.events import SpeechStarted, SpeechStopped
    >>> items = [SpeechStarted(0.1), SpeechStopped(0.9), SpeechStarted(2.0), SpeechStopped(2.5)]
    >>> [type(x).__name__ for x in asyncio.run(fake(items, transcripts=["hi there"]).list())]
    ['SpeechStarted', 'SpeechStopped', 'Transcript', 'SpeechStarted', 'SpeechStopped', 'NoWords']
    """
    if isinstance(transcripts, str):
        raise ConfigError("fake: transcripts must be a list of texts, not one string")
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ConfigError(f"fake: latency must be a number of seconds ≥ 0, got {latency!r}")
    pre_roll = check_pre_roll(pre_roll)
    max_utterance = check_max_utterance(max_utterance)
    if callable(transcripts):
        answer = transcripts
    else:
        script = iter(list(transcripts))

        def answer(samples: npt.NDArray[np.int16], rate: int) -> str:
            return next(script, "")

    async def recognize(pcm: npt.NDArray[np.int16], source_rate: int) -> str:
        text = answer(pcm, RATE)  # in utterance order, before any waiting
        if latency:
            await asyncio.sleep(latency)
        return text

    async for item in recognize_utterances(
        source, recognize, pre_roll=pre_roll, pass_audio=pass_audio, max_utterance=max_utterance
    ):
        yield item
