"""The audio stages: resample, reframe, paced."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import soxr
from hypothesis import given, settings
from hypothesis import strategies as st

from voicekit import AudioChunk, AudioError, Sentence, Transcript
from voicekit.audio import (
    from_array,
    paced,
    reframe,
    resample,
    to_array,
    to_float32,
    to_int16,
)


def noisy_tone(rate: int, seconds: float, freq: float = 997.0) -> np.ndarray:
    n = np.arange(round(rate * seconds))
    noise = np.random.default_rng(rate).standard_normal(n.shape[0])
    return to_int16(0.4 * np.sin(2 * np.pi * freq * n / rate) + 0.1 * noise)


def chunked(samples: np.ndarray, rate: int, sizes: list[int], t0: float = 0.0) -> list[AudioChunk]:
    """Cut ``samples`` into chunks of the given sizes (the rest in one last chunk)."""
    chunks, start = [], 0
    for size in [*sizes, samples.shape[0]]:
        piece = samples[start : start + size]
        if piece.shape[0]:
            chunks.append(AudioChunk(piece, rate, t0 + start / rate))
        start += piece.shape[0]
    return chunks


def contiguous(chunks: list[AudioChunk]) -> bool:
    return all(abs(after.t - before.end) < 1e-9 for before, after in itertools.pairwise(chunks))


# ---------------------------------------------------------------------------------------------
# resample


@pytest.mark.parametrize("in_rate", [44100, 48000, 8000])
async def test_streaming_resample_equals_resampling_the_whole_signal(in_rate: int) -> None:
    samples = noisy_tone(in_rate, 3.0)
    out = await (from_array(samples, in_rate, chunk_ms=20) | resample(rate=16000)).list()
    assert {c.rate for c in out} == {16000}
    assert contiguous(out) and out[0].t == 0.0
    streamed = np.concatenate([c.samples for c in out]).astype(np.int32)
    whole = to_int16(soxr.resample(to_float32(samples), in_rate, 16000, "HQ")).astype(np.int32)
    assert streamed.shape == whole.shape == (48000,)
    assert np.abs(streamed - whole).max() <= 2


async def test_resampling_each_chunk_alone_would_click() -> None:
    """The check above is sensitive: stateless per-chunk resampling fails it by far."""
    samples = noisy_tone(48000, 1.0)
    whole = to_int16(soxr.resample(to_float32(samples), 48000, 16000, "HQ")).astype(np.int32)
    pieces = [
        to_int16(soxr.resample(to_float32(samples[i : i + 960]), 48000, 16000, "HQ"))
        for i in range(0, 48000, 960)
    ]
    stateless = np.concatenate(pieces).astype(np.int32)
    assert np.abs(stateless - whole).max() > 1000


async def test_resample_keeps_the_start_time_and_passes_other_items() -> None:
    chunks = chunked(noisy_tone(48000, 0.5), 48000, [960] * 30, t0=12.5)
    items = [Sentence("a"), *chunks[:10], Transcript("b"), *chunks[10:]]
    out = await resample(items, rate=24000).list()
    assert out[0] == Sentence("a") and Transcript("b") in out
    audio = [item for item in out if isinstance(item, AudioChunk)]
    assert audio[0].t == 12.5 and contiguous(audio)
    assert sum(c.frames for c in audio) == 12000


async def test_resample_is_a_no_op_at_the_same_rate() -> None:
    chunks = chunked(noisy_tone(16000, 0.2), 16000, [100, 300, 7])
    out = await resample(chunks, rate=16000).list()
    assert len(out) == len(chunks) and all(a is b for a, b in zip(out, chunks, strict=True))


async def test_resample_follows_a_change_of_input_rate() -> None:
    first = chunked(noisy_tone(8000, 0.5), 8000, [160] * 25)
    second = chunked(noisy_tone(48000, 0.5), 48000, [960] * 25, t0=0.5)
    out = await resample([*first, *second], rate=16000).list()
    assert {c.rate for c in out} == {16000}
    assert sum(c.frames for c in out) == 16000  # each run flushed: exactly 8000 + 8000
    later = [c for c in out if c.t >= 0.5]
    assert later[0].t == 0.5 and contiguous(later)


async def test_resample_rejects_a_bad_rate() -> None:
    with pytest.raises(AudioError, match=r"\[resample\] rate must be a positive integer"):
        await resample(chunked(noisy_tone(8000, 0.1), 8000, []), rate=0).list()


# ---------------------------------------------------------------------------------------------
# reframe


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=40),
    ms=st.sampled_from([10, 20, 30, 32, 12.5]),
    rate=st.sampled_from([8000, 16000, 22050, 44100]),
    t0=st.floats(min_value=0, max_value=1000, allow_nan=False),
)
def test_reframe_reconstructs_the_samples(
    sizes: list[int], ms: float, rate: int, t0: float
) -> None:
    total = sum(sizes)
    samples = np.random.default_rng(total).integers(-32768, 32768, total).astype(np.int16)
    chunks = chunked(samples, rate, sizes, t0=t0)
    frames = asyncio.run(reframe(chunks, ms=ms).list())
    size = round(rate * ms / 1000)
    assert np.array_equal(np.concatenate([f.samples for f in frames]), samples)
    assert all(f.frames == size for f in frames[:-1])
    assert 0 < frames[-1].frames <= size
    assert len(frames) == -(-total // size)
    for k, frame in enumerate(frames):
        assert frame.rate == rate
        assert frame.t == pytest.approx(t0 + k * size / rate, abs=1e-9)


async def test_reframe_passes_other_items_at_once() -> None:
    chunks = chunked(np.arange(500, dtype=np.int16), 16000, [100, 100, 100])
    out = await reframe([chunks[0], Sentence("x"), *chunks[1:]], ms=20).list()
    assert out[0] == Sentence("x")
    assert [f.frames for f in out[1:]] == [320, 180]


async def test_reframe_flushes_when_the_rate_changes() -> None:
    a = chunked(np.ones(500, dtype=np.int16), 16000, [])
    b = chunked(np.ones(100, dtype=np.int16), 8000, [], t0=5.0)
    out = await reframe([*a, *b], ms=10).list()
    expected = [(16000, 160)] * 3 + [(16000, 20), (8000, 80), (8000, 20)]
    assert [(f.rate, f.frames) for f in out] == expected
    assert out[4].t == 5.0


@pytest.mark.parametrize("ms", [0, -5, float("inf"), "20"])
async def test_reframe_rejects_bad_frame_lengths(ms: Any) -> None:
    with pytest.raises(AudioError, match=r"\[reframe\] ms must be a positive finite number"):
        await reframe([], ms=ms).list()


# ---------------------------------------------------------------------------------------------
# paced


async def timed(source: Any) -> list[tuple[float, Any]]:
    loop = asyncio.get_running_loop()
    return [(loop.time(), item) async for item in source]


async def per_chunk_sleeps(source: Any, speed: float) -> AsyncIterator[AudioChunk]:
    """The naive way: sleep one chunk's duration before each chunk. Timer lateness adds up."""
    async for chunk in source:
        yield chunk
        await asyncio.sleep(chunk.duration / speed)


