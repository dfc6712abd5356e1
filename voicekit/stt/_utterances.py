"""Cutting a marked audio stream into utterances, and recognising them beside the stream.

Shared by :func:`~voicekit.stt.whisper`, :func:`~voicekit.stt.openai_stt` and
:func:`~voicekit.stt.fake`: each buffers the audio between a :class:`SpeechStarted` and its
:class:`SpeechStopped` (at most ``max_utterance`` seconds of it) and turns it into a
:class:`Transcript` (or a :class:`NoWords` when it holds none); they differ only in the
function that does the recognising.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import soxr

from .._compute import settle
from .._errors import ConfigError
from ..audio import to_float32, to_int16
from ..events import AudioChunk, NoWords, SpeechStarted, SpeechStopped, Transcript
from ..vad import SpeechPaused

RATE = 16000
"""The rate utterances are handed to recognisers at."""

Recognize = Callable[[npt.NDArray[np.int16], int], Awaitable[str]]
"""Turns one utterance into text ("" for nothing): its samples (mono int16 at 16 kHz, possibly
empty) and the lowest rate its audio arrived at (8000 for a phone line: no sound above 4 kHz)."""


class Cut(NamedTuple):
    """An utterance: when its speech began, its samples at 16 kHz, the lowest rate they came at."""

    onset: float
    samples: npt.NDArray[np.int16]
    rate: int

MAX_UTTERANCE = 30.0
"""Seconds an utterance may last before it is cut and recognised in pieces (the default)."""

_LEAD = 3.0  # seconds kept before a speech start beyond pre_roll: its marker arrives late
_MAX_PENDING = 2  # utterances waiting for recognition before the stage stops reading its source
_FRAME = 320  # 20 ms at 16 kHz: the unit in which the quietest place to cut is looked for
_SEARCH = 5.0  # seconds before the limit searched for that place (at most a third of the limit)

_log = logging.getLogger("voicekit.stt")


class Utterances:
    """Buffers audio chunks and cuts them into utterances at speech markers; keeps little else.

    Outside an utterance it keeps only the last ``pre_roll`` + 3 s, because a
    :class:`SpeechStarted` arrives ``start_secs`` after the onset it reports: the utterance
    begins ``pre_roll`` seconds before that onset, but never before the end of the previous
    utterance. An utterance that reaches ``max_secs`` is cut (at the quietest 60 ms of its last
    few seconds) and the rest goes on as a new utterance, so nothing kept ever exceeds
    ``max_secs`` plus a chunk. Audio that no :class:`SpeechStarted` called speech is never an
    utterance, not even at the end of a stream without markers.
    """

    def __init__(self, pre_roll: float, max_secs: float = MAX_UTTERANCE) -> None:
        self.pre_roll = pre_roll
        self.max_secs = max_secs
        self.chunks: deque[AudioChunk] = deque()
        self.marked = False  # a marker has been seen
        self.heard = False  # an audio chunk has been seen
        self.start: float | None = None  # where the utterance in progress is cut from
        self.onset = 0.0  # when its speech began
        self.floor = -math.inf  # where the previous utterance ended

    @property
    def kept(self) -> int:
        """How many samples are buffered (at their own rates)."""
        return sum(c.frames for c in self.chunks)

    def audio(self, chunk: AudioChunk) -> list[Cut]:
        """Keep a chunk; returns the first pieces of an utterance that grew too long, if it did."""
        self.chunks.append(chunk)
        self.heard = True
        if self.start is None:
            self._drop_before(chunk.end - self.pre_roll - _LEAD)
            return []
        pieces: list[Cut] = []
        while chunk.end - self.start >= self.max_secs:
            whole = self._cut(self.start)
            samples = whole.samples[: round(self.max_secs * RATE)]
            piece = samples[: quiet_cut(samples, self.max_secs)]
            if piece.shape[0] == 0:
                break
            pieces.append(Cut(self.onset, piece, whole.rate))
            self.start += piece.shape[0] / RATE
            self._drop_before(self.start)
            if self.chunks and self.chunks[0].t > self.start:  # a gap in the stream's times
                self.start = self.chunks[0].t
            self.onset = self.start
        return pieces

    def started(self, marker: SpeechStarted) -> None:
        self.marked = True
        if self.start is None:
            self.onset = marker.t
            self.start = max(marker.t - self.pre_roll, self.floor)
            self._drop_before(self.start)

    def so_far(self) -> Cut | None:
        """The utterance in progress as it stands (it stays open): its onset and samples."""
        if self.start is None:
            return None
        return self._cut(self.start)

    def stopped(self, marker: SpeechStopped) -> Cut | None:
        """Close the utterance in progress: its onset and its samples at 16 kHz."""
        self.marked = True
        if self.start is None:
            return None
        start, self.start = self.start, None
        self.floor = marker.t
        return self._cut(start)

    def finish(self) -> Cut | None:
        """The stream ended: the utterance in progress, if one is (never unmarked audio)."""
        if self.start is None:
            return None
        start, self.start = self.start, None
        return self._cut(start)

    def _drop_before(self, t: float) -> None:
        """Forget the audio before ``t`` (slicing a long chunk that straddles it)."""
        chunks = self.chunks
        while chunks and chunks[0].end <= t:
            chunks.popleft()
        if chunks and chunks[0].t < t:
            first = chunks[0]
            skip = int((t - first.t) * first.rate)
            if skip > 0:
                rest = first.samples[skip:]
                chunks[0] = AudioChunk(rest, first.rate, first.t + skip / first.rate)

    def _cut(self, start: float) -> Cut:
        """The utterance in progress: the buffered audio from ``start`` on, at 16 kHz."""
        parts: list[npt.NDArray[np.int16]] = []
        group: list[AudioChunk] = []
        for chunk in self.chunks:
            if group and chunk.rate != group[0].rate:
                parts.append(_join(group, start))
                group = []
            group.append(chunk)
        if group:
            parts.append(_join(group, start))
        samples = np.concatenate(parts) if parts else np.zeros(0, np.int16)
        rate = min((c.rate for c in self.chunks if c.end > start), default=RATE)
        return Cut(self.onset, samples, rate)


def quiet_cut(samples: npt.NDArray[np.int16], max_secs: float) -> int:
    """Where to end the first piece of an over-long utterance: a sample index.

    The middle of the quietest 60 ms (three 20 ms frames, by energy) in the last
    ``min(5 s, max_secs / 3)`` of ``samples``; the latest such place on a tie. Everything before
    the index is one piece, the rest goes on.

    >>> loud = np.full(16000 * 9, 3000, np.int16)
    >>> loud[16000 * 8 : 16000 * 8 + 1600] = 0  # 0.1 s of quiet 8 s in
    >>> quiet_cut(loud, 9.0) / 16000
    8.07
    """
    n = samples.shape[0]
    frames = min(round(min(_SEARCH, max_secs / 3) * RATE), n) // _FRAME
    if frames < 3:
        return n
    tail = samples[n - frames * _FRAME :].astype(np.float64).reshape(frames, _FRAME)
    energy = np.convolve((tail * tail).sum(axis=1), np.ones(3), mode="valid")
    best = energy.shape[0] - 1 - int(np.argmin(energy[::-1]))  # the latest minimum
    return n - frames * _FRAME + (best + 1) * _FRAME + _FRAME // 2


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


def check_max_utterance(max_utterance: object) -> float:
    if (
        isinstance(max_utterance, bool)
        or not isinstance(max_utterance, int | float)
        or not (1 <= max_utterance <= 600)
    ):
        raise ConfigError(
            f"max_utterance must be a number of seconds in [1, 600], got {max_utterance!r}"
        )
    return float(max_utterance)


async def recognize_utterances(
    source: AsyncIterable[Any],
    recognize: Recognize,
    *,
    pre_roll: float,
    pass_audio: bool,
    speculate: bool = False,
    max_utterance: float = MAX_UTTERANCE,
) -> AsyncIterator[Any]:
    """The body of an STT stage: markers pass through, utterances become Transcripts.

    Recognition runs beside the stream: while an utterance is being recognised, the stage keeps
    reading its source and passing markers on (a new :class:`SpeechStarted` is not held up by a
    transcription in flight). Transcripts come out in utterance order, each as soon as it is
    ready; an utterance in which the recogniser found no words yields a :class:`NoWords` with
    its onset instead, so that every utterance gets an answer. At most a couple of utterances
    wait for recognition before the stage stops reading ahead.

    :class:`~voicekit.vad.SpeechPaused` hints are consumed. With ``speculate``, each hint starts
    recognising the utterance as it stands; the :class:`SpeechStopped` with the hint's ``t``
    adopts that result (the audio after the hint is the quiet the VAD waited for), and a newer
    hint or a stop with another ``t`` (the speech went on) drops it. Its transcript still comes
    out only after the stop.

    What is kept is bounded: ``pre_roll`` (plus the lateness of a start marker) outside speech,
    and at most ``max_utterance`` seconds of one utterance (see :class:`Utterances`). Audio that
    the VAD never called speech is not recognised: a stream without markers yields no
    transcript (and a warning on the ``voicekit.stt`` logger says so).
    """
    cutter = Utterances(pre_roll, max_utterance)
    src = aiter(source)
    pull: asyncio.Future[Any] | None = None
    jobs: deque[tuple[float, asyncio.Future[str]]] = deque()
    guess: tuple[float, float, asyncio.Future[str]] | None = None  # (hint t, onset, job)
    ended = False

    def submit(cut: Cut | None) -> None:
        if cut is not None:
            jobs.append((cut.onset, asyncio.ensure_future(recognize(cut.samples, cut.rate))))

    async def drop_guess() -> None:
        nonlocal guess
        if guess is not None:
            await settle(guess[2])
            guess = None

    try:
        while not ended or jobs:
            try:
                if not jobs and pull is None and guess is None:
                    # no recognition to overlap the wait with: take the next item directly
                    item = await anext(src)
                else:
                    if pull is None and not ended and len(jobs) < _MAX_PENDING:
                        pull = asyncio.ensure_future(anext(src))
                    waiting = [f for f in (pull, jobs[0][1] if jobs else None) if f is not None]
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    while jobs and jobs[0][1].done():
                        t, job = jobs.popleft()
                        text = job.result().strip()
                        yield Transcript(text, final=True, t=t) if text else NoWords(t)
                    if pull is None or not pull.done():
                        continue
                    done, pull = pull, None
                    item = done.result()
            except StopAsyncIteration:
                ended = True
                submit(cutter.finish())
                if cutter.heard and not cutter.marked:
                    _log.warning(
                        "speech to text: the audio carried no speech markers, so nothing was "
                        "transcribed (put voicekit.vad.vad() before the STT stage, or use "
                        "voicekit.stt.transcribe() for a whole recording)"
                    )
                continue
            if isinstance(item, AudioChunk):
                pieces = cutter.audio(item)
                if pieces:  # an over-long utterance: recognise what it has so far
                    await drop_guess()
                    for piece in pieces:
                        submit(piece)
                if pass_audio:
                    yield item
                continue
            if isinstance(item, SpeechPaused):
                await drop_guess()
                cut = cutter.so_far() if speculate else None
                if cut is not None:
                    job = asyncio.ensure_future(recognize(cut.samples, cut.rate))
                    guess = (item.t, cut.onset, job)
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
