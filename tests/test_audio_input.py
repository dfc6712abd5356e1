"""Hostile audio input (issue 9 item 14): NaN positions, array layouts, truncated files, bad
chunks, downmixing, corrupt files — real files in tmp_path, real libsndfile."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import voicekit.audio._io as audio_io
from voicekit import AudioError
from voicekit.audio import from_array, load, read, to_array, to_int16, to_wav_bytes


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
