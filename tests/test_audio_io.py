"""Reading and writing files: real files in tmp_path, real libsndfile."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

import voicekit.audio._io as audio_io
from voicekit import AudioChunk, AudioError, Sentence
from voicekit.audio import (
    AudioInfo,
    from_array,
    info,
    load,
    read,
    to_array,
    to_float32,
    to_int16,
    to_wav_bytes,
    write,
)


def tone(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    n = np.arange(round(rate * seconds))
    rng = np.random.default_rng(int(freq) + rate)
    return amp * np.sin(2 * np.pi * freq * n / rate) + 0.05 * rng.standard_normal(n.shape[0])


def pcm(rate: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    return to_int16(tone(rate, seconds, freq))


class Tracked(sf.SoundFile):
    """A SoundFile that remembers being closed, and can be made slow to read."""

    read_delay = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading = False
        self.closed_while_reading = False

    def read(self, *args: Any, **kwargs: Any) -> Any:
        self.reading = True
        try:
            time.sleep(self.read_delay)
            return super().read(*args, **kwargs)
        finally:
            self.reading = False

    def close(self) -> None:
        self.closed_while_reading = self.closed_while_reading or self.reading
        super().close()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Tracked]:
    """Every SoundFile opened during the test. Holding them here keeps the garbage collector from
    closing them: only an explicit close() does."""
    files: list[Tracked] = []

    class Tracking(Tracked):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            files.append(self)

    monkeypatch.setattr(sf, "SoundFile", Tracking)
    return files


def assert_contiguous(chunks: list[AudioChunk], t0: float = 0.0) -> None:
    assert chunks[0].t == pytest.approx(t0, abs=1e-12)
    for before, after in itertools.pairwise(chunks):
        assert after.t == pytest.approx(before.end, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# read


async def test_read_gives_fixed_chunks_with_contiguous_times(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    samples = pcm(16000, 1.01)  # 16160 samples: 50 chunks of 320 and one of 160
    sf.write(path, samples, 16000, subtype="PCM_16")
    chunks = await read(path, rate=16000, chunk_ms=20).list()
    assert [c.frames for c in chunks] == [320] * 50 + [160]
    assert all(c.rate == 16000 and c.samples.dtype == np.int16 for c in chunks)
    assert_contiguous(chunks)
    assert chunks[-1].t == pytest.approx(1.0)
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), samples)
    assert not chunks[0].samples.flags.writeable


@pytest.mark.parametrize(
    ("extension", "subtype", "exact"),
    [("wav", None, True), ("flac", None, True), ("wav", "PCM_24", True), ("ogg", None, False)],
)
async def test_write_then_read_round_trips(
    tmp_path: Path, extension: str, subtype: str | None, exact: bool
) -> None:
    samples = pcm(16000, 2.0)
    path = tmp_path / f"out.{extension}"
    returned = await write(from_array(samples, 16000), path, subtype=subtype)
    assert returned == path and path.is_file()
    described = info(path)
    assert described.format == {"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[extension]
    assert (described.rate, described.channels, described.frames) == (16000, 1, 32000)
    back, rate = await to_array(read(path, rate=16000))
    assert rate == 16000 and back.shape == samples.shape
    if exact:
        assert np.array_equal(back, samples)
    else:  # Vorbis is lossy: close, not equal
        error = to_float32(back) - to_float32(samples)
        snr = 10 * np.log10(np.mean(to_float32(samples) ** 2) / np.mean(error**2))
        assert snr > 15
        assert not np.array_equal(back, samples)


async def test_reads_mp3(tmp_path: Path) -> None:
    path = tmp_path / "a.mp3"
    sf.write(path, tone(16000, 1.0).astype(np.float32), 16000, format="MP3")
    back, rate = await to_array(read(path))
    assert rate == 16000 and abs(back.shape[0] - 16000) < 1200
    assert np.abs(back).max() > 10000


async def test_stereo_float_file_becomes_mono_int16(tmp_path: Path) -> None:
    left = tone(16000, 0.5, 300, 0.6).astype(np.float32)
    right = tone(16000, 0.5, 700, 0.3).astype(np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    assert info(path).channels == 2 and info(path).subtype == "FLOAT"
    samples, rate = await to_array(read(path, rate=16000))
    expected = to_int16((left + right) / np.float32(2))
    assert rate == 16000 and samples.dtype == np.int16 and samples.ndim == 1
    assert np.abs(samples.astype(np.int32) - expected).max() <= 1
    assert np.array_equal(load(path)[0], samples)


async def test_read_clips_a_float_file_that_goes_over_full_scale(tmp_path: Path) -> None:
    path = tmp_path / "loud.wav"
    sf.write(path, np.array([0.5, 1.5, -3.0, 0.0], dtype=np.float32), 8000, subtype="FLOAT")
    samples, _ = await to_array(read(path, rate=None))
    assert samples.tolist() == [16384, 32767, -32768, 0]


@pytest.mark.parametrize("file_rate", [44100, 48000])
async def test_read_resamples_without_clicks_at_chunk_or_block_edges(
    tmp_path: Path, file_rate: int
) -> None:
    samples = pcm(file_rate, 2.0, freq=1234.5)
    path = tmp_path / "hi.wav"
    sf.write(path, samples, file_rate, subtype="PCM_16")
    chunks = await read(path, rate=16000, chunk_ms=20).list()
    assert_contiguous(chunks)
    streamed = np.concatenate([c.samples for c in chunks]).astype(np.int32)
    whole = to_int16(soxr.resample(to_float32(samples), file_rate, 16000, "HQ")).astype(np.int32)
    assert streamed.shape == whole.shape == (32000,)
    assert np.abs(streamed - whole).max() <= 2
    assert np.array_equal(load(path, rate=16000)[0], whole)


async def test_read_downsamples_correctly(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    sf.write(path, to_int16(0.5 * np.sin(2 * np.pi * 1000 * np.arange(48000) / 48000)), 48000)
    samples, rate = await to_array(read(path, rate=8000))
    spectrum = np.abs(np.fft.rfft(samples[800:7200]))
    assert rate == 8000 and samples.shape[0] == 8000
    assert np.fft.rfftfreq(6400, 1 / 8000)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)


async def test_read_keeps_the_file_rate_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, pcm(22050, 0.1), 22050)
    chunks = await read(path, rate=None, chunk_ms=10).list()
    assert {c.rate for c in chunks} == {22050}
    assert chunks[0].frames == 220


async def test_read_is_lazy_and_reiterable(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, pcm(8000, 0.1), 8000)
    flow = read(path, rate=8000)
    newer = pcm(8000, 0.3, freq=880)
    sf.write(path, newer, 8000)  # replaced after read() was called: the flow sees the new file
    first = await to_array(flow)
    second = await to_array(flow)
    assert np.array_equal(first[0], newer) and np.array_equal(second[0], newer)


async def test_reads_bytes_and_file_objects(tmp_path: Path) -> None:
    samples = pcm(16000, 0.25)
    data = to_wav_bytes(samples, 16000)
    assert np.array_equal((await to_array(read(data)))[0], samples)
    assert np.array_equal((await to_array(read(memoryview(data))))[0], samples)
    buffer = io.BytesIO(b"junk" + data)
    buffer.seek(4)
    flow = read(buffer)
    for _ in range(2):  # every iteration starts from where the file object was
        assert np.array_equal((await to_array(flow))[0], samples)


async def test_stopping_early_closes_the_file(tmp_path: Path, opened: list[Tracked]) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, pcm(16000, 3.0), 16000)
    opened.clear()
    flow = read(path)
    assert opened == []  # nothing is opened before iteration
    async with flow.open() as chunks:
        first = await anext(chunks)
        await anext(chunks)
        assert len(opened) == 1 and not opened[0].closed
    assert first.t == 0.0
    assert opened[0].closed  # closed at once, by the reader, though we still hold the object


async def test_an_error_downstream_closes_the_file(tmp_path: Path, opened: list[Tracked]) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, pcm(16000, 3.0), 16000)
    opened.clear()

    async def fails(chunks: AsyncIterator[AudioChunk]) -> None:
        async for chunk in chunks:
            if chunk.t > 0.5:
                raise KeyError("consumer failed")

    with pytest.raises(KeyError):
        async with read(path).open() as chunks:
            await fails(chunks)
    assert len(opened) == 1 and opened[0].closed


async def test_large_files_are_read_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.wav"
    samples = pcm(44100, 2.0)
    sf.write(path, samples, 44100)
    calls = []
    real = audio_io._in_thread

    async def spy(fn: Any, *args: Any) -> Any:
        calls.append(fn)
        return await real(fn, *args)

    monkeypatch.setattr(audio_io, "_in_thread", spy)
    small, _ = await to_array(read(path))
    assert calls == []  # 88,200 samples: read directly
    monkeypatch.setattr(audio_io, "THREAD_ABOVE", 1000)
    threaded, _ = await to_array(read(path))
    assert len(calls) == 9  # 2 s in 0.25 s blocks, then the empty read at the end
    assert np.array_equal(threaded, small)


async def test_cancelling_a_threaded_read_closes_the_file_after_the_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[Tracked]
) -> None:
    path = tmp_path / "big.wav"
    sf.write(path, pcm(16000, 5.0), 16000)
    opened.clear()
    monkeypatch.setattr(audio_io, "THREAD_ABOVE", 0)
    monkeypatch.setattr(Tracked, "read_delay", 0.05)
    got: list[AudioChunk] = []
    started = asyncio.Event()

    async def consume() -> None:
        async with read(path).open() as chunks:
            async for chunk in chunks:
                got.append(chunk)
                started.set()

    task = asyncio.ensure_future(consume())
    await started.wait()
    await asyncio.sleep(0.01)  # the second block is being read in the worker thread now
    assert opened[0].reading
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 12  # the 12 whole chunks of the first 0.25 s block
    assert opened[0].closed and not opened[0].closed_while_reading


# ---------------------------------------------------------------------------------------------
# load, info


def test_load_and_info(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    samples = pcm(44100, 0.5)
    sf.write(path, np.stack([samples, samples], axis=1), 44100)
    assert info(path) == AudioInfo(44100, 2, 22050, "FLAC", "PCM_16")
    assert info(path).duration == 0.5
    same, rate = load(path)
    assert rate == 44100 and np.array_equal(same, samples)
    resampled, rate = load(path, rate=16000)
    assert rate == 16000 and resampled.dtype == np.int16 and resampled.shape == (8000,)


# ---------------------------------------------------------------------------------------------
# write


async def test_write_is_incremental(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    sizes = []

    async def recording() -> AsyncIterator[AudioChunk]:
        for k in range(100):
            if k in (50, 99):
                sizes.append(path.stat().st_size)
            yield AudioChunk(np.full(320, k, dtype=np.int16), 16000, k * 0.02)

    await write(recording(), path)
    assert sizes[0] >= 49 * 640 and sizes[1] >= 98 * 640  # on disk while the stream runs
    assert info(path).frames == 32000


async def test_write_to_a_file_object(tmp_path: Path) -> None:
    samples = pcm(8000, 0.5)
    buffer = io.BytesIO()
    assert await write(from_array(samples, 8000), buffer) is buffer
    assert sf.info(io.BytesIO(buffer.getvalue())).format == "WAV"
    assert np.array_equal((await to_array(read(buffer.getvalue(), rate=8000)))[0], samples)
    flac = io.BytesIO()
    await write(from_array(samples, 8000), flac, format="flac")
    assert sf.info(io.BytesIO(flac.getvalue())).format == "FLAC"


async def test_write_skips_items_that_are_not_audio(tmp_path: Path) -> None:
    chunk = AudioChunk(np.ones(80, dtype=np.int16), 8000)
    path = await write([Sentence("hi"), chunk, Sentence("there"), chunk], tmp_path / "a.wav")
    assert info(path).frames == 160


async def test_a_rate_change_names_the_chunk_and_closes_the_source(tmp_path: Path) -> None:
    closed = []

    async def source() -> AsyncIterator[Any]:
        try:
            yield AudioChunk(np.zeros(160, dtype=np.int16), 8000, 0.0)
            yield Sentence("not counted")
            yield AudioChunk(np.zeros(160, dtype=np.int16), 8000, 0.02)
            yield AudioChunk(np.zeros(320, dtype=np.int16), 16000, 0.04)
            yield AudioChunk(np.zeros(320, dtype=np.int16), 16000, 0.06)
        finally:
            closed.append(True)

    with pytest.raises(AudioError, match=r"chunk 2 .*16000 Hz.* 8000 Hz"):
        await write(source(), tmp_path / "a.wav")
    assert closed == [True]
    assert info(tmp_path / "a.wav").frames == 320  # what came before the error is kept


async def test_a_failing_source_still_closes_the_file(
    tmp_path: Path, opened: list[Tracked]
) -> None:
    path = tmp_path / "a.wav"

    async def source() -> AsyncIterator[AudioChunk]:
        yield AudioChunk(np.zeros(160, dtype=np.int16), 8000)
        raise OSError("microphone unplugged")

    with pytest.raises(Exception, match="microphone unplugged"):
        await write(source(), path)
    assert len(opened) == 1 and opened[0].closed
    assert opened[0].mode == "w" and info(path).frames == 160


async def test_writing_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no AudioChunk"):
        await write([Sentence("only text")], tmp_path / "a.wav")
    assert not (tmp_path / "a.wav").exists()


async def test_write_rejects_unknown_formats_before_consuming(tmp_path: Path) -> None:
    pulled = []

    async def source() -> AsyncIterator[AudioChunk]:
        pulled.append(True)
        yield AudioChunk(np.zeros(10, dtype=np.int16), 8000)

    with pytest.raises(AudioError, match=r"extension .*\.wav, \.flac or \.ogg"):
        await write(source(), tmp_path / "a.xyz")
    with pytest.raises(AudioError, match="unsupported audio format 'NOPE'"):
        await write(source(), io.BytesIO(), format="nope")
    with pytest.raises(AudioError, match="FLAC cannot hold subtype 'FLOAT'"):
        await write(source(), tmp_path / "a.flac", subtype="float")
    assert pulled == [] and os.listdir(tmp_path) == []


def test_to_wav_bytes() -> None:
    stereo = np.stack([np.linspace(-1, 1, 100), np.zeros(100)], axis=1)
    data = to_wav_bytes(stereo, 22050)
    back, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 22050 and back.shape == (100, 2)
    assert np.array_equal(back, to_int16(stereo))
    with pytest.raises(AudioError, match="rate"):
        to_wav_bytes(stereo, 0)
    with pytest.raises(AudioError, match="sample 3 is nan"):
        to_wav_bytes(np.array([0, 0, 0, np.nan]), 8000)


# ---------------------------------------------------------------------------------------------
# bad input


async def test_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(AudioError, match=r"\[read\] cannot read .*corrupt\.wav: Format not rec"):
        await read(path).list()
    with pytest.raises(AudioError, match=r"corrupt\.wav"):
        info(path)
    with pytest.raises(AudioError, match="cannot read <4000 bytes>"):
        await read(path.read_bytes()).list()


async def test_a_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(to_wav_bytes(np.zeros(100, dtype=np.int16), 8000)[:30])
    with pytest.raises(AudioError, match=r"cut\.wav: .*data"):
        load(path)


async def test_a_file_with_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match=r"silent\.wav holds no audio \(0 frames\)"):
        await read(path).list()
    with pytest.raises(AudioError, match="0 frames"):
        load(path)


def test_a_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.touch()
    with pytest.raises(AudioError, match=r"zero\.wav is empty \(0 bytes\)"):
        read(path)


async def test_a_file_that_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the samples you are looking for\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.txt: Format not recognised"):
        await read(path).list()


def test_a_missing_file_or_a_folder(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"no such file: .*nope\.wav"):
        read(tmp_path / "nope.wav")
    with pytest.raises(AudioError, match="no such file"):
        load(str(tmp_path / "nope.wav"))
    with pytest.raises(AudioError, match="not a file"):
        info(tmp_path)


async def test_a_file_deleted_before_iteration(tmp_path: Path) -> None:
    path = tmp_path / "gone.wav"
    sf.write(path, np.zeros(100, dtype=np.int16), 8000)
    flow = read(path)
    path.unlink()
    with pytest.raises(AudioError, match=r"\[read\] no such file"):
        await flow.list()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be a positive integer"),
        ({"rate": -16000}, "rate must be a positive integer"),
        ({"rate": 16000.0}, "rate must be a positive integer"),
        ({"chunk_ms": 0}, "chunk_ms must be a positive finite number"),
        ({"chunk_ms": -20}, "chunk_ms must be a positive finite number"),
        ({"chunk_ms": float("nan")}, "chunk_ms must be a positive finite number"),
        ({"chunk_ms": 0.001}, "shorter than one sample"),
    ],
)
def test_bad_read_parameters(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(100, dtype=np.int16), 8000)
    with pytest.raises(AudioError, match=message):
        read(path, **kwargs)


def test_read_rejects_what_is_not_a_file() -> None:
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        read(12)  # type: ignore[arg-type]
