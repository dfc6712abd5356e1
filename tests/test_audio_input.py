"""Hostile audio input (issue 9 item 14): NaN positions, array layouts, truncated files, bad
chunks, downmixing, corrupt files — real files in tmp_path, real libsndfile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import voicekit.audio._io as audio_io
from voicekit import AudioError
from voicekit.audio import from_array, load, read


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
