"""numpy arrays in and out of streams: :func:`from_array` and :func:`to_array`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import AudioError
from ..events import AudioChunk
from ..ops import Flow, Source
from ._convert import (
    cancellation,
    channel_in_range,
    check_channel,
    check_rate,
    describe_sample,
    downmix,
    energies,
    first_bad,
    frames_first,
    frames_per,
    to_int16,
    warn,
)
from ._io import source_flow

__all__ = ["from_array", "to_array"]


async def _array_chunks(
    _: Source[Any], /, *, samples: npt.NDArray[np.int16], rate: int, size: int
) -> AsyncIterator[AudioChunk]:
    for start in range(0, samples.shape[0], size):
        yield AudioChunk(samples[start : start + size], rate, start / rate)


def from_array(
    samples: npt.ArrayLike, rate: int, *, chunk_ms: float = 20, channel: int | None = None
) -> Flow[AudioChunk]:
    """Stream samples held in memory as :class:`AudioChunk` s of ``chunk_ms`` (the last may be
    shorter).

    ``samples`` are int16, or float at full scale ±1.0; 1-D (mono) or 2-D with several channels.
    A 2-D array may be (frames, channels) or (channels, frames): the shorter axis holds the
    channels (at most 32), and a square array is (frames, channels) — so a ``(2, n)`` array is
    stereo, never ``n`` channels of 2 samples. Channels are averaged, or ``channel`` picks one;
    as with :func:`~voicekit.audio.read`, channels in antiphase average to silence, with an
    :class:`~voicekit.AudioWarning`. Samples are converted (and copied) now, so bad samples fail
    here, not later.

    >>> import asyncio
    >>> flow = from_array(np.zeros(800, dtype=np.int16), 16000)
    >>> [(c.frames, c.t) for c in asyncio.run(flow.list())]
    [(320, 0.0), (320, 0.02), (160, 0.04)]
    """
    rate = check_rate(rate)
    size = frames_per(chunk_ms, rate)
    channel = check_channel(channel)
    array = np.asarray(samples)
    if array.ndim != 1:
        table, transposed = frames_first(array, "from_array")
    else:
        table, transposed = array, False
    if table.size == 0:
        raise AudioError(f"from_array: there are no samples (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        frame, channel, value = first_bad(table)
        if channel is None:
            index = f"samples[{frame}]"
        else:
            index = f"samples[{channel}, {frame}]" if transposed else f"samples[{frame}, {channel}]"
        where = describe_sample(frame, channel, rate=rate, extra=index)
        raise AudioError(f"from_array: {where} is {value}; audio must be finite")
    pcm = to_int16(table)  # checks the dtype
    channels = 1 if pcm.ndim == 1 else pcm.shape[1]
    channel_in_range(channel, channels, f"from_array: the array (shape {array.shape})")
    if pcm.ndim == 2 and channel is not None:
        mono = pcm[:, channel].copy()
    elif pcm.ndim == 2 and channels > 1:
        mixed = downmix(table)  # average the original values, not the rounded ones
        problem = cancellation(*energies(table, mixed), pcm.shape[0])
        if problem:
            warn(f"from_array: {problem}; pass channel= to take one channel")
        mono = to_int16(mixed)
    else:
        mono = pcm.reshape(-1).copy()
    mono.flags.writeable = False
    return source_flow(_array_chunks, "from_array", samples=mono, rate=rate, size=size)


async def to_array(source: Source[Any]) -> tuple[npt.NDArray[np.int16], int]:
    """Run a stream to its end and join its :class:`AudioChunk` s into one int16 array.

    Returns the samples and their rate. Other items are skipped; chunks at different rates, or no
    chunk at all, raise :class:`AudioError`.

    >>> import asyncio
    >>> samples, rate = asyncio.run(to_array(from_array(np.arange(5, dtype=np.int16), 8000)))
    >>> samples, rate
    (array([0, 1, 2, 3, 4], dtype=int16), 8000)
    """
    parts: list[npt.NDArray[np.int16]] = []
    rate = 0
    skipped = 0
    flow: Flow[Any] = Flow(source)
    async with flow.open() as items:
        async for item in items:
            if not isinstance(item, AudioChunk):
                skipped += 1
                continue
            if not parts:
                rate = item.rate
            elif item.rate != rate:
                raise AudioError(
                    f"to_array: chunk {len(parts)} (t={item.t:.3f}s) is at {item.rate} Hz but "
                    f"the stream began at {rate} Hz; pipe it through resample() first"
                )
            parts.append(item.samples)
    if not parts:
        raise AudioError(f"to_array: the source yielded no AudioChunk ({skipped} other items)")
    return np.concatenate(parts), rate
