"""Cutting a marked audio stream into utterances, and recognising them beside the stream.

Shared by :func:`~voicekit.stt.whisper` and :func:`~voicekit.stt.fake`: both buffer the audio
between a :class:`SpeechStarted` and its :class:`SpeechStopped` and turn it into a
:class:`Transcript`; they differ only in the function that does the recognising.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from .._compute import settle
from .._errors import ConfigError
from ..audio import to_float32, to_int16
from ..events import AudioChunk, SpeechStarted, SpeechStopped, Transcript
from ..vad import SpeechPaused

RATE = 16000
"""The rate utterances are handed to recognisers at."""

Recognize = Callable[[npt.NDArray[np.int16]], Awaitable[str]]
"""Turns one utterance (mono int16 at 16 kHz, possibly empty) into text ("" for nothing)."""

_HISTORY = 3.0  # seconds of audio kept between utterances, beyond pre_roll
_MAX_PENDING = 2  # utterances waiting for recognition before the stage stops reading its source


class Utterances:
    """Buffers audio chunks and cuts them into utterances at speech markers.

    Between utterances it keeps the last few seconds, because a :class:`SpeechStarted` arrives
    ``start_secs`` after the onset it reports: the utterance begins ``pre_roll`` seconds before
    that onset, but never before the end of the previous utterance. A stream that carries no
    markers at all is one utterance, closed when the stream ends.
    """

    def __init__(self, pre_roll: float) -> None:
        self.pre_roll = pre_roll
        self.chunks: deque[AudioChunk] = deque()
        self.marked = False  # a marker has been seen
        self.start: float | None = None  # where the utterance in progress is cut from
        self.onset = 0.0  # when its speech began
        self.floor = -math.inf  # where the previous utterance ended

    def audio(self, chunk: AudioChunk) -> None:
        self.chunks.append(chunk)
        if self.marked and self.start is None:
            keep_from = chunk.end - self.pre_roll - _HISTORY
            while self.chunks and self.chunks[0].end <= keep_from:
                self.chunks.popleft()

    def started(self, marker: SpeechStarted) -> None:
        self.marked = True
        if self.start is None:
            self.onset = marker.t
            self.start = max(marker.t - self.pre_roll, self.floor)
            while self.chunks and self.chunks[0].end <= self.start:
                self.chunks.popleft()

    def so_far(self) -> tuple[float, npt.NDArray[np.int16]] | None:
        """The utterance in progress as it stands (it stays open): its onset and samples."""
        if self.start is None:
            return None
        return self.onset, self._cut(self.start)

    def stopped(self, marker: SpeechStopped) -> tuple[float, npt.NDArray[np.int16]] | None:
        """Close the utterance in progress: its onset and its samples at 16 kHz."""
        self.marked = True
        if self.start is None:
            return None
        start, self.start = self.start, None
        self.floor = marker.t
        return self.onset, self._cut(start)

    def finish(self) -> tuple[float, npt.NDArray[np.int16]] | None:
        """The stream ended: the utterance in progress, or the whole unmarked stream."""
        if self.start is not None:
            start, self.start = self.start, None
            return self.onset, self._cut(start)
        if not self.marked and self.chunks:
            start = self.chunks[0].t
            return start, self._cut(start)
        return None

    def _cut(self, start: float) -> npt.NDArray[np.int16]:
        """Join the buffered audio from ``start`` on, at 16 kHz."""
        parts: list[npt.NDArray[np.int16]] = []
        group: list[AudioChunk] = []
        for chunk in self.chunks:
            if group and chunk.rate != group[0].rate:
                parts.append(_join(group, start))
                group = []
            group.append(chunk)
        if group:
            parts.append(_join(group, start))
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def _join(chunks: list[AudioChunk], start: float) -> npt.NDArray[np.int16]:
    """Concatenate chunks of one rate, drop what lies before ``start``, resample to 16 kHz."""
    rate = chunks[0].rate
    samples = np.concatenate([c.samples for c in chunks])
    skip = max(0, round((start - chunks[0].t) * rate))
    samples = samples[skip:]
    if rate == RATE or samples.shape[0] == 0:
        return samples
    return to_int16(soxr.resample(to_float32(samples), rate, RATE, "HQ"))


def check_pre_roll(pre_roll: object) -> float:
    if (
        isinstance(pre_roll, bool)
        or not isinstance(pre_roll, int | float)
        or not (0 <= pre_roll <= 10)
    ):
        raise ConfigError(f"pre_roll must be a number of seconds in [0, 10], got {pre_roll!r}")
    return float(pre_roll)


async def recognize_utterances(
    source: AsyncIterable[Any],
    recognize: Recognize,
    *,
    pre_roll: float,
    pass_audio: bool,
    speculate: bool = False,
) -> AsyncIterator[Any]:
    """The body of an STT stage: markers pass through, utterances become Transcripts.

    Recognition runs beside the stream: while an utterance is being recognised, the stage keeps
    reading its source and passing markers on (a new :class:`SpeechStarted` is not held up by a
    transcription in flight). Transcripts come out in utterance order, each as soon as it is
    ready; empty ones are dropped. At most a couple of utterances wait for recognition before
    the stage stops reading ahead.

    :class:`~voicekit.vad.SpeechPaused` hints are consumed. With ``speculate``, each hint starts
    recognising the utterance as it stands; the :class:`SpeechStopped` with the hint's ``t``
    adopts that result (the audio after the hint is the quiet the VAD waited for), and a newer
    hint or a stop with another ``t`` (the speech went on) drops it. Its transcript still comes
    out only after the stop.
    """
    cutter = Utterances(pre_roll)
    src = aiter(source)
    pull: asyncio.Future[Any] | None = None
    jobs: deque[tuple[float, asyncio.Future[str]]] = deque()
    guess: tuple[float, float, asyncio.Future[str]] | None = None  # (hint t, onset, job)
    ended = False

    def submit(cut: tuple[float, npt.NDArray[np.int16]] | None) -> None:
        if cut is not None:
            jobs.append((cut[0], asyncio.ensure_future(recognize(cut[1]))))

    async def drop_guess() -> None:
        nonlocal guess
        if guess is not None:
            await settle(guess[2])
            guess = None

    try:
        while not ended or jobs:
            if pull is None and not ended and len(jobs) < _MAX_PENDING:
                pull = asyncio.ensure_future(anext(src))
            waiting = [f for f in (pull, jobs[0][1] if jobs else None) if f is not None]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            while jobs and jobs[0][1].done():
                t, job = jobs.popleft()
                text = job.result().strip()
                if text:
                    yield Transcript(text, final=True, t=t)
            if pull is None or not pull.done():
                continue
            done, pull = pull, None
            try:
                item = done.result()
            except StopAsyncIteration:
                ended = True
                submit(cutter.finish())
                continue
            if isinstance(item, AudioChunk):
                cutter.audio(item)
                if pass_audio:
                    yield item
                continue
            if isinstance(item, SpeechPaused):
                await drop_guess()
                cut = cutter.so_far() if speculate else None
                if cut is not None:
                    guess = (item.t, cut[0], asyncio.ensure_future(recognize(cut[1])))
                continue
            if isinstance(item, SpeechStarted):
                cutter.started(item)
            elif isinstance(item, SpeechStopped):
                cut = cutter.stopped(item)
                if guess is not None and cut is not None and guess[0] == item.t:
                    jobs.append((guess[1], guess[2]))  # nothing was said since the hint
                    guess = None
                else:
                    await drop_guess()
                    submit(cut)
            yield item
    finally:
        await settle(pull)
        for _, job in jobs:
            await settle(job)
        if guess is not None:
            await settle(guess[2])