OVERSHOOT = 0.004  # a timer that always wakes 4 ms late: a busy machine, made deterministic


class _LateTimers:
    """Stands in for the ``asyncio`` module inside ``voicekit.audio._stages``: its ``sleep``
    always oversleeps by :data:`OVERSHOOT`, everything else is the real module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float) -> None:
        await asyncio.sleep(delay + OVERSHOOT)


async def test_paced_keeps_to_an_absolute_clock_over_a_long_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import voicekit.audio._stages as stages

    monkeypatch.setattr(stages, "asyncio", _LateTimers())
    samples = np.zeros(80000, dtype=np.int16)  # 5 s: 250 chunks of 20 ms, at 10x = 0.5 s
    speed = 10
    paced_times = await timed(from_array(samples, 16000) | paced(speed=speed))
    start = paced_times[0][0]
    lateness = [when - start - chunk.t / speed for when, chunk in paced_times]
    assert min(lateness) > -0.001  # never early
    # every sleep wakes 4 ms late, yet the lateness does not add up: the next sleep is shorter.
    # 249 sleeps each 4 ms late would be ~1 s behind; the absolute clock stays within a few
    # oversleeps (the margin is for a loaded machine: 25x below what adding up would give)
    assert lateness[-1] < 0.04

    async def naive() -> list[tuple[float, Any]]:
        late = _LateTimers()

        async def sleeps(source: Any) -> AsyncIterator[AudioChunk]:
            async for chunk in source:
                yield chunk
                await late.sleep(chunk.duration / speed)

        return await timed(sleeps(from_array(samples, 16000)))

    naive_times = await naive()
    naive_drift = naive_times[-1][0] - naive_times[0][0] - naive_times[-1][1].t / speed
    assert naive_drift > 249 * OVERSHOOT * 0.95  # the naive way drifts by every oversleep


async def test_paced_catches_up_after_a_slow_consumer() -> None:
    speed = 2
    loop = asyncio.get_running_loop()
    times = []
    async with (
        from_array(np.zeros(32000, dtype=np.int16), 16000) | paced(speed=speed)
    ).open() as items:  # 2 s of audio: 100 chunks of 20 ms, one every 10 ms at 2x
        async for chunk in items:
            times.append((loop.time(), chunk.t))
            if len(times) == 5:
                await asyncio.sleep(0.3)  # the consumer stalls for 0.6 s of audio time
    start = times[0][0]
    # back on schedule by the end; sleeping per chunk would end 300 ms late
    assert times[-1][0] - start == pytest.approx(times[-1][1] / speed, abs=0.1)
    # behind schedule: the next ten chunks (100 ms of schedule) are released at once
    assert times[15][0] - times[5][0] < 0.05


async def test_paced_starts_at_once_from_any_t_and_lets_other_items_through() -> None:
    # 10 chunks of 40 ms from t = 100 s, at half speed: one every 20 ms (margins: a loaded
    # machine's timer, well under the 20 ms between chunks)
    chunks = chunked(np.zeros(3200, dtype=np.int16), 8000, [320] * 10, t0=100.0)
    items = [Sentence("now"), *chunks[:5], Sentence("mid"), *chunks[5:]]
    loop = asyncio.get_running_loop()
    begin = loop.time()
    out = await timed(paced(items, speed=2))
    assert out[0][1] == Sentence("now") and out[1][0] - begin < 0.015
    mid = next(when for when, item in out if item == Sentence("mid"))
    assert mid - begin == pytest.approx(0.16 / 2, abs=0.015)  # right after chunk 4 (t=0.16)
    assert out[-1][0] - begin == pytest.approx(0.36 / 2, abs=0.015)


@pytest.mark.parametrize("speed", [0, -1.0, float("nan"), float("inf"), True])
async def test_paced_rejects_a_bad_speed(speed: Any) -> None:
    with pytest.raises(AudioError, match=r"\[paced\] speed must be"):
        await paced([], speed=speed).list()


async def test_stages_compose_from_a_file_to_telephone_rate() -> None:
    samples = noisy_tone(44100, 1.0)
    flow = from_array(samples, 44100) | resample(rate=8000) | reframe(ms=20) | paced(speed=50)
    frames = await flow.list()
    assert [f.frames for f in frames] == [160] * 50
    assert contiguous(frames) and {f.rate for f in frames} == {8000}
    joined, rate = await to_array(frames)
    whole = to_int16(soxr.resample(to_float32(samples), 44100, 8000, "HQ"))
    assert rate == 8000 and np.abs(joined.astype(np.int32) - whole).max() <= 2
