"""Audio stages: :func:`resample`, :func:`reframe`, :func:`paced` and :func:`telephone`.

Each takes a stream of events, transforms the :class:`AudioChunk` s and passes every other item on
unchanged, as soon as it arrives. DSP state (a resampler, a half-filled frame) lives in the stage's
local variables, so a stage is a pure transform seen from outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import AudioError
from ..events import AudioChunk
from ..ops import stage
from ._convert import check_positive, check_rate, frames_per
from ._framer import Framer
from ._resampler import Resampler
from ._ulaw import TELEPHONE_RATE, ulaw_decode_bytes, ulaw_encode_chunk

__all__ = ["paced", "reframe", "resample", "telephone"]


_NOTHING = np.zeros(0, dtype=np.int16)


class _Segment:
    """The resampled output of a run of chunks that share one input rate."""

    __slots__ = ("_made", "_resampler", "_t0", "in_rate")

    def __init__(self, in_rate: int, out_rate: int, t0: float) -> None:
        self.in_rate = in_rate
        self._resampler = Resampler(in_rate, out_rate)
        self._t0 = t0
        self._made = 0  # output samples so far

    def push(self, samples: npt.NDArray[np.int16], *, last: bool = False) -> AudioChunk | None:
        """Resample the next input; return the output ready so far, if any."""
        out = self._resampler.push(samples, last=last)
        if out.shape[0] == 0:
            return None
        rate = self._resampler.out_rate
        chunk = AudioChunk(out, rate, self._t0 + self._made / rate)
        self._made += out.shape[0]
        return chunk

    def finish(self) -> AudioChunk | None:
        """Flush the resampler: the output still held back by its filter delay."""
        return self.push(_NOTHING, last=True)


async def _resampled(source: AsyncIterable[Any], rate: int) -> AsyncGenerator[Any, None]:
    """What :func:`resample` does, as a plain generator that other stages can build on."""
    segment: _Segment | None = None
    async for item in source:
        if not isinstance(item, AudioChunk):
            yield item
            continue
        if segment is not None and item.rate != segment.in_rate:
            tail = segment.finish()
            segment = None
            if tail is not None:
                yield tail
        if item.rate == rate:
            yield item
            continue
        if segment is None:
            segment = _Segment(item.rate, rate, item.t)
        out = segment.push(item.samples)
        if out is not None:
            yield out
    if segment is not None:
        tail = segment.finish()
        if tail is not None:
            yield tail


@stage
async def resample(source: AsyncIterable[Any], /, *, rate: int) -> AsyncIterator[Any]:
    """Convert every :class:`AudioChunk` to ``rate`` Hz, seamlessly across chunk boundaries.

    A streaming soxr resampler carries its filter state from chunk to chunk, so the output has no
    clicks at the joins; it is flushed when the stream ends (or the input rate changes). soxr works
    in blocks, so output comes in bursts of uneven size — about 30 ms for 48 → 16 kHz, about 100 ms
    for 8 ↔ 16 kHz, which is also the latency it adds; pipe through :func:`reframe` for even
    frames. Output ``t`` counts from the first input chunk's ``t``. Chunks already at ``rate`` pass
    through untouched.

    >>> import asyncio, numpy as np
    >>> from voicekit.audio import from_array
    >>> flow = from_array(np.zeros(4800, dtype=np.int16), 48000) | resample(rate=16000)
    >>> chunks = asyncio.run(flow.list())
    >>> sum(c.frames for c in chunks), {c.rate for c in chunks}
    (1600, {16000})
    """
    async with aclosing(_resampled(source, check_rate(rate))) as items:
        async for item in items:
            yield item


@stage
async def reframe(source: AsyncIterable[Any], /, *, ms: float = 20) -> AsyncIterator[Any]:
    """Re-cut :class:`AudioChunk` s of any sizes into frames of exactly ``ms`` milliseconds.

    Samples are joined in order and cut again; the last, shorter frame is flushed when the stream
    ends (or its rate changes). A frame's ``t`` counts from the first chunk's ``t``. Other items are
    passed on as they arrive, ahead of audio still waiting to fill a frame.

    >>> import asyncio, numpy as np
    >>> from voicekit.audio import from_array
    >>> flow = from_array(np.zeros(1000, dtype=np.int16), 16000, chunk_ms=7) | reframe(ms=20)
    >>> [c.frames for c in asyncio.run(flow.list())]
    [320, 320, 320, 40]
    """
    check_positive(ms, "ms", " of milliseconds")
    framer: Framer | None = None
    async for item in source:
        if not isinstance(item, AudioChunk):
            yield item
            continue
        if framer is not None and item.rate != framer.rate:
            for frame in framer.flush():
                yield frame
            framer = None
        if framer is None:
            framer = Framer(frames_per(ms, item.rate, "ms"), item.rate, item.t)
        for frame in framer.push(item.samples):
            yield frame
    if framer is not None:
        for frame in framer.flush():
            yield frame


@stage
async def paced(
    source: AsyncIterable[Any], /, *, speed: float = 1.0, resync: float = 0.1
) -> AsyncIterator[Any]:
    """Release each :class:`AudioChunk` when its time comes, as a live microphone or a phone
    line would: ``speed=1`` is real time, ``speed=2`` twice as fast.

    The schedule is absolute: the chunk with start time ``t`` is released at
    ``origin + t / speed``, where ``origin`` is set by the first chunk (released at once). So
    lateness caused *downstream* (a slow consumer, a late timer) is caught up instead of adding
    up over a long stream, and a jump forward in ``t`` is a pause.

    Lateness caused *upstream* is not caught up: when the source itself kept a chunk waiting
    (a stream that went idle — an agent thinking between two replies, a TTS that stalled) for
    more than ``resync`` seconds past its time, the schedule starts again from that chunk,
    which is released at once and the ones after it in real time from there. Catching up
    would release the late audio in a burst: a listener would hear the start of the next
    reply cut short and everything after it at once. Only the wait on the source since the
    previous chunk counts; lateness the consumer caused before it asked is still caught up.
    A chunk whose ``t`` goes back before the end of the previous one (a source that counts each
    part from 0) is played right after it. Other items pass at once.

    >>> import asyncio, time, numpy as np
    >>> from voicekit.audio import from_array
    >>> one_second = from_array(np.zeros(8000, dtype=np.int16), 8000)  # 50 chunks of 20 ms
    >>> begin = time.monotonic()
    >>> _ = asyncio.run((one_second | paced(speed=10)).list())
    >>> time.monotonic() - begin >= 0.098  # the last chunk starts at 0.98 s: 0.098 s at 10x
    True
    """
    speed = check_positive(speed, "speed")
    if isinstance(resync, bool) or not isinstance(resync, int | float) or not resync >= 0:
        raise AudioError(f"resync must be a number of seconds ≥ 0, got {resync!r}")
    loop = asyncio.get_running_loop()
    origin: float | None = None  # the loop time at which t = 0 would have been released
    asked = loop.time()  # when the consumer asked for the item after the last chunk
    end = 0.0  # where the last chunk ended, in stream time
    async for item in source:
        if isinstance(item, AudioChunk):
            now = loop.time()
            due = item.t / speed
            if origin is None:
                origin = now - due
            else:
                if item.t < end - 1e-6:  # time went back: go on from where the last chunk ended
                    origin += (end - item.t) / speed
                idle = now - max(asked, origin + due)  # how late the source made it
                if idle > resync:
                    origin += idle
            end = item.end
            delay = origin + due - now
            if delay > 0:
                await asyncio.sleep(delay)
            yield item
            asked = loop.time()
        else:
            yield item


@stage
async def telephone(source: AsyncIterable[Any], /) -> AsyncIterator[Any]:
    """Put audio through a phone line: resample to 8 kHz, encode as G.711 μ-law, decode again.

    Yields 8 kHz chunks that sound as a caller would hear them (pipe through ``resample(rate=…)``
    to bring them back to another rate). Uses :func:`ulaw_encode_chunk` and
    :func:`ulaw_decode_bytes`, the functions telephony transports use for their payloads.

    >>> import asyncio, numpy as np
    >>> from voicekit.audio import from_array
    >>> flow = from_array(np.full(1600, 1000, dtype=np.int16), 16000) | telephone()
    >>> chunks = asyncio.run(flow.list())
    >>> samples = np.concatenate([c.samples for c in chunks])
    >>> len(samples), chunks[0].rate, int(samples[400])  # 1000 is coded as 988 in μ-law
    (800, 8000, 988)
    """
    async with aclosing(_resampled(source, TELEPHONE_RATE)) as items:
        async for item in items:
            if isinstance(item, AudioChunk):
                yield ulaw_decode_bytes(ulaw_encode_chunk(item), rate=item.rate, t=item.t)
            else:
                yield item
