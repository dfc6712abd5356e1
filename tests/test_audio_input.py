"""Hostile audio input (issue 9 item 14): NaN positions, array layouts, truncated files, bad
chunks, downmixing, corrupt files — real files in tmp_path, real libsndfile."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import voicekit.audio._io as audio_io
from voicekit import AudioChunk, AudioError, AudioWarning
from voicekit.audio import (
    from_array,
    info,
    load,
    read,
    resample,
    to_array,
    to_int16,
    to_wav_bytes,
)


def float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, samples.astype(np.float32), rate, subtype="FLOAT")
    return path


# ---------------------------------------------------------------------------------------------
# NaN and infinity: the file and the true position


@pytest.mark.parametrize("rate", [16000, 8000, 44100, None])
@pytest.mark.parametrize("threaded", [False, True])
async def test_a_nan_in_a_file_is_named_at_its_true_position(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int | None, threaded: bool
) -> None:
    if threaded:
        monkeypatch.setattr(audio_io, "THREAD_ABOVE", 0)
    samples = np.zeros(20000)
    samples[10007] = np.nan  # in the third 0.25 s block, which starts at frame 8000
    path = float_wav(tmp_path / "nan.wav", samples)
    message = r"\[read\] .*nan\.wav: sample 10007 \(0\.625 s\) is nan; audio must be finite"
    with pytest.raises(AudioError, match=message):
        await read(path, rate=rate).list()


@pytest.mark.parametrize("rate", [16000, 8000, None])
def test_load_names_the_true_position_too(tmp_path: Path, rate: int | None) -> None:
    samples = np.zeros(300000)  # more than one block of load()
    samples[280001] = -np.inf
    path = float_wav(tmp_path / "late.wav", samples)
    with pytest.raises(AudioError, match=r"late\.wav: sample 280001 \(17\.500 s\) is -inf"):
        load(path, rate=rate)


async def test_a_bad_sample_in_a_stereo_file_names_frame_and_channel(tmp_path: Path) -> None:
    samples = np.zeros((12000, 2))
    samples[4000, 1] = np.inf  # the first frame of the second block
    path = float_wav(tmp_path / "stereo.wav", samples)
    with pytest.raises(AudioError, match=r"stereo\.wav: frame 4000, channel 1 \(0\.250 s\) is inf"):
        await read(path).list()
    data = path.read_bytes()
    with pytest.raises(AudioError, match=rf"<{len(data)} bytes>: frame 4000, channel 1 "):
        await read(data, rate=8000).list()


def test_from_array_names_the_index_in_the_array() -> None:
    stereo = np.zeros((20000, 2), dtype=np.float32)
    stereo[10007, 1] = np.inf
    with pytest.raises(
        AudioError,
        match=r"from_array: frame 10007, channel 1 \(samples\[10007, 1\], 0\.625 s\) is inf",
    ):
        from_array(stereo, 16000)
    mono = np.zeros(9000)
    mono[8001] = np.nan
    with pytest.raises(AudioError, match=r"from_array: sample 8001 \(samples\[8001\], 1\.000 s\)"):
        from_array(mono, 8000)


# ---------------------------------------------------------------------------------------------
# (frames, channels) or (channels, frames): the shorter axis holds the channels


async def test_a_channels_first_array_is_read_as_stereo() -> None:
    left, right = np.full(4800, 0.5), np.full(4800, -0.25)
    frames_first = np.stack([left, right], axis=1)  # (4800, 2)
    channels_first = np.stack([left, right])  # (2, 4800)
    a = await to_array(from_array(frames_first, 48000))
    b = await to_array(from_array(channels_first, 48000))
    assert a[0].shape == b[0].shape == (4800,)
    assert np.array_equal(a[0], b[0]) and set(b[0].tolist()) == {4096}  # (0.5 - 0.25) / 2
    row = await to_array(from_array(np.full((1, 100), 0.5), 8000))  # one row: mono
    assert row[0].tolist() == [16384] * 100


async def test_the_layout_rule_at_its_edges() -> None:
    # square: (frames, channels), as before
    square = np.array([[100, 201], [-3, -4]], dtype=np.int16)
    assert (await to_array(from_array(square, 8000)))[0].tolist() == [150, -4]
    # 32 channels of 33 frames, either way round
    wide = np.arange(33 * 32, dtype=np.int16).reshape(33, 32)
    a = (await to_array(from_array(wide, 8000)))[0]
    b = (await to_array(from_array(wide.T.copy(), 8000)))[0]
    assert a.shape == (33,) and np.array_equal(a, b)


@pytest.mark.parametrize("shape", [(40, 40), (33, 1000), (1000, 33)])
def test_an_array_without_a_channel_axis_is_refused(shape: tuple[int, int]) -> None:
    message = rf"from_array: cannot tell channels from frames in shape \({shape[0]}, {shape[1]}\)"
    with pytest.raises(AudioError, match=message + r".*pass \(frames, channels\)"):
        from_array(np.zeros(shape), 8000)


@pytest.mark.parametrize("shape", [(0,), (0, 2), (2, 0)])
def test_an_empty_array_is_refused_whatever_its_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(AudioError, match=r"from_array: there are no samples"):
        from_array(np.zeros(shape), 8000)


def test_a_nan_in_a_channels_first_array_names_its_index_as_passed() -> None:
    stereo = np.zeros((2, 9000))
    stereo[1, 8001] = np.nan
    message = r"from_array: frame 8001, channel 1 \(samples\[1, 8001\], 1\.000 s\) is nan"
    with pytest.raises(AudioError, match=message):
        from_array(stereo, 8000)


def test_to_wav_bytes_follows_the_same_rule() -> None:
    channels_first = np.stack([np.linspace(-1, 1, 100), np.zeros(100)])  # (2, 100)
    back, _ = sf.read(io.BytesIO(to_wav_bytes(channels_first, 8000)), dtype="int16")
    assert back.shape == (100, 2) and np.array_equal(back, to_int16(channels_first.T))


# ---------------------------------------------------------------------------------------------
# Files shorter than their header says: an AudioWarning naming the file


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def no_audio_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        yield


async def test_a_wav_whose_data_chunk_is_cut_warns_and_reads_what_is_there(
    tmp_path: Path,
) -> None:
    samples = to_int16(0.3 * np.sin(np.arange(16000) * 0.05))
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(samples)[: 44 + 16000])  # header + half of the 32000 data bytes
    message = (
        r"cut\.wav is truncated: its header says 1\.000 s \(32000 bytes\) of audio, it holds "
        r"0\.500 s \(16000 bytes\); reading what is there"
    )
    with pytest.warns(AudioWarning, match=message):
        got, rate = await to_array(read(path, rate=None))
    assert rate == 16000 and np.array_equal(got, samples[:8000])
    with pytest.warns(AudioWarning, match=message):
        assert np.array_equal(load(path)[0], samples[:8000])
    with pytest.warns(AudioWarning, match=message):
        assert info(path).frames == 8000


async def test_a_cut_wav_as_bytes_or_file_object(tmp_path: Path) -> None:
    data = wav_bytes(np.zeros(8000, dtype=np.int16))[:-1000]
    with pytest.warns(AudioWarning, match=rf"<{len(data)} bytes> is truncated"):
        await read(data).list()
    path = tmp_path / "cut.wav"
    path.write_bytes(b"junk" + data)
    with path.open("rb") as file:
        file.seek(4)
        with pytest.warns(AudioWarning, match=r"cut\.wav is truncated: .*0\.469 s"):
            chunks = await read(file).list()
        assert file.tell() > 4
    assert sum(c.frames for c in chunks) == 7500


def test_the_data_chunk_is_found_after_other_chunks(tmp_path: Path) -> None:
    data = wav_bytes(np.zeros(1000, dtype=np.int16), 8000)
    listed = data[:36] + b"LIST" + (5).to_bytes(4, "little") + b"abcde\0" + data[36:]
    listed = b"RIFF" + (len(listed) - 8).to_bytes(4, "little") + listed[8:]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        assert info(listed).frames == 1000  # whole: no warning
    with pytest.warns(AudioWarning, match=r"0\.125 s \(2000 bytes\) of audio, it holds 0\.062 s"):
        assert load(listed[:-1000])[0].shape == (500,)


@pytest.mark.usefixtures("no_audio_warnings")
async def test_whole_files_and_unknown_lengths_do_not_warn(tmp_path: Path) -> None:
    data = wav_bytes(np.zeros(8000, dtype=np.int16))
    await read(data).list()
    # a streaming recorder writes 0xFFFFFFFF as the data size: the length is not known
    streamed = data[:40] + (0xFFFFFFFF).to_bytes(4, "little") + data[44:]
    assert load(streamed)[0].shape == (8000,)
    for fmt in ("FLAC", "MP3", "OGG"):
        path = tmp_path / f"whole.{fmt.lower()}"
        sf.write(path, np.zeros(12345, dtype=np.float32), 16000, format=fmt)
        assert load(path)[0].shape == (12345,)
        await read(path).list()


async def test_a_cut_mp3_warns_with_the_frames_it_lacks(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(np.arange(48000) * 0.05), 16000, format="MP3")
    path = tmp_path / "cut.mp3"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    message = r"cut\.mp3 is truncated: its header says 48000 frames \(3\.000 s\), only \d+ "
    with pytest.warns(AudioWarning, match=message):
        chunks = await read(path, rate=None).list()
    assert 0 < sum(c.frames for c in chunks) < 48000
    with pytest.warns(AudioWarning, match=message):
        load(path, rate=8000)


def test_audio_warnings_can_be_made_errors(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(np.zeros(8000, dtype=np.int16))[:-100])
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)
        with pytest.raises(AudioWarning, match=r"cut\.wav is truncated"):
            load(path)


# ---------------------------------------------------------------------------------------------
# AudioChunk: what it holds is what it says


@pytest.mark.parametrize(
    ("rate", "t", "message"),
    [
        (True, 0.0, r"rate must be a positive integer number of Hz, got True"),
        (False, 0.0, r"rate must be a positive integer number of Hz, got False"),
        (16000.0, 0.0, r"rate must be .*, got 16000\.0"),
        (np.float64(8000), 0.0, r"rate must be .*, got np\.float64\(8000\.0\)"),
        (0, 0.0, r"rate must be .*, got 0"),
        (-16000, 0.0, r"rate must be .*, got -16000"),  # would give a negative duration
        ("16000", 0.0, r"rate must be .*, got '16000'"),
        (16000, float("nan"), r"t must be a finite number of seconds, got nan"),
        (16000, float("inf"), r"t must be a finite number of seconds, got inf"),
        (16000, np.float64("-inf"), r"t must be a finite number of seconds, got np\.float64\(-inf"),
        (16000, True, r"t must be a finite number of seconds, got True"),
        (16000, "0.5", r"t must be a finite number of seconds, got '0\.5'"),
        (16000, None, r"t must be a finite number of seconds, got None"),
    ],
)
def test_audio_chunk_refuses_a_bad_rate_or_time(rate: Any, t: Any, message: str) -> None:
    with pytest.raises(AudioError, match=message):
        AudioChunk(np.zeros(160, dtype=np.int16), rate, t)


def test_a_scalar_nan_is_named() -> None:
    with pytest.raises(AudioError, match=r"to_int16: sample 0 is nan; audio must be finite"):
        to_int16(np.float64("nan"))


def test_audio_chunk_keeps_plain_numbers() -> None:
    chunk = AudioChunk(np.zeros(160, dtype=np.int16), np.int32(8000), np.float32(0.5))
    assert type(chunk.rate) is int and type(chunk.t) is float
    assert (chunk.rate, chunk.t, chunk.duration, chunk.end) == (8000, 0.5, 0.02, 0.52)
    assert AudioChunk(np.zeros(1, dtype=np.int16), 8000, 2).t == 2.0
    assert AudioChunk(np.zeros(0, dtype=np.int16), 8000).duration == 0.0


# ---------------------------------------------------------------------------------------------
# Downmixing: the mean of the channels, or one channel picked with channel=


def antiphase(frames: int = 16000) -> np.ndarray:
    left = to_int16(0.4 * np.sin(np.arange(frames) * 0.07))
    return np.stack([left, -left], axis=1)  # R = -L, exactly


async def test_channels_in_antiphase_average_to_silence_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "inverted.wav"
    sf.write(path, antiphase(), 16000)
    message = r"inverted\.wav: its channels cancel out when averaged .*pass channel="
    with pytest.warns(AudioWarning, match=message):
        mixed, _ = await to_array(read(path))
    assert mixed.shape == (16000,) and not mixed.any()  # the documented rule: the mean
    with pytest.warns(AudioWarning, match=message):
        assert not load(path, rate=8000)[0].any()
    with pytest.warns(AudioWarning, match=r"from_array: its channels cancel out"):
        assert not (await to_array(from_array(antiphase(), 16000)))[0].any()
    left = 0.4 * np.sin(np.arange(8000) * 0.07)
    with pytest.warns(AudioWarning, match=r"nearly cancel out when averaged \(66 dB quieter"):
        await from_array(np.stack([left, -0.999 * left]), 8000).list()


@pytest.mark.usefixtures("no_audio_warnings")
async def test_channel_picks_one_channel(tmp_path: Path) -> None:
    stereo = antiphase()
    path = tmp_path / "inverted.wav"
    sf.write(path, stereo, 16000)
    left, right = stereo[:, 0], stereo[:, 1]
    assert np.array_equal((await to_array(read(path, channel=0)))[0], left)
    assert np.array_equal((await to_array(read(path, rate=None, channel=1)))[0], right)
    assert np.array_equal(load(path, channel=1)[0], right)
    assert np.array_equal((await to_array(from_array(stereo, 16000, channel=0)))[0], left)
    assert np.array_equal((await to_array(from_array(stereo.T, 16000, channel=1)))[0], right)
    mono = np.zeros(100, dtype=np.int16)
    assert (await to_array(from_array(mono, 8000, channel=0)))[0].shape == (100,)


@pytest.mark.usefixtures("no_audio_warnings")
async def test_ordinary_stereo_and_silence_do_not_warn(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    voice = 0.3 * np.sin(np.arange(16000) * 0.05)
    stereo = np.stack([voice, 0.5 * voice + 0.01 * rng.standard_normal(16000)], axis=1)
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 16000)
    assert np.abs((await to_array(read(path)))[0]).max() > 5000
    sf.write(path, np.zeros((16000, 2)), 16000)  # silent channels: nothing is lost
    assert not load(path)[0].any()
    await to_array(from_array(np.zeros((800, 2)), 8000))


async def test_a_channel_that_is_not_there(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    sf.write(path, np.zeros((100, 2)), 8000)
    with pytest.raises(AudioError, match=r"\[read\] .*stereo\.wav has 2 channels \(0 to 1\); "):
        await read(path, channel=2).list()
    with pytest.raises(AudioError, match=r"stereo\.wav has 2 channels .*there is no channel 5"):
        load(path, channel=5)
    with pytest.raises(AudioError, match=r"from_array: the array \(shape \(100,\)\) has 1 chan"):
        from_array(np.zeros(100), 8000, channel=1)
    for bad in (-1, True, 0.0, "left"):
        with pytest.raises(AudioError, match=r"channel must be None .* or a channel index"):
            read(path, channel=bad)
        with pytest.raises(AudioError, match=r"channel must be None"):
            from_array(np.zeros((100, 2)), 8000, channel=bad)


# ---------------------------------------------------------------------------------------------
# Corrupt files and impossible rates: an AudioError naming the file, never a raw library error

NOT_AUDIO = r"Format not recognised \(corrupt, or not a format libsndfile can read\)"


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".ogg", ".txt", ""])
@pytest.mark.parametrize("seed", range(4))
async def test_random_bytes_are_an_audio_error_naming_the_file(
    tmp_path: Path, suffix: str, seed: int
) -> None:
    # seed 1 begins like an MP3 frame: libsndfile calls that "File does not exist"
    path = tmp_path / f"random{suffix}"
    path.write_bytes(np.random.default_rng(seed).bytes(8000))
    with pytest.raises(AudioError, match=rf"\[read\] cannot read .*random{suffix}: {NOT_AUDIO}"):
        await read(path).list()
    with pytest.raises(AudioError, match=rf"cannot read .*random{suffix}: {NOT_AUDIO}"):
        load(path)
    with pytest.raises(AudioError, match=rf"cannot read .*random{suffix}: {NOT_AUDIO}"):
        info(path)
    with pytest.raises(AudioError, match=rf"cannot read <8000 bytes>: {NOT_AUDIO}"):
        load(path.read_bytes())


@pytest.mark.parametrize(
    "data",
    [b"", b'{"error": "unauthorized"}', b"<html><body>404 Not Found</body></html>\n" * 40],
    ids=["empty", "json", "html"],
)
async def test_what_a_failed_download_leaves_is_an_audio_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "reply.mp3"
    path.write_bytes(data)
    with pytest.raises(AudioError, match=r"reply\.mp3"):
        await read(path).list()
    with pytest.raises(AudioError, match=r"reply\.mp3"):
        load(path)


@pytest.mark.usefixtures("no_audio_warnings")
async def test_the_content_decides_the_format_not_the_extension(tmp_path: Path) -> None:
    samples = to_int16(0.3 * np.sin(np.arange(16000) * 0.05))
    for fmt, name in [("WAV", "wav_named.mp3"), ("FLAC", "flac_named.wav"), ("MP3", "mp3.ogg")]:
        path = tmp_path / name
        sf.write(path, samples, 16000, format=fmt)
        got = load(path)[0]
        assert got.shape == (16000,), name
        if fmt != "MP3":
            assert np.array_equal(got, samples), name


def test_a_header_claiming_trillions_of_frames_does_not_exhaust_memory() -> None:
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(np.arange(16000) * 0.05), 16000, format="MP3")
    data = bytearray(buffer.getvalue())
    at = data.index(b"Xing") + 8  # the Xing tag's frame count, big-endian
    data[at : at + 4] = (0xFFFFFFF0).to_bytes(4, "big")
    assert info(bytes(data)).frames > 10**12  # 9 TiB of float32 if allocated at once
    with pytest.warns(AudioWarning, match=r"is truncated: its header says \d{13} frames"):
        samples, _ = load(bytes(data))
    assert 15000 < samples.shape[0] < 17000


@pytest.mark.parametrize("rate", [1, 7, 999, 768001, 2**31 - 1])
async def test_an_implausible_file_rate_is_a_corrupt_header(tmp_path: Path, rate: int) -> None:
    data = bytearray(wav_bytes(np.zeros(1600, dtype=np.int16)))
    data[24:28] = rate.to_bytes(4, "little")  # the fmt chunk's sample rate
    data[28:32] = (2 * rate).to_bytes(4, "little")  # and bytes per second
    path = tmp_path / "odd.wav"
    path.write_bytes(data)
    message = rf"odd\.wav says its sample rate is {rate} Hz, outside 1000–768000 Hz"
    with pytest.raises(AudioError, match=message):
        await read(path).list()
    with pytest.raises(AudioError, match=message):
        load(path, rate=16000)
    with pytest.raises(AudioError, match=message):
        info(path)


@pytest.mark.parametrize("rate", [0, -8000, True, 8000.0, "8000", None, 768001, 10**12])
async def test_wrong_rates_for_read_load_resample_and_from_array(tmp_path: Path, rate: Any) -> None:
    path = tmp_path / "a.wav"
    path.write_bytes(wav_bytes(np.zeros(1600, dtype=np.int16)))
    message = r"rate must be a positive integer number of Hz up to 768000, got "
    if rate is not None:  # None keeps the file's rate in read and load
        with pytest.raises(AudioError, match=message):
            read(path, rate=rate)
        with pytest.raises(AudioError, match=message):
            load(path, rate=rate)
    with pytest.raises(AudioError, match=r"\[resample\] " + message):
        await (read(path) | resample(rate=rate)).list()
    with pytest.raises(AudioError, match=message):
        from_array(np.zeros(100, dtype=np.int16), rate)
    with pytest.raises(AudioError, match=message):
        to_wav_bytes(np.zeros(100, dtype=np.int16), rate)
